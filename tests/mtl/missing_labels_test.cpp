// Missing labels per task (data::Label::missing_ok): the masked losses and their gradients against
// PyTorch (tests/reference/masked_loss_ref.py), a CSV with ~30 % of its purchase labels missing
// (empty cells and a -1 sentinel) trains and reports per-task counts equal to the ones counted
// while writing the file, a task without a single label is refused, and the schema's entry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/metrics/metrics.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "support/test_util.h"

namespace rechub::trainer {
namespace {

namespace fs = std::filesystem;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool have_torch() {
  const std::string cmd = std::string(RECHUB_PYTHON) + " -c 'import torch' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("rechub_missing_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

models::Features tiny_features() {
  data::Schema s;
  s.sparse.push_back({.name = "u", .vocab_size = 10, .embed_dim = 4});
  return models::features_from_schema(s);
}

TEST(MissingLabels, MaskedLossesAndGradientsMatchPyTorch) {
  if (!have_torch()) RECHUB_REFERENCE_MISSING(RECHUB_PYTHON << " lacks torch", "python3-torch");
  const int64_t B = 7;
  // Two label matrices: some labels missing, and every label of the second task missing.
  const std::vector<std::vector<double>> y_binary = {{1, 0, kNaN, 1, kNaN, 0, 1},
                                                     {kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN}};
  const std::vector<std::vector<double>> y_regression = {{0.5, kNaN, -1.0, 2.0, kNaN, kNaN, 0.1},
                                                         {kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN}};
  const std::vector<double> logits = {0.3, -1.2, 2.0, -0.4, 0.9, 1.5, -2.2};
  const std::vector<double> values = {0.2, 1.0, -0.5, 1.7, 0.0, 3.0, -0.3};
  const std::vector<double> probs = {0.3, 0.8, 0.5, 0.05, 0.9, 0.6, 0.2};
  nlohmann::json cases = nlohmann::json::array();
  auto js = [](const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v) a.push_back(std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x));
    return a;
  };
  struct Got {
    double loss;
    std::vector<double> grad;
  };
  std::vector<Got> got;
  auto leaf = [&](const std::vector<double>& v) {
    return from_vector(std::vector<float>(v.begin(), v.end()), {B, 1}, {.requires_grad = true});
  };
  auto labels_of = [&](const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<float> l;
    for (int64_t i = 0; i < B; ++i) l.push_back(static_cast<float>(a[i])), l.push_back(static_cast<float>(b[i]));
    return from_vector(l, {B, 2});
  };
  // A binary and a regression task (MMoE's loss), pos_weight 2 on the binary one.
  auto mmoe =
      build_model("mmoe", tiny_features(), {"click", "rating"}, {data::TaskType::binary, data::TaskType::regression},
                  {.expert_units = {4}, .tower_units = {4}});
  for (int k = 0; k < 2; ++k) {
    models::ModelOutput out;
    Tensor x = leaf(logits), v = leaf(values);
    out.logits = {x, Tensor()};
    out.predictions = {ops::sigmoid(x), v};
    const Tensor labels = labels_of(y_binary[k], y_regression[k]);
    const auto masks = models::mask_missing_labels(labels, Device::cpu());
    const auto L = mmoe->loss(out, labels, {.weights = {}, .pos_weights = {2.0, 1.0}, .masks = &masks});
    const auto gx = grad({L[0]}, {x})[0].to_vector<double>();
    const auto gv = grad({L[1]}, {v})[0].to_vector<double>();
    got.push_back({L[0].item(), gx});
    got.push_back({L[1].item(), gv});
    cases.push_back({{"kind", "logits"}, {"x", logits}, {"y", js(y_binary[k])}, {"pos_weight", 2.0}});
    cases.push_back({{"kind", "regression"}, {"x", values}, {"y", js(y_regression[k])}, {"pos_weight", 1.0}});
  }
  // ESMM's losses on probabilities, pos_weight 3 on pCTCVR.
  auto esmm = build_model("esmm", tiny_features(), {"ctr", "ctcvr"}, {}, {.tower_units = {4}});
  {
    models::ModelOutput out;
    Tensor p0 = leaf(probs), p1 = leaf(probs);
    out.logits = {Tensor(), Tensor()};
    out.predictions = {p0, p1};
    const Tensor labels = labels_of(y_binary[0], y_binary[1]);
    const auto masks = models::mask_missing_labels(labels, Device::cpu());
    const auto L = esmm->loss(out, labels, {.weights = {}, .pos_weights = {1.0, 3.0}, .masks = &masks});
    got.push_back({L[0].item(), grad({L[0]}, {p0})[0].to_vector<double>()});
    got.push_back({L[1].item(), grad({L[1]}, {p1})[0].to_vector<double>()});
    cases.push_back({{"kind", "probs"}, {"x", probs}, {"y", js(y_binary[0])}, {"pos_weight", 1.0}});
    cases.push_back({{"kind", "probs"}, {"x", probs}, {"y", js(y_binary[1])}, {"pos_weight", 3.0}});
  }
  const fs::path dir = temp_dir("loss");
  std::ofstream(dir / "in.json") << cases.dump();
  const std::string cmd = std::string(RECHUB_PYTHON) + " " + RECHUB_SOURCE_DIR +
                          "/tests/reference/masked_loss_ref.py " + (dir / "in.json").string() + " " +
                          (dir / "out.json").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto ref = nlohmann::json::parse(std::ifstream(dir / "out.json"));
  fs::remove_all(dir);
  ASSERT_EQ(ref.size(), got.size());
  for (size_t c = 0; c < got.size(); ++c) {
    SCOPED_TRACE("case " + std::to_string(c) + ": " + cases[c]["kind"].get<std::string>());
    // f32 on our side, f64 in the reference.
    EXPECT_NEAR(got[c].loss, ref[c]["loss"].get<double>(), 2e-6 * std::max(1.0, std::abs(got[c].loss)));
    for (int64_t i = 0; i < B; ++i) EXPECT_NEAR(got[c].grad[i], ref[c]["grad"][i].get<double>(), 2e-6) << "row " << i;
    // A batch without labels contributes exactly 0, never NaN.
    if (cases[c]["y"][0].is_null() && cases[c]["y"][1].is_null() && cases[c]["y"][6].is_null()) {
      EXPECT_EQ(got[c].loss, 0.0);
      for (double g : got[c].grad) EXPECT_EQ(g, 0.0);
    }
  }
}

// A click/purchase CSV; purchase is missing (empty or -1) on ~30 % of the rows. Returns the number
// of rows with a purchase label.
int64_t write_csv(const fs::path& path, int64_t rows, uint64_t seed, double missing, bool all_missing = false) {
  Generator gen(seed);
  std::ofstream f(path);
  f << "u,i,price,click,purchase\n";
  int64_t labelled = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t u = gen.randint(40), i = gen.randint(60);
    const double price = gen.uniform();
    const int click = gen.uniform() < (u % 3 == 0 ? 0.6 : 0.2) ? 1 : 0;
    const int buy = click && gen.uniform() < (i % 4 == 0 ? 0.7 : 0.2) ? 1 : 0;
    f << u << ',' << i << ',' << price << ',' << click << ',';
    const double m = gen.uniform();
    if (all_missing || m < missing / 2) {
      f << "";
    } else if (m < missing) {
      f << "-1";
    } else {
      f << buy;
      ++labelled;
    }
    f << '\n';
  }
  return labelled;
}

