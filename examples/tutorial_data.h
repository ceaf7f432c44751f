#pragma once
// Shared by the tutorial_*.cpp programs: a small Ali-CCP-shaped synthetic dataset with a planted
// signal (click and purchase), written to a temporary folder and loaded like any CSV files.
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"

namespace tutorial {

inline rechub::data::LoadedData ali_ccp_data(int64_t train_rows = 20000) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("rechub_tutorial_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  rechub::data::AliCcpSynthConfig cfg{.seed = 1, .vocab_sizes = {2000, 500, 300, 100, 50, 10}, .num_dense = 2,
                                      .click_rate = 0.2, .conversion_rate = 0.3};
  const auto paths = rechub::data::write_ali_ccp_synthetic((dir / "ali").string(), cfg, train_rows,
                                                           train_rows / 5, train_rows / 5);
  auto d = rechub::data::load_data({.train = paths[0], .val = paths[1], .test = paths[2]},
                                   rechub::data::AliCcpSynth(cfg).schema(8), {.cache = {.enabled = false}});
  fs::remove_all(dir);
  return d;
}

inline void print_metrics(const rechub::metrics::EvalResult& r) {
  for (const auto& t : r.tasks)
    std::printf("  %-8s AUC %.4f  LogLoss %.4f  (%lld rows)\n", t.task.c_str(), t.auc, t.logloss,
                static_cast<long long>(t.rows));
}

}  // namespace tutorial
