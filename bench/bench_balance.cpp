// The task-balancing strategies side by side: test AUC per task (mean and standard deviation over
// seeds) of MMoE trained with each of the eight strategies on the same data and budget.
//
//   bench_balance [census|aliccp] [epochs=3] [seeds=3] [census data config]   (from the source root)
//
// census: the UCI census-income (KDD) rows bundled in examples/data/census-income-kdd (income and
// marital status, split 50/25/25 by its data config). aliccp: rechub's Ali-CCP-shaped synthetic
// data with planted click and conversion signal (40k train / 8k val / 16k test rows). Early
// stopping on the first task's validation AUC (patience 1); the best epoch's weights are tested.
// Prints one markdown row per strategy. Run under flock /work/notes/bench.lock: it is a benchmark.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  try {
    const std::string which = argc > 1 ? argv[1] : "census";
    const int64_t epochs = argc > 2 ? std::atoll(argv[2]) : 3;
    const int seeds = argc > 3 ? std::atoi(argv[3]) : 3;
    data::LoadedData d;
    fs::path tmp;
    if (which == "census") {
      // Run from the source tree's root (or give the data config as the fourth argument).
      const data::DataConfig cfg =
          data::load_data_config(argc > 4 ? argv[4] : "examples/data/census-income-kdd/census_income_kdd.json");
      d = data::load_data(cfg.files, cfg.schema, cfg.options);
    } else if (which == "aliccp") {
      tmp = fs::temp_directory_path() / ("rechub_bench_balance_" + std::to_string(::getpid()));
      fs::create_directories(tmp);
      const data::AliCcpSynthConfig cfg{.seed = 3,
                                        .vocab_sizes = {2000, 500, 300, 100, 50, 10},
                                        .num_dense = 2,
                                        .click_rate = 0.25,
                                        .conversion_rate = 0.3};
      data::AliCcpSynth gen(cfg);
      const auto paths = data::write_ali_ccp_synthetic((tmp / "ali").string(), cfg, 40000, 8000, 16000);
      data::DataOptions dopt;
      dopt.cache.enabled = false;
      d = data::load_data({.train = paths[0], .val = paths[1], .test = paths[2]}, gen.schema(8), dopt);
    } else {
      std::fprintf(stderr, "bench_balance: the data set must be census or aliccp, got '%s'\n", which.c_str());
      return 2;
    }
    const auto& schema = d.preprocessor->schema();
    const auto tasks = schema.task_names();
    std::printf("%s: %lld train / %lld val / %lld test rows, MMoE, %lld epochs, %d seeds\n", which.c_str(),
                static_cast<long long>(d.train->rows()), static_cast<long long>(d.val->rows()),
                static_cast<long long>(d.test->rows()), static_cast<long long>(epochs), seeds);
    std::printf("| strategy | %s AUC | %s AUC | s / run |\n|---|---|---|---|\n", tasks[0].c_str(), tasks[1].c_str());
    for (const std::string s : {"fixed", "gradnorm", "metabalance", "uwl", "dwa", "pcgrad", "mgda", "cagrad"}) {
      std::vector<std::vector<double>> auc(2);
      double secs = 0;
      for (int seed = 1; seed <= seeds; ++seed) {
        auto model = trainer::build_model("mmoe", models::features_from_schema(schema), tasks, schema.task_types(),
                                          {.embed_dim = 4,
                                           .expert_units = {32},
                                           .num_experts = 4,
                                           .tower_units = {16},
                                           .seed = static_cast<uint64_t>(seed)});
        trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3},
                                      .n_epochs = epochs,
                                      .task_weights_strategy = s,
                                      .earlystop_patience = 1,
                                      .seed = static_cast<uint64_t>(seed),
                                      .progress = false,
                                      .gate_diagnostics = false});
        data::DataLoader train(d.train, {.batch_size = 512, .seed = static_cast<uint64_t>(seed)});
        data::DataLoader val(d.val, {.batch_size = 4096, .shuffle = false, .prefetch = 0});
        const auto t0 = std::chrono::steady_clock::now();
        t.fit(train, &val);
        secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto r = metrics::evaluate_multi_task(*model, *d.test, {.quiet = true});
        for (size_t k = 0; k < 2; ++k) auc[k].push_back(r.at(tasks[k]).auc);
      }
      std::printf("| %s |", s.c_str());
      for (const auto& a : auc) {
        double m = 0, v = 0;
        for (double x : a) m += x;
        m /= static_cast<double>(a.size());
        for (double x : a) v += (x - m) * (x - m);
        std::printf(" %.4f ± %.4f |", m, a.size() > 1 ? std::sqrt(v / static_cast<double>(a.size() - 1)) : 0.0);
      }
      std::printf(" %.1f |\n", secs / seeds);
      std::fflush(stdout);
    }
    if (!tmp.empty()) fs::remove_all(tmp);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_balance: %s\n", e.what());
    return 1;
  }
}