data::Schema click_purchase_schema() {
  data::Schema s;
  s.sparse = {{.name = "u", .embed_dim = 4}, {.name = "i", .embed_dim = 4}};
  s.dense = {{.name = "price"}};
  s.labels = {{.task = "click", .column = "click"},
              {.task = "purchase", .column = "purchase", .missing_ok = true, .missing_value = "-1"}};
  return s;
}

TEST(MissingLabels, ThirtyPercentMissingPurchaseLabelsTrainAndReportCounts) {
  const fs::path dir = temp_dir("csv");
  const int64_t train_labelled = write_csv(dir / "train.csv", 3000, 5, 0.3);
  const int64_t val_labelled = write_csv(dir / "val.csv", 800, 6, 0.3);
  ASSERT_GT(train_labelled, 1800);
  ASSERT_LT(train_labelled, 2400);
  data::DataOptions dopt;
  dopt.cache.enabled = false;
  auto d = data::load_data({.train = (dir / "train.csv").string(), .val = (dir / "val.csv").string()},
                           click_purchase_schema(), dopt);
  const auto& schema = d.preprocessor->schema();
  for (const std::string strategy : {"mgda", "gradnorm"}) {
    SCOPED_TRACE(strategy);
    auto model = build_model("mmoe", models::features_from_schema(schema), schema.task_names(), schema.task_types(),
                             {.expert_units = {16}, .num_experts = 2, .tower_units = {8}});
    const fs::path out = dir / ("run_" + strategy);
    MTLTrainer t(model, {.optimizer_params = {.lr = 3e-3},
                         .n_epochs = 2,
                         .task_weights_strategy = strategy,
                         .out_dir = out.string(),
                         .progress = false,
                         .preprocessor = d.preprocessor});
    data::DataLoader train(d.train, {.batch_size = 128, .seed = 2, .prefetch = 0});
    data::DataLoader val(d.val, {.batch_size = 512, .shuffle = false, .prefetch = 0});
    t.fit(train, &val);
    std::ifstream jl(out / "metrics.jsonl");
    std::string line;
    int epochs = 0;
    while (std::getline(jl, line)) {
      const auto j = nlohmann::json::parse(line);
      EXPECT_EQ(j["train_labelled_rows"]["purchase"].get<int64_t>(), train_labelled);
      EXPECT_EQ(j["train_labelled_rows"]["click"].get<int64_t>(), 3000);
      EXPECT_EQ(j["val"]["tasks"]["purchase"]["rows"].get<int64_t>(), val_labelled);
      EXPECT_EQ(j["val"]["tasks"]["click"]["rows"].get<int64_t>(), 800);
      for (const char* task : {"click", "purchase"}) {
        EXPECT_TRUE(j["train_loss"][task].is_number()) << task;  // finite: null would be NaN
        EXPECT_TRUE(j["val"]["tasks"][task]["auc"].is_number()) << task;
        EXPECT_TRUE(j["task_weights"][task].is_number()) << task;
      }
      ++epochs;
    }
    EXPECT_EQ(epochs, 2);
    // The purchase AUC is the AUC over the labelled rows: recomputed from the predictions and the
    // file's labels, skipping the rows whose purchase cell was empty or -1.
    const auto r = metrics::evaluate_multi_task(*model, *d.val, {.quiet = true});
    const auto preds = metrics::predict_rows(*model, *d.val);
    std::vector<double> y, p;
    std::ifstream csv(dir / "val.csv");
    std::getline(csv, line);
    for (size_t row = 0; std::getline(csv, line); ++row) {
      const std::string cell = line.substr(line.rfind(',') + 1);
      if (cell.empty() || cell == "-1") continue;
      y.push_back(std::stod(cell));
      p.push_back(preds[1][row]);
    }
    EXPECT_EQ(static_cast<int64_t>(y.size()), val_labelled);
    EXPECT_DOUBLE_EQ(r.at("purchase").auc, metrics::roc_auc(y, p));
  }
  fs::remove_all(dir);
}

