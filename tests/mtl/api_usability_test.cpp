// What a torch-rechub user gets wrong first, through the C++ API and the CLI: task types by name,
// tasks matched to label columns by name, early stopping without validation data, task weights a
// strategy ignores, epochs counted from 1 everywhere, learning-rate schedules (closed forms and
// exact resume), a custom optimizer, CLI flags that do not apply to the chosen model or method,
// ESMM's shared MLP and GAUC from the CLI (against scikit-learn).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rechub/core/autograd.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/data/vocabulary.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "support/cli_run.h"
#include "support/test_util.h"

namespace rechub {
namespace {

using testing::error_of;
using testing::run_cli;
namespace fs = std::filesystem;

const data::LoadedData& small_data() {
  static const data::LoadedData d = data::ali_ccp_example_data(2000);
  return d;
}

std::shared_ptr<models::MMoE> small_mmoe(std::vector<std::string> names) {
  const auto& schema = small_data().preprocessor->schema();
  return std::make_shared<models::MMoE>(models::MMoEConfig{.features = models::features_from_schema(schema),
                                                           .expert_units = {8},
                                                           .num_experts = 2,
                                                           .task_names = std::move(names),
                                                           .tower_units = {4}});
}

TEST(TaskTypeNames, ConfigsTakeTaskTypesAsStrings) {
  const auto& schema = small_data().preprocessor->schema();
  models::SharedBottom m({.features = models::features_from_schema(schema),
                          .hidden_units = {8},
                          .task_hidden_units = {4},
                          .task_types = {"binary", "regression"},
                          .task_names = {"a", "b"}});
  EXPECT_EQ(m.task_types()[0], data::TaskType::binary);
  EXPECT_EQ(m.task_types()[1], data::TaskType::regression);
  EXPECT_EQ(data::TaskType::from_string("classification"), data::TaskType::binary);  // torch-rechub's name
  EXPECT_EQ(data::TaskType("regression"), data::TaskType::regression);
  const std::string e = error_of([] {
    data::TaskType t("binray");
    (void)t;
  });
  EXPECT_NE(e.find("'binray'"), std::string::npos) << e;
  EXPECT_NE(e.find("regression"), std::string::npos) << e;
}

TEST(TrainerTasks, AreMatchedToLabelColumnsByName) {
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  // The example data's tasks are ctr and ctcvr (columns click and purchase).
  for (const auto& names : std::vector<std::vector<std::string>>{{"click", "purchase"}, {"ctcvr", "ctr"}, {}}) {
    trainer::MTLTrainer t(small_mmoe(names), {.n_epochs = 1, .progress = false});
    const std::string e = error_of([&] { t.fit(train); });
    EXPECT_NE(e.find("do not match the training data's label tasks (ctr (column click), ctcvr (column purchase))"),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("task_names"), std::string::npos) << e;
  }
  trainer::MTLTrainer ok(small_mmoe({"ctr", "ctcvr"}), {.n_epochs = 1, .progress = false});
  EXPECT_NO_THROW(ok.fit(train));
}

TEST(TrainerOptionsChecks, EarlyStoppingNeedsValidationAndWeightsNeedAStrategyThatUsesThem) {
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.n_epochs = 2, .earlystop_patience = 1, .progress = false});
  const std::string e = error_of([&] { t.fit(train); });
  EXPECT_NE(e.find("earlystop_patience = 1 needs validation data"), std::string::npos) << e;
  for (const char* strategy : {"gradnorm", "uwl", "dwa"}) {
    const std::string w = error_of([&] {
      trainer::MTLTrainer g(small_mmoe({"ctr", "ctcvr"}),
                            {.task_weights = {1, 0.5}, .task_weights_strategy = strategy, .progress = false});
    });
    EXPECT_NE(w.find("task_weights are not used by task_weights_strategy '" + std::string(strategy) + "'"),
              std::string::npos)
        << w;
  }
}

