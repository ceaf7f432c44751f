// One set of defaults (rechub/mtl/defaults.h): a program that keeps every default of the C++ API
// (schema inference, load_data, the model's config, DataLoader, TrainerOptions) trains the same
// model as `rechub train` with its defaults, weight for weight, for every model kind. Before the
// defaults were defined once, the configs (MMoE: 8 experts of 256-128; SharedBottom: towers of 32;
// seed 0x5eed, loader seed 0, no dense normalisation) and the command (4 experts of 128-64, towers
// 64-32, seed 1, standard normalisation) trained different models from the same data.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "rechub/mtl/data/infer.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "rechub/nn/safetensors.h"
#include "support/cli_run.h"
#include "support/test_util.h"

namespace rechub {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;

// The model of `kind` with every field of its config at its default, except the data's features
// and tasks.
std::shared_ptr<models::MultiTaskModel> default_model(const std::string& kind, const data::Schema& s) {
  const auto features = models::features_from_schema(s);
  const auto names = s.task_names();
  const auto types = s.task_types();
  if (kind == "shared_bottom")
    return std::make_shared<models::SharedBottom>(
        models::SharedBottomConfig{.features = features, .task_types = types, .task_names = names});
  if (kind == "mmoe")
    return std::make_shared<models::MMoE>(
        models::MMoEConfig{.features = features, .task_types = types, .task_names = names});
  if (kind == "omoe")
    return std::make_shared<models::OMoE>(
        models::OMoEConfig{.features = features, .task_types = types, .task_names = names});
  if (kind == "ple")
    return std::make_shared<models::PLE>(
        models::PLEConfig{.features = features, .task_types = types, .task_names = names});
  if (kind == "aitm")
    return std::make_shared<models::AITM>(
        models::AITMConfig{.features = features, .task_types = types, .task_names = names});
  if (kind == "esmm")
    return std::make_shared<models::ESMM>(models::ESMMConfig{.features = features, .task_names = names});
  ADD_FAILURE() << "unknown kind " << kind;
  return nullptr;
}

class OneSetOfDefaults : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
#ifndef RECHUB_CLI
    GTEST_SKIP() << "the rechub command is not built (RECHUB_BUILD_EXAMPLES=OFF)";
#endif
  }
};

TEST_P(OneSetOfDefaults, TheApiAndTheCommandTrainTheSameModel) {
  const std::string kind = GetParam();
  testing::TempDir dir;
  const fs::path data = dir.path / "data";
  ASSERT_EQ(run_cli("synth --kind ali-ccp --rows 4000 --seed 5 --out " + data.string()).code, 0);
  const std::string train = (data / "ali_ccp_train.csv").string();

  // The command, with its defaults (one epoch, to keep the test short; no cache, to leave no files).
  const fs::path cli_out = dir.path / "cli";
  const auto r = run_cli("train --train " + train + " --tasks click,purchase --model " + kind +
                         " --epochs 1 --quiet --no-cache --out " + cli_out.string());
  ASSERT_EQ(r.code, 0) << r.out;

  // The API, with its defaults.
  data::InferOptions io;
  io.label_columns = {"click", "purchase"};
  const data::Schema schema = data::infer_schema(train, io).schema;
  data::DataOptions dopt;
  dopt.cache.enabled = false;
  const auto d = data::load_data({.train = train}, schema, dopt);
  const auto model = default_model(kind, d.preprocessor->schema());
  ASSERT_TRUE(model);
  const fs::path api_out = dir.path / "api";
  trainer::TrainerOptions to{.n_epochs = 1};
  to.preprocessor = d.preprocessor;
  to.out_dir = api_out.string();
  to.progress = false;
  trainer::MTLTrainer trainer(model, to);
  data::DataLoader loader(d.train);
  trainer.fit(loader);

  const auto cli = nn::read_safetensors((cli_out / "model.safetensors").string());
  const auto api = nn::read_safetensors((api_out / "model.safetensors").string());
  ASSERT_EQ(cli.size(), api.size()) << kind << ": the two models have different parameter lists";
  int64_t differ = 0;
  for (size_t i = 0; i < cli.size(); ++i) {
    ASSERT_EQ(cli[i].first, api[i].first) << kind;
    const Tensor &a = cli[i].second, &b = api[i].second;  // read from files: contiguous
    ASSERT_EQ(a.shape(), b.shape()) << kind << ": " << cli[i].first;
    if (std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) != 0) {
      ++differ;
      ADD_FAILURE() << kind << ": " << cli[i].first << " differs between the API's and the command's model";
    }
  }
  EXPECT_EQ(differ, 0);
}

INSTANTIATE_TEST_SUITE_P(EveryModel, OneSetOfDefaults,
                         ::testing::Values("shared_bottom", "esmm", "mmoe", "omoe", "ple", "aitm"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace rechub