TEST(MissingLabels, ATaskWithEveryLabelMissingIsRefused) {
  const fs::path dir = temp_dir("all");
  write_csv(dir / "train.csv", 400, 7, 0.0, /*all_missing=*/true);
  data::DataOptions dopt;
  dopt.cache.enabled = false;
  auto d = data::load_data({.train = (dir / "train.csv").string()}, click_purchase_schema(), dopt);
  const auto& schema = d.preprocessor->schema();
  auto model = build_model("mmoe", models::features_from_schema(schema), schema.task_names(), schema.task_types(),
                           {.expert_units = {8}, .num_experts = 2, .tower_units = {4}});
  const fs::path out = dir / "run";
  MTLTrainer t(model, {.n_epochs = 1, .out_dir = out.string(), .progress = false});
  data::DataLoader train(d.train, {.batch_size = 128, .prefetch = 0});
  try {
    t.fit(train);
    ADD_FAILURE() << "a task without labels trained";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'purchase'"), std::string::npos) << m;
    EXPECT_NE(m.find("no label on any of the 400 training rows"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(out)) << "nothing is written for a refused run";
  fs::remove_all(dir);
}

TEST(MissingLabels, AMissingLabelIsAnErrorUnlessItsTaskSkipsIt) {
  const fs::path dir = temp_dir("err");
  write_csv(dir / "train.csv", 50, 8, 0.3);
  data::Schema s = click_purchase_schema();
  s.labels[1].missing_ok = false;
  s.labels[1].missing_value.clear();
  data::DataOptions dopt;
  dopt.cache.enabled = false;
  try {
    data::load_data({.train = (dir / "train.csv").string()}, s, dopt);
    ADD_FAILURE() << "a missing label was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("train.csv:"), std::string::npos) << m;
    EXPECT_NE(m.find("purchase"), std::string::npos) << m;
  }
  fs::remove_all(dir);
}

TEST(MissingLabels, SchemaEntryRoundTripsAndIsChecked) {
  const auto s = data::schema_from_json(nlohmann::json::parse(
      R"({"sparse": ["u"], "labels": ["click", {"column": "purchase", "missing": "skip", "missing_value": "-1"}]})"));
  EXPECT_FALSE(s.labels[0].missing_ok);
  EXPECT_TRUE(s.labels[1].missing_ok);
  EXPECT_EQ(s.labels[1].missing_value, "-1");
  const auto back = data::schema_from_json(data::schema_to_json(s));
  EXPECT_TRUE(back.labels[1].missing_ok);
  EXPECT_EQ(back.labels[1].missing_value, "-1");
  EXPECT_THROW(data::schema_from_json(nlohmann::json::parse(
                   R"({"sparse": ["u"], "labels": [{"column": "purchase", "missing": "drop"}]})")),
               Error);
  // A sentinel without the opt-in would silently never apply.
  EXPECT_THROW(data::schema_from_json(nlohmann::json::parse(
                   R"({"sparse": ["u"], "labels": [{"column": "purchase", "missing_value": "-1"}]})")),
               Error);
}

}  // namespace
}  // namespace rechub::trainer