TEST(TrainerEpochs, AreCountedFromOneInHistoryBestEpochAndMetricsFile) {
  testing::TempDir dir;
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  data::DataLoader val(small_data().val, {.batch_size = 4096, .shuffle = false});
  trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.optimizer_params = {.lr = 3e-3},
                                                       .n_epochs = 3,
                                                       .earlystop_patience = 5,
                                                       .out_dir = dir.path.string(),
                                                       .progress = false});
  t.fit(train, &val);
  ASSERT_EQ(t.history().size(), 3u);
  int64_t want_best = 0;
  double best = -1;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(t.history()[i].epoch, static_cast<int64_t>(i) + 1);
    // The default rule watches the mean of the tasks' validation AUCs.
    const double auc = (t.history()[i].val.at("ctr").auc + t.history()[i].val.at("ctcvr").auc) / 2;
    if (auc > best) best = auc, want_best = static_cast<int64_t>(i) + 1;
  }
  EXPECT_EQ(t.best_epoch(), want_best);
  std::ifstream in(dir.path / "metrics.jsonl");
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) EXPECT_EQ(nlohmann::json::parse(line).at("epoch").get<int64_t>(), ++n);
  EXPECT_EQ(n, 3);
}

// earlystop_min_delta: an epoch must beat the best by more than it; with a delta no AUC can beat,
// the first epoch stays the best and training stops after `patience` more epochs.
TEST(TrainerEarlyStopping, MinDeltaAndNamedTask) {
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  data::DataLoader val(small_data().val, {.batch_size = 4096, .shuffle = false});
  trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.optimizer_params = {.lr = 3e-3},
                                                       .n_epochs = 10,
                                                       .earlystop_patience = 2,
                                                       .earlystop_min_delta = 1.0,
                                                       .progress = false});
  t.fit(train, &val);
  EXPECT_EQ(t.best_epoch(), 1);
  EXPECT_EQ(t.history().size(), 3u);
  trainer::MTLTrainer named(small_mmoe({"ctr", "ctcvr"}), {.optimizer_params = {.lr = 3e-3},
                                                           .n_epochs = 3,
                                                           .earlystop_patience = 5,
                                                           .earlystop_task = "ctcvr",
                                                           .progress = false});
  named.fit(train, &val);
  int64_t want = 0;
  double best = -1;
  for (const auto& r : named.history())
    if (r.val.at("ctcvr").auc > best) best = r.val.at("ctcvr").auc, want = r.epoch;
  EXPECT_EQ(named.best_epoch(), want);
  const std::string e = error_of([] {
    trainer::MTLTrainer m(small_mmoe({"ctr", "ctcvr"}), {.earlystop_min_delta = -1, .progress = false});
  });
  EXPECT_NE(e.find("earlystop_min_delta must be >= 0"), std::string::npos) << e;
}

// log_standard: standard scaling of sign(x) log(1 + |x|), checked against the formula in f64.
TEST(Normalization, LogStandardScalesTheSignedLogOfTheValues) {
  const std::vector<float> v{0.f, 1.f, 10.f, 99999.f, -3.f, 2500.f, NAN};
  const auto z = data::Normalizer::fit(v.data(), static_cast<int64_t>(v.size()), data::Normalization::log_standard,
                                       data::MissingFill::mean);
  std::vector<double> l;
  double raw_mean = 0;
  for (float x : v)
    if (!std::isnan(x)) l.push_back(x < 0 ? -std::log1p(-double(x)) : std::log1p(double(x))), raw_mean += x;
  raw_mean /= static_cast<double>(l.size());
  double mean = 0, var = 0;
  for (double x : l) mean += x;
  mean /= static_cast<double>(l.size());
  for (double x : l) var += (x - mean) * (x - mean);
  const double sd = std::sqrt(var / static_cast<double>(l.size()));
  for (size_t i = 0; i + 1 < v.size(); ++i) EXPECT_NEAR(z.apply(v[i]), (l[i] - mean) / sd, 1e-5) << v[i];
  // A missing value is the training mean of the raw values, then transformed.
  EXPECT_NEAR(z.apply(NAN), (std::log1p(raw_mean) - mean) / sd, 1e-5);
  EXPECT_EQ(data::normalization_from_name("log_standard"), data::Normalization::log_standard);
  const auto back = data::Normalizer::from_json(z.to_json());
  EXPECT_EQ(back.apply(10.f), z.apply(10.f));
}

