// TrainerOptions::on_batch / on_epoch (what the Python package uses for Ctrl-C and logging):
// called once per batch and once per epoch, in order, and an exception thrown from one leaves fit
// with the last finished epoch's outputs as they were.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "rechub/core/rng.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"

namespace rechub {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<data::Dataset> tiny_data(int64_t rows) {
  data::Schema s{
      .sparse = {{.name = "a", .vocab_size = 10, .embed_dim = 4}, {.name = "b", .vocab_size = 7, .embed_dim = 4}},
      .dense = {{.name = "d"}},
      .labels = {{.task = "ctr", .column = "click"}, {.task = "cvr", .column = "buy"}}};
  auto ds = std::make_shared<data::Dataset>(s, rows);
  Generator g(3);
  for (int64_t r = 0; r < rows; ++r) {
    ds->sparse_data()[r * 2] = static_cast<int64_t>(g.next_u64() % 10);
    ds->sparse_data()[r * 2 + 1] = static_cast<int64_t>(g.next_u64() % 7);
    ds->dense_data()[r] = static_cast<float>(g.next_u64() % 100) / 100.0f;
    ds->label_data()[r * 2] = static_cast<float>(ds->sparse_data()[r * 2] % 2);
    ds->label_data()[r * 2 + 1] = static_cast<float>(g.next_u64() % 2);
  }
  return ds;
}

std::shared_ptr<models::MultiTaskModel> tiny_model(const data::Dataset& ds) {
  return trainer::build_model("mmoe", models::features_from_schema(ds.schema()), ds.schema().task_names(), {},
                              {.expert_units = {8}, .num_experts = 2, .tower_units = {4}});
}

TEST(MTLTrainerCallbacks, CalledOncePerBatchAndPerEpochInOrder) {
  const auto ds = tiny_data(1000);
  std::vector<std::tuple<int64_t, int64_t, int64_t>> batches;
  std::vector<int64_t> epochs;
  trainer::MTLTrainer t(tiny_model(*ds),
                        {.n_epochs = 3,
                         .progress = false,
                         .on_batch = [&](int64_t e, int64_t b, int64_t rows) { batches.emplace_back(e, b, rows); },
                         .on_epoch =
                             [&](const trainer::EpochRecord& r) {
                               EXPECT_EQ(static_cast<int64_t>(batches.size()), r.epoch * 4);  // epochs count from 1
                               epochs.push_back(r.epoch);
                             }});
  data::DataLoader train(ds, {.batch_size = 256, .seed = 1, .prefetch = 0});
  t.fit(train);
  ASSERT_EQ(batches.size(), 12u);  // 3 epochs x ceil(1000 / 256)
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto [e, b, rows] = batches[i];
    EXPECT_EQ(e, static_cast<int64_t>(i / 4));
    EXPECT_EQ(b, static_cast<int64_t>(i % 4));
    EXPECT_EQ(rows, std::min<int64_t>(1000, (b + 1) * 256));
  }
  EXPECT_EQ(epochs, (std::vector<int64_t>{1, 2, 3}));
}

TEST(MTLTrainerCallbacks, AnExceptionStopsTrainingAndKeepsTheLastEpochsOutputs) {
  const auto ds = tiny_data(1000);
  const fs::path out = fs::temp_directory_path() / ("rechub_callbacks_" + std::to_string(::getpid()));
  fs::remove_all(out);
  int64_t seen = 0;
  trainer::MTLTrainer t(
      tiny_model(*ds),
      {.n_epochs = 5, .out_dir = out.string(), .progress = false, .on_batch = [&](int64_t e, int64_t b, int64_t) {
         ++seen;
         if (e == 1 && b == 2) throw std::runtime_error("interrupted");
       }});
  data::DataLoader train(ds, {.batch_size = 256, .seed = 1, .prefetch = 0});
  EXPECT_THROW(t.fit(train), std::runtime_error);
  EXPECT_EQ(seen, 4 + 3);  // stopped right after batch 2 of epoch 1
  EXPECT_EQ(t.history().size(), 1u);
  std::ifstream jsonl(out / "metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(jsonl, line)) ++lines;
  EXPECT_EQ(lines, 1);  // epoch 1's record; the interrupted epoch wrote nothing
  EXPECT_TRUE(fs::exists(out / "checkpoint.safetensors"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  fs::remove_all(out);
}

}  // namespace
}  // namespace rechub
