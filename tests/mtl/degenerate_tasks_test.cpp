// Degenerate tasks: a one-class training label column and a positive rate that differs more than
// 5x between training and validation are warned about, naming the task and the counts read back
// from the files the test wrote; constant predictions are warned about in evaluation; early
// stopping on an AUC that the validation labels leave undefined is refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"

namespace rechub::trainer {
namespace {

namespace fs = std::filesystem;

struct Written {
  int64_t rows = 0, purchases = 0;
};

// click/purchase CSV; purchase is 1 with probability `buy_rate` (0: never).
Written write_csv(const fs::path& path, int64_t rows, uint64_t seed, double buy_rate) {
  Generator gen(seed);
  std::ofstream f(path);
  f << "u,i,price,click,purchase\n";
  Written w{rows, 0};
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t u = gen.randint(30), i = gen.randint(40);
    const int click = gen.uniform() < (u % 3 == 0 ? 0.6 : 0.2) ? 1 : 0;
    const int buy = gen.uniform() < buy_rate ? 1 : 0;
    w.purchases += buy;
    f << u << ',' << i << ',' << gen.uniform() << ',' << click << ',' << buy << '\n';
  }
  return w;
}

data::Schema schema() {
  data::Schema s;
  s.sparse = {{.name = "u", .embed_dim = 4}, {.name = "i", .embed_dim = 4}};
  s.dense = {{.name = "price"}};
  s.labels = {{.task = "click", .column = "click"}, {.task = "purchase", .column = "purchase"}};
  return s;
}

struct Files {
  fs::path dir;
  data::LoadedData data;
  Written train, val;
};

Files setup(const std::string& name, double train_buy, double val_buy) {
  Files s;
  s.dir = fs::temp_directory_path() / ("rechub_degenerate_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(s.dir);
  fs::create_directories(s.dir);
  s.train = write_csv(s.dir / "train.csv", 1500, 1, train_buy);
  s.val = write_csv(s.dir / "val.csv", 600, 2, val_buy);
  data::DataOptions dopt;
  dopt.cache.enabled = false;
  s.data =
      data::load_data({.train = (s.dir / "train.csv").string(), .val = (s.dir / "val.csv").string()}, schema(), dopt);
  return s;
}

std::shared_ptr<models::MultiTaskModel> model_for(const Files& s) {
  const auto& sc = s.data.preprocessor->schema();
  return build_model("mmoe", models::features_from_schema(sc), sc.task_names(), sc.task_types(),
                     {.expert_units = {8}, .num_experts = 2, .tower_units = {4}});
}

bool any_contains(const std::vector<std::string>& v, const std::vector<std::string>& parts) {
  for (const auto& w : v) {
    bool all = true;
    for (const auto& p : parts) all = all && w.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& w : v) s += w + "\n";
  return s;
}

TEST(DegenerateTasks, OneClassTrainingLabelsAreWarned) {
  Files s = setup("oneclass", 0.0, 0.1);
  MTLTrainer t(model_for(s), {.n_epochs = 1, .progress = false});
  data::DataLoader train(s.data.train, {.batch_size = 256, .prefetch = 0});
  t.fit(train);
  ASSERT_EQ(s.train.purchases, 0);
  EXPECT_TRUE(any_contains(t.warnings(), {"task 'purchase'", "every training label", "1500 rows) is 0"}))
      << joined(t.warnings());
  EXPECT_FALSE(any_contains(t.warnings(), {"task 'click'"})) << joined(t.warnings());
  fs::remove_all(s.dir);
}

TEST(DegenerateTasks, PositiveRateDriftBetweenTrainingAndValidationIsWarned) {
  Files s = setup("drift", 0.04, 0.5);
  MTLTrainer t(model_for(s), {.n_epochs = 1, .progress = false});
  data::DataLoader train(s.data.train, {.batch_size = 256, .prefetch = 0});
  data::DataLoader val(s.data.val, {.batch_size = 512, .shuffle = false, .prefetch = 0});
  t.fit(train, &val);
  const std::string tr = std::to_string(s.train.purchases) + " of 1500";
  const std::string va = std::to_string(s.val.purchases) + " of 600";
  EXPECT_TRUE(any_contains(t.warnings(), {"task 'purchase'", "more than 5x", tr, va})) << joined(t.warnings());
  EXPECT_FALSE(any_contains(t.warnings(), {"task 'click'", "5x"})) << joined(t.warnings());
  fs::remove_all(s.dir);

  // Similar rates: no warning.
  Files q = setup("nodrift", 0.2, 0.25);
  MTLTrainer t2(model_for(q), {.n_epochs = 1, .progress = false});
  data::DataLoader train2(q.data.train, {.batch_size = 256, .prefetch = 0});
  data::DataLoader val2(q.data.val, {.batch_size = 512, .shuffle = false, .prefetch = 0});
  t2.fit(train2, &val2);
  EXPECT_FALSE(any_contains(t2.warnings(), {"5x"})) << joined(t2.warnings());
  fs::remove_all(q.dir);
}

TEST(DegenerateTasks, ConstantPredictionsAreWarnedInEvaluation) {
  Files s = setup("constant", 0.2, 0.2);
  auto model = model_for(s);
  {
    NoGradGuard ng;
    for (auto& [name, p] : model->named_parameters()) p.copy_(ops::mul(p, 0.0));  // every output is the same
  }
  const auto r = metrics::evaluate_multi_task(*model, *s.data.val, {.quiet = true});
  EXPECT_DOUBLE_EQ(r.at("click").auc, 0.5);
  EXPECT_TRUE(any_contains(r.warnings, {"task 'click'", "predictions are constant", "600 rows", "AUC is 0.5"}))
      << joined(r.warnings);
  EXPECT_TRUE(any_contains(r.warnings, {"task 'purchase'", "predictions are constant"})) << joined(r.warnings);
  // A trained model's predictions vary: no such warning.
  auto m2 = model_for(s);
  MTLTrainer t(m2, {.n_epochs = 1, .progress = false});
  data::DataLoader train(s.data.train, {.batch_size = 256, .prefetch = 0});
  t.fit(train);
  const auto r2 = metrics::evaluate_multi_task(*m2, *s.data.val, {.quiet = true});
  EXPECT_FALSE(any_contains(r2.warnings, {"constant"})) << joined(r2.warnings);
  fs::remove_all(s.dir);
}

TEST(DegenerateTasks, EarlyStoppingOnAnUndefinedAucIsRefused) {
  Files s = setup("earlystop", 0.2, 0.0);
  data::DataLoader train(s.data.train, {.batch_size = 256, .prefetch = 0});
  data::DataLoader val(s.data.val, {.batch_size = 512, .shuffle = false, .prefetch = 0});
  MTLTrainer t(model_for(s), {.n_epochs = 2, .earlystop_patience = 1, .earlystop_task = "purchase", .progress = false});
  try {
    t.fit(train, &val);
    ADD_FAILURE() << "early stopping ran on a NaN AUC";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'purchase'"), std::string::npos) << m;
    EXPECT_NE(m.find("refused"), std::string::npos) << m;
    EXPECT_NE(m.find("every validation label is 0 (600 rows)"), std::string::npos) << m;
  }
  // On the log loss (defined with one class) it runs.
  MTLTrainer t2(model_for(s), {.n_epochs = 2,
                               .earlystop_patience = 1,
                               .earlystop_task = "purchase",
                               .earlystop_metric = "logloss",
                               .progress = false});
  EXPECT_NO_THROW(t2.fit(train, &val));
  fs::remove_all(s.dir);
}

}  // namespace
}  // namespace rechub::trainer