// The learning rate after the last batch against the schedule's closed form, computed here in f64.
TEST(TrainerSchedules, FollowTheirClosedFormsInEveryGroup) {
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  const int64_t nb = train.num_batches(), epochs = 2, last = nb * epochs - 1;
  const double lr = 4e-3, task_lr = 1e-3;
  {
    const int64_t warm = 3;
    trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.optimizer_params = {.lr = lr},
                                                         .n_epochs = epochs,
                                                         .lr_schedule = "cosine",
                                                         .lr_warmup_steps = warm,
                                                         .lr_min_factor = 0.1,
                                                         .task_specific_lr = {{"ctcvr", task_lr}},
                                                         .progress = false});
    t.fit(train);
    const double u = static_cast<double>(last - warm) / static_cast<double>(nb * epochs - warm);
    const double factor = 0.1 + 0.9 * (1 + std::cos(M_PI * u)) / 2;
    for (size_t g = 0; g < t.optimizer().num_groups(); ++g) {
      const std::string& name = t.optimizer().group(g).name;
      const double base = name == "task:ctcvr" ? task_lr : lr;
      EXPECT_NEAR(t.optimizer().lr(g), base * factor, 1e-12 * base) << name;
    }
  }
  {
    trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.optimizer_params = {.lr = lr},
                                                         .n_epochs = epochs,
                                                         .lr_schedule = "step",
                                                         .lr_step_epochs = 1,
                                                         .lr_gamma = 0.5,
                                                         .progress = false});
    t.fit(train);
    for (size_t g = 0; g < t.optimizer().num_groups(); ++g) EXPECT_DOUBLE_EQ(t.optimizer().lr(g), lr * 0.5);
  }
  const std::string e = error_of([] {
    trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.lr_schedule = "linear", .progress = false});
  });
  EXPECT_NE(e.find("lr_schedule must be constant, cosine, step or plateau, got 'linear'"), std::string::npos) << e;
}

TEST(TrainerSchedules, ResumeContinuesTheScheduleExactly) {
  testing::TempDir a, b;
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  auto opts = [&](const fs::path& out) {
    return trainer::TrainerOptions{.optimizer_params = {.lr = 3e-3},
                                   .n_epochs = 3,
                                   .lr_schedule = "cosine",
                                   .lr_warmup_steps = 5,
                                   .out_dir = out.string(),
                                   .progress = false};
  };
  auto whole = small_mmoe({"ctr", "ctcvr"});
  trainer::MTLTrainer(whole, opts(a.path)).fit(train);
  auto cut = small_mmoe({"ctr", "ctcvr"});
  auto o = opts(b.path);
  o.on_batch = testing::stop_after_batches(train.num_batches() + 2);  // dies in epoch 2; epoch 1's checkpoint stays
  EXPECT_NE(error_of([&] { trainer::MTLTrainer(cut, o).fit(train); }), "<no error>");
  auto resumed = small_mmoe({"ctr", "ctcvr"});
  o.on_batch = nullptr;
  o.resume = true;
  trainer::MTLTrainer(resumed, o).fit(train);
  const auto want = whole->named_parameters();
  const auto got = resumed->named_parameters();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(want[i].second.to_vector<float>(), got[i].second.to_vector<float>()) << want[i].first;
}

TEST(TrainerOptimizerFn, BuildsTheOptimizerFromTheTrainersGroups) {
  data::DataLoader train(small_data().train, {.batch_size = 256, .seed = 1});
  size_t groups_seen = 0;
  trainer::MTLTrainer t(small_mmoe({"ctr", "ctcvr"}), {.optimizer_params = {.lr = 0.05},
                                                       .n_epochs = 1,
                                                       .optimizer_fn =
                                                           [&](std::vector<nn::ParamGroup> g) {
                                                             groups_seen = g.size();
                                                             return std::make_unique<nn::SGD>(
                                                                 std::move(g), nn::SGDOptions{.momentum = 0.9});
                                                           },
                                                       .progress = false});
  EXPECT_EQ(t.optimizer().kind(), "sgd");
  EXPECT_EQ(groups_seen, 3u);  // shared, task:ctr, task:ctcvr
  t.fit(train);
  EXPECT_TRUE(std::isfinite(t.history()[0].train_loss[0]));
}

