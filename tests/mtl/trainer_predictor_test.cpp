// Predictor: loads model.safetensors with its vocabularies, predicts raw rows exactly as the
// trained model does on encoded rows, and gives the same answers from 8 threads at once.
#include <gtest/gtest.h>

#include <filesystem>
#include <latch>
#include <thread>

#include "rechub/kernels/cpu/isa.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"

namespace rechub::trainer {
namespace {

namespace fs = std::filesystem;

TEST(Predictor, RawRowsMatchTheTrainedModelAndEightThreadsMatchOne) {
  const fs::path dir = fs::temp_directory_path() / ("rechub_predictor_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  data::AliCcpSynthConfig cfg{.seed = 5, .vocab_sizes = {500, 100, 20, 5}, .num_dense = 2, .click_rate = 0.3};
  data::AliCcpSynth gen(cfg);
  const auto paths = data::write_ali_ccp_synthetic((dir / "a").string(), cfg, 3000, 0, 600);
  const auto d = data::load_data({.train = paths[0], .test = paths[1]}, gen.schema(4),
                                 {.preprocess = {.normalization = data::Normalization::standard}});
  auto model = build_model(
      "ple", models::features_from_schema(d.preprocessor->schema()), d.preprocessor->schema().task_names(), {},
      {.expert_units = {16}, .num_experts = 2, .num_shared_experts = 1, .num_layers = 2, .tower_units = {8}});
  MTLTrainer t(model, {.n_epochs = 1, .progress = false, .preprocessor = d.preprocessor});
  data::DataLoader train(d.train, {.batch_size = 256, .prefetch = 0});
  t.fit(train);
  const std::string ckpt = (dir / "model.safetensors").string();
  t.save_model(ckpt);

  const auto expected = metrics::predict_rows(*model, *d.test);  // [task][row]
  Predictor p(ckpt);
  ASSERT_EQ(p.task_names(), model->task_names());
  const auto raw = data::read_raw_rows(paths[1], p.preprocessor().csv_options());
  const auto single = p.predict(raw.rows, raw.header, 128);
  ASSERT_EQ(single.size(), static_cast<size_t>(d.test->rows()));
  for (size_t i = 0; i < single.size(); ++i)
    for (size_t k = 0; k < 2; ++k) ASSERT_NEAR(single[i][k], expected[k][i], 1e-6) << "row " << i << " task " << k;

  // A row's scores do not depend on the batch it comes in: one row at a time (the GEMMs' few-rows
  // path) gives the bits of batches of 128, on the AVX2 and AVX-512 paths (Eigen's GEMM, forced by
  // RECHUB_CPU=generic, blocks by the shape: within rounding there).
  const bool exact = kernels::cpu::active_isa() != kernels::cpu::Isa::generic;
  const std::vector<std::vector<std::string>> first(raw.rows.begin(), raw.rows.begin() + 40);
  const auto one_by_one = p.predict(first, raw.header, 1);
  for (size_t i = 0; i < first.size(); ++i)
    for (size_t k = 0; k < 2; ++k) {
      if (exact)
        ASSERT_EQ(one_by_one[i][k], single[i][k]) << "row " << i << " task " << k << " scored alone";
      else
        ASSERT_NEAR(one_by_one[i][k], single[i][k], 1e-6) << "row " << i << " task " << k << " scored alone";
    }

  // Eight callers released together (so their calls overlap), each with its own batch size; the
  // ThreadSanitizer pass of tests/run_all.sh runs this test too.
  std::vector<std::vector<std::vector<double>>> results(8);
  std::vector<std::thread> threads;
  std::latch start(8);
  for (size_t th = 0; th < 8; ++th)
    threads.emplace_back([&, th] {
      start.arrive_and_wait();
      for (int rep = 0; rep < 3; ++rep)
        results[th] = p.predict(raw.rows, raw.header, 64 + 32 * static_cast<int64_t>(th));
    });
  for (auto& x : threads) x.join();
  for (size_t th = 0; th < 8; ++th) {
    ASSERT_EQ(results[th].size(), single.size());
    for (size_t i = 0; i < single.size(); ++i)
      for (size_t k = 0; k < 2; ++k)
        ASSERT_NEAR(results[th][i][k], single[i][k], 1e-6) << "thread " << th << " row " << i;
  }
  EXPECT_THROW(Predictor((dir / "missing.safetensors").string()), Error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rechub::trainer
