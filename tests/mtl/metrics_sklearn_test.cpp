// AUC, LogLoss, GAUC, MSE and MAE against scikit-learn (Debian's python3-sklearn) on random and
// tied predictions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/metrics/metrics.h"
#include "support/test_util.h"

namespace rechub {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::vector<double> labels, scores;
  std::vector<int64_t> groups;
};

bool python_has(const std::string& modules) {
  const std::string cmd = std::string(RECHUB_PYTHON) + " -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

Case make_case(Generator& g, int64_t n, double pos_rate, int tie_levels, bool extremes, int64_t n_groups) {
  Case c;
  for (int64_t i = 0; i < n; ++i) {
    const bool pos = g.uniform() < pos_rate;
    double s = std::clamp(0.5 + (pos ? 0.15 : -0.15) + 0.25 * g.normal(), 0.0, 1.0);
    if (tie_levels > 0) s = std::round(s * tie_levels) / tie_levels;
    if (extremes && i % 7 == 0) s = (i % 14 == 0) ? 0.0 : 1.0;
    c.labels.push_back(pos ? 1.0 : 0.0);
    c.scores.push_back(s);
    c.groups.push_back(static_cast<int64_t>(g.randint(static_cast<uint64_t>(n_groups))));
  }
  // both classes present
  c.labels[0] = 1.0;
  c.labels[1] = 0.0;
  return c;
}

TEST(Metrics, MatchScikitLearnOnRandomAndTiedPredictions) {
  if (!python_has("sklearn, numpy"))
    RECHUB_REFERENCE_MISSING(RECHUB_PYTHON << " lacks scikit-learn/numpy", "python3-sklearn python3-numpy");
  Generator g(11);
  std::vector<Case> cases = {
      make_case(g, 2, 0.5, 0, false, 1),         make_case(g, 1000, 0.3, 0, false, 20),
      make_case(g, 1000, 0.05, 10, false, 7),    make_case(g, 5000, 0.5, 3, true, 50),
      make_case(g, 20000, 0.04, 100, true, 300), make_case(g, 777, 0.5, 1, false, 3),
  };
  // every score tied
  Case all_tied = make_case(g, 100, 0.4, 0, false, 4);
  for (double& s : all_tied.scores) s = 0.25;
  cases.push_back(all_tied);

  const fs::path dir = fs::temp_directory_path() / ("rechub_metrics_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nlohmann::json j;
  for (const Case& c : cases) j["cases"].push_back({{"labels", c.labels}, {"scores", c.scores}, {"groups", c.groups}});
  std::ofstream(dir / "in.json") << j.dump();
  const std::string cmd = std::string(RECHUB_PYTHON) + " " + RECHUB_SOURCE_DIR +
                          "/tests/reference/metrics_sklearn.py " + (dir / "in.json").string() + " " +
                          (dir / "out.json").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto ref = nlohmann::json::parse(std::ifstream(dir / "out.json"))["results"];
  ASSERT_EQ(ref.size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    std::vector<double> probs = c.scores;
    SCOPED_TRACE("case " + std::to_string(k) + " rows " + std::to_string(c.labels.size()));
    EXPECT_NEAR(metrics::roc_auc(c.labels, c.scores), ref[k]["auc"].get<double>(), 1e-9);
    EXPECT_NEAR(metrics::log_loss(c.labels, probs), ref[k]["logloss"].get<double>(),
                1e-9 * (1 + std::abs(ref[k]["logloss"].get<double>())));
    const double gr = ref[k]["gauc"].is_number() ? ref[k]["gauc"].get<double>() : NAN;
    const double gm = metrics::gauc(c.labels, c.scores, c.groups);
    if (std::isnan(gr))
      EXPECT_TRUE(std::isnan(gm));
    else
      EXPECT_NEAR(gm, gr, 1e-9);
    EXPECT_NEAR(metrics::mean_squared_error(c.labels, c.scores), ref[k]["mse"].get<double>(), 1e-12);
    EXPECT_NEAR(metrics::mean_absolute_error(c.labels, c.scores), ref[k]["mae"].get<double>(), 1e-12);
  }
  fs::remove_all(dir);
}

TEST(Metrics, AucOfSingleClassIsNaN) {
  EXPECT_TRUE(std::isnan(metrics::roc_auc({1, 1, 1}, {0.1, 0.5, 0.9})));
  EXPECT_TRUE(std::isnan(metrics::roc_auc({0, 0}, {0.1, 0.5})));
  // GAUC skips single-class groups; no group with both classes gives NaN.
  EXPECT_TRUE(std::isnan(metrics::gauc({1, 0}, {0.1, 0.5}, {1, 2})));
  const double g = metrics::gauc({1, 0, 1, 1}, {0.9, 0.5, 0.1, 0.3}, {1, 1, 2, 2});
  EXPECT_DOUBLE_EQ(g, 1.0);
}

TEST(Metrics, HandComputedTies) {
  // positives at 0.5, 0.7; negatives at 0.5, 0.2: wins = 0.5 (tie) + 1 + 1 + 1 = 3.5 of 4.
  const double auc = metrics::roc_auc({1, 1, 0, 0}, {0.5, 0.7, 0.5, 0.2});
  EXPECT_DOUBLE_EQ(auc, 3.5 / 4);
  // log loss with clipping: p = 1 for a negative gives -log(eps).
  EXPECT_NEAR(metrics::log_loss({0}, {1.0}), -std::log(DBL_EPSILON), 1e-6);
}

TEST(Metrics, RejectsMismatchedAndEmptyInputs) {
  EXPECT_THROW(metrics::roc_auc({1, 0}, {0.5}), Error);
  EXPECT_THROW(metrics::log_loss({}, {}), Error);
  EXPECT_THROW(metrics::gauc({1, 0}, {0.1, 0.2}, {1}), Error);
  EXPECT_THROW(metrics::roc_auc({1, 0}, {NAN, 0.2}), Error);
  try {
    metrics::log_loss({1, 0}, {0.5});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 labels but 1 predictions"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rechub