// torch-rechub's tower_params_list: each task's tower with its own widths, in every model, through
// the saved config and back; a list of the wrong length is refused.
TEST(PerTaskTowers, EachTaskGetsItsOwnWidthsInEveryModel) {
  const auto& schema = small_data().preprocessor->schema();
  const auto f = models::features_from_schema(schema);
  const std::vector<std::vector<int64_t>> units{{8}, {6, 3}};
  for (const char* kind : {"shared_bottom", "mmoe", "omoe", "ple", "aitm", "esmm"}) {
    auto m = trainer::build_model(kind, f, schema.task_names(), {},
                                  {.hidden_units = {8},
                                   .expert_units = {8},
                                   .num_experts = 2,
                                   .tower_units = {99},
                                   .tower_units_per_task = units});
    const auto params = m->named_parameters();
    auto shape_of = [&](const std::string& name) -> std::vector<int64_t> {
      for (const auto& [n, p] : params)
        if (n == name) return p.shape();
      return {};
    };
    const std::string first = std::string(kind) == "esmm" ? "tower_ctr" : "towers.0";
    const std::string second = std::string(kind) == "esmm" ? "tower_cvr" : "towers.1";
    EXPECT_EQ(shape_of(first + ".mlp.0.weight").at(0), 8) << kind;
    EXPECT_EQ(shape_of(first + ".mlp.4.weight"), (std::vector<int64_t>{1, 8})) << kind;  // output Linear
    EXPECT_EQ(shape_of(second + ".mlp.0.weight").at(0), 6) << kind;
    EXPECT_EQ(shape_of(second + ".mlp.4.weight"), (std::vector<int64_t>{3, 6})) << kind;
    EXPECT_EQ(shape_of(second + ".mlp.8.weight"), (std::vector<int64_t>{1, 3})) << kind;
    const auto batch = small_data().test->range_batch(0, 16);
    EXPECT_EQ(m->forward(batch).prediction_matrix().shape(), (std::vector<int64_t>{16, 2})) << kind;
    const std::string key =
        std::string(kind) == "shared_bottom" ? "task_hidden_units_per_task" : "tower_units_per_task";
    EXPECT_EQ(m->config_json().at(key), nlohmann::json(units)) << kind;
    const std::string e =
        error_of([&] { trainer::build_model(kind, f, schema.task_names(), {}, {.tower_units_per_task = {{4}}}); });
    EXPECT_NE(e.find("1 tower shapes for 2 tasks"), std::string::npos) << kind << ": " << e;
  }
}

class CliFlags : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef RECHUB_CLI
    GTEST_SKIP() << "the rechub command is not built (RECHUB_BUILD_EXAMPLES=OFF)";
#endif
  }
  static void expect_error(const std::string& args, const std::string& needle) {
    const auto r = run_cli(args);
    EXPECT_FALSE(r.signaled) << args << "\n" << r.out;
    EXPECT_NE(r.code, 0) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << "rechub " << args << "\nexpected '" << needle << "' in:\n"
                                                     << r.out;
  }
};

TEST_F(CliFlags, AFlagTheChosenModelOrMethodIgnoresIsRefused) {
  const std::string base = "train --train t.csv --out o --tasks click ";
  expect_error(base + "--model shared_bottom --expert-units 64",
               "--expert-units does not apply to --model shared_bottom (it is used by --model mmoe, omoe, ple)");
  expect_error(base + "--model mmoe --hidden-units 64", "--hidden-units does not apply to --model mmoe");
  expect_error(base + "--model mmoe --num-layers 3",
               "--num-layers does not apply to --model mmoe (it is used by --model ple)");
  expect_error(base + "--gradnorm-alpha 2", "--gradnorm-alpha does not apply to --balance fixed");
  expect_error(base + "--balance gradnorm --task-weights 1,2", "--task-weights does not apply to --balance gradnorm");
  expect_error(base + "--balance gradnorm --relax-factor 0.5", "--relax-factor does not apply to --balance gradnorm");
  expect_error(base + "--lr-schedule constant --lr-gamma 0.5", "--lr-gamma does not apply to --lr-schedule constant");
  expect_error(base + "--lr-schedule step --lr-min-factor 0.1", "--lr-min-factor does not apply to --lr-schedule step");
  expect_error(base + "--early-stop-metric logloss", "--early-stop-metric only applies with early stopping");
  expect_error(base + "--early-stop 2",
               "--early-stop needs validation data to watch: add --val FILE or --val-fraction");
  expect_error(base + "--early-stop-min-delta 0.01", "--early-stop-min-delta only applies with early stopping");
  expect_error(base + "--normalize zscore2", "--normalize");
  expect_error("train --train t.csv --out o --schema s.json --task-types binary",
               "--task-types does not apply with --schema");
  const auto help = run_cli("train --help");
  for (const char* field :
       {"[API: expert_units]", "[API: tower_units / tower_units_per_task; SharedBottom: task_hidden_units]",
        "[API: SparseFeature::embed_dim]", "[API: lr_schedule]"})
    EXPECT_NE(help.out.find(field), std::string::npos) << field;
}

// ESMM's --hidden-units (a bottom MLP shared by both towers) and per-task --tower-units reach the
// saved model; eval --gauc-by
// reports GAUC over the raw values of a column, checked against scikit-learn on the same predictions.
TEST_F(CliFlags, EsmmHiddenUnitsAndGaucFromTheCommandLine) {
  testing::TempDir dir;
  const fs::path data = dir.path / "data", out = dir.path / "esmm";
  ASSERT_EQ(run_cli("synth --kind ali-ccp --rows 30000 --seed 3 --out " + data.string()).code, 0);
  const std::string train = (data / "ali_ccp_train.csv").string(), test = (data / "ali_ccp_test.csv").string();
  const auto r = run_cli("train --train " + train +
                         " --tasks click,purchase --model esmm --hidden-units 16 "
                         "--tower-units 'click=8;purchase=4,2' --epochs 1 --quiet --no-cache --out " +
                         out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string model = (out / "model.safetensors").string();
  trainer::Predictor p(model);
  EXPECT_EQ(p.model().config_json().at("hidden_units"), nlohmann::json::array({16}));
  EXPECT_EQ(p.model().config_json().at("tower_units_per_task"), nlohmann::json::parse("[[8], [4, 2]]"));

  const fs::path preds = dir.path / "preds.csv";
  ASSERT_EQ(run_cli("predict --model " + model + " --data " + test + " --out " + preds.string()).code, 0);
  const auto e = run_cli("eval --model " + model + " --data " + test + " --json --gauc-by 301");
  ASSERT_EQ(e.code, 0) << e.out;
  const auto j = nlohmann::json::parse(e.out.substr(e.out.find('{')));
  // scikit-learn's GAUC over the same rows and predictions (tests/reference/metrics_sklearn.py's gauc).
  const fs::path script = dir.path / "gauc.py", result = dir.path / "gauc.json";
  std::ofstream(script) << "import sys, json\nsys.path.insert(0, '" RECHUB_SOURCE_DIR
                           "/tests/reference')\n"
                           "import pandas as pd, numpy as np\nfrom metrics_sklearn import gauc\n"
                           "d = pd.read_csv(sys.argv[1], dtype=str)\np = pd.read_csv(sys.argv[2])\n"
                           "g = pd.factorize(d['301'])[0]\nout = {}\n"
                           "for task, col in (('click', 'click'), ('purchase', 'purchase')):\n"
                           "    out[task] = gauc(d[col].astype(float).to_numpy(), p[task].to_numpy(np.float64), g)\n"
                           "json.dump(out, open(sys.argv[3], 'w'))\n";
  const std::string cmd = std::string(RECHUB_PYTHON) + " " + script.string() + " " + test + " " + preds.string() + " " +
                          result.string() + " 2>&1";
  if (std::system(cmd.c_str()) != 0 || !fs::exists(result))
    RECHUB_REFERENCE_MISSING("python3 with scikit-learn and pandas could not run " + script.string(),
                             "python3-sklearn python3-pandas");
  const auto want = nlohmann::json::parse(std::ifstream(result));
  for (const char* task : {"click", "purchase"}) {
    ASSERT_TRUE(j.at("tasks").at(task).contains("gauc")) << e.out;
    EXPECT_NEAR(j["tasks"][task]["gauc"].get<double>(), want.at(task).get<double>(), 1e-6) << task;
  }
  const auto table = run_cli("eval --model " + model + " --data " + test + " --gauc-by 301");
  EXPECT_NE(table.out.find("GAUC"), std::string::npos) << table.out;
  const auto bad = run_cli("eval --model " + model + " --data " + test + " --gauc-by click");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("that is the label column of task 'click'"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace rechub
