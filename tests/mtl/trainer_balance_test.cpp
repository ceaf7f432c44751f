// Task-balancing strategies on a tiny problem, against PyTorch reference steps
// (tests/reference/trainer_balance_ref.py) and hand-computed values.
//
// The problem: shared W [3], per task a_i [1], L_i = 0.5 (c_i·W + a_i − y_i)²; each step the
// strategy sets the gradients and plain SGD moves W and a_i.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/trainer/balance.h"
#include "support/test_util.h"

namespace rechub::trainer {
namespace {

namespace fs = std::filesystem;

bool have_torch() {
  const std::string cmd = std::string(RECHUB_PYTHON) + " -c 'import torch' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

struct Problem {
  std::vector<std::vector<double>> c = {{1.0, -2.0, 0.5}, {-1.5, 1.0, 2.0}};
  std::vector<double> y = {0.2, -1.2};
  std::vector<double> W0 = {0.3, -0.1, 0.2};
  std::vector<double> a0 = {0.1, -0.2};
  Tensor W;
  std::vector<Tensor> a;
  Problem() {
    W = from_vector(W0, {3}, {.dtype = DType::f64, .requires_grad = true});
    for (double v : a0)
      a.push_back(from_vector(std::vector<double>{v}, {1}, {.dtype = DType::f64, .requires_grad = true}));
  }
  int64_t tasks() const { return static_cast<int64_t>(c.size()); }
  std::vector<Tensor> losses() const {
    std::vector<Tensor> L;
    for (size_t i = 0; i < c.size(); ++i) {
      Tensor ci = from_vector(c[i], {3});
      Tensor e = ops::sum(ops::mul(ci, W)) + a[i] - y[i];
      L.push_back(ops::mul(e, e) * 0.5);
    }
    return L;
  }
  BalanceParams params() const {
    BalanceParams p;
    p.params.push_back(W);
    p.shared.push_back(true);
    for (const Tensor& t : a) p.params.push_back(t), p.shared.push_back(false);
    p.last_shared = {W};
    return p;
  }
  void sgd(double lr) {
    NoGradGuard ng;
    for (Tensor t : params().params) {
      if (!t.grad().defined()) continue;  // a task without labels in the batch sends nothing
      t.copy_(ops::sub(t, ops::mul(t.grad().to_dense(), lr)));
      t.zero_grad();
    }
  }
};

TEST(TaskBalancing, StrategiesMatchPyTorchReferenceSteps) {
  if (!have_torch()) RECHUB_REFERENCE_MISSING(RECHUB_PYTHON << " lacks torch", "python3-torch");
  Problem base;
  const int steps = 4;
  const double sgd_lr = 0.05, alpha = 1.5, glr = 0.025, relax = 0.7, beta = 0.9;
  const std::vector<double> fixed = {1.0, 0.5};
  nlohmann::json cfg = {{"c", base.c},    {"y", base.y},      {"W", base.W0},          {"a", base.a0},
                        {"steps", steps}, {"sgd_lr", sgd_lr}, {"alpha", alpha},        {"gradnorm_lr", glr},
                        {"relax", relax}, {"beta", beta},     {"fixed_weights", fixed}};
  const fs::path dir = fs::temp_directory_path() / ("rechub_balance_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "in.json") << cfg.dump();
  const std::string cmd = std::string(RECHUB_PYTHON) + " " + RECHUB_SOURCE_DIR +
                          "/tests/reference/trainer_balance_ref.py " + (dir / "in.json").string() + " " +
                          (dir / "out.json").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto ref = nlohmann::json::parse(std::ifstream(dir / "out.json"));
  fs::remove_all(dir);

  for (std::string strategy : {"gradnorm", "metabalance", "pcgrad", "fixed"}) {
    SCOPED_TRACE(strategy);
    Problem pr;
    auto bal = make_balancer(pr.tasks(), {.strategy = strategy,
                                          .task_weights = strategy == "fixed" ? fixed : std::vector<double>{},
                                          .gradnorm_alpha = alpha,
                                          .gradnorm_lr = glr,
                                          .relax_factor = relax,
                                          .beta = beta});
    for (int s = 0; s < steps; ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      bal->backward(pr.losses(), pr.params());
      const auto& r = ref[strategy][s];
      const auto gW = pr.W.grad().to_vector<double>();
      for (size_t k = 0; k < gW.size(); ++k) EXPECT_NEAR(gW[k], r["gW"][k].get<double>(), 1e-10);
      for (size_t i = 0; i < pr.a.size(); ++i) EXPECT_NEAR(pr.a[i].grad().item(), r["ga"][i].get<double>(), 1e-10);
      const auto w = bal->weights();
      for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], r["weights"][i].get<double>(), 1e-10);
      pr.sgd(sgd_lr);
    }
  }
}

// Runs tests/reference/trainer_balance_ref.py on `cfg` and returns its output.
nlohmann::json run_reference(const nlohmann::json& cfg) {
  const fs::path dir = fs::temp_directory_path() / ("rechub_balance3_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "in.json") << cfg.dump();
  const std::string cmd = std::string(RECHUB_PYTHON) + " " + RECHUB_SOURCE_DIR +
                          "/tests/reference/trainer_balance_ref.py " + (dir / "in.json").string() + " " +
                          (dir / "out.json").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto ref = nlohmann::json::parse(std::ifstream(dir / "out.json"));
  fs::remove_all(dir);
  return ref;
}

// Three tasks: task 1's gradient on W is larger than the main task's, task 2's smaller, so
// MetaBalance's reduce and enlarge strategies each adapt a different one.
Problem three_tasks() {
  Problem pr;
  pr.c.push_back({0.05, 0.05, -0.3});
  pr.y.push_back(0.1);
  pr.a0.push_back(0.0);
  pr.a.push_back(from_vector(std::vector<double>{0.0}, {1}, {.dtype = DType::f64, .requires_grad = true}));
  return pr;
}

TEST(TaskBalancing, MgdaCagradAndMetaBalanceStrategiesMatchReferenceSteps) {
  if (!have_torch()) RECHUB_REFERENCE_MISSING(RECHUB_PYTHON << " lacks torch", "python3-torch");
  const int steps = 5;
  const double sgd_lr = 0.05, relax = 0.7, beta = 0.9, cagrad_c = 0.4;
  for (int tasks : {2, 3}) {
    SCOPED_TRACE(std::to_string(tasks) + " tasks");
    Problem base = tasks == 3 ? three_tasks() : Problem();
    std::vector<std::string> strategies = {"mgda", "cagrad"};
    if (tasks == 3)
      for (const char* s : {"metabalance:all", "metabalance:reduce", "metabalance:enlarge"}) strategies.push_back(s);
    nlohmann::json cfg = {{"c", base.c},          {"y", base.y},      {"W", base.W0},        {"a", base.a0},
                          {"steps", steps},       {"sgd_lr", sgd_lr}, {"alpha", 1.5},        {"gradnorm_lr", 0.025},
                          {"relax", relax},       {"beta", beta},     {"fixed_weights", {}}, {"strategies", strategies},
                          {"cagrad_c", cagrad_c}, {"main", 0}};
    const auto ref = run_reference(cfg);
    if (tasks == 3) {
      // The strategies differ on this problem (each branch of the paper's rule is exercised).
      EXPECT_NE(ref["metabalance:reduce"][0]["gW"], ref["metabalance:all"][0]["gW"]);
      EXPECT_NE(ref["metabalance:enlarge"][0]["gW"], ref["metabalance:all"][0]["gW"]);
      EXPECT_NE(ref["metabalance:enlarge"][0]["gW"], ref["metabalance:reduce"][0]["gW"]);
    }
    for (const std::string& strategy : strategies) {
      SCOPED_TRACE(strategy);
      Problem pr = tasks == 3 ? three_tasks() : Problem();
      const auto colon = strategy.find(':');
      auto bal = make_balancer(pr.tasks(),
                               {.strategy = strategy.substr(0, colon),
                                .relax_factor = relax,
                                .beta = beta,
                                .metabalance_strategy = colon == std::string::npos ? "all" : strategy.substr(colon + 1),
                                .cagrad_c = cagrad_c});
      // CAGrad's inner problem is solved by different solvers on the two sides (projected
      // gradient here, SLSQP in the reference): agreement to 1e-7, not to rounding.
      const double tol = strategy == "cagrad" ? 1e-7 : 1e-10;
      for (int s = 0; s < steps; ++s) {
        SCOPED_TRACE("step " + std::to_string(s));
        bal->backward(pr.losses(), pr.params());
        const auto& r = ref[strategy][s];
        const auto gW = pr.W.grad().to_vector<double>();
        for (size_t k = 0; k < gW.size(); ++k) EXPECT_NEAR(gW[k], r["gW"][k].get<double>(), tol);
        for (size_t i = 0; i < pr.a.size(); ++i) EXPECT_NEAR(pr.a[i].grad().item(), r["ga"][i].get<double>(), 1e-10);
        if (strategy == "mgda" || strategy == "cagrad") {
          const auto w = bal->weights();
          for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], r["weights"][i].get<double>(), tol);
        }
        if (strategy == "mgda") {
          // The min norm found by an independent solver (SLSQP) is the one reached.
          double sq = 0;
          for (double v : gW) sq += v * v;
          const double want = r["mgda_slsqp_sq_norm"].get<double>();
          EXPECT_NEAR(sq, want, 1e-8 * std::max(1.0, want));
        }
        pr.sgd(sgd_lr);
      }
    }
  }
}

// Gram matrices of random vectors (n tasks, d dimensions).
std::vector<double> random_gram(size_t n, size_t d, Generator& gen, double scale = 1.0) {
  std::vector<std::vector<double>> v(n, std::vector<double>(d));
  for (auto& x : v)
    for (double& e : x) e = scale * (gen.uniform() * 2 - 1);
  std::vector<double> M(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      double s = 0;
      for (size_t k = 0; k < d; ++k) s += v[i][k] * v[j][k];
      M[i * n + j] = s;
    }
  return M;
}

TEST(MGDA, MinNormWeightsMeetTheOptimalityConditions) {
  // α minimises αᵀMα on the simplex iff (Mα)_r >= αᵀMα for every r (equality where α_r > 0).
  Generator gen(11);
  for (size_t n : {2, 3, 4, 6}) {
    for (size_t d : {2, 5, 40}) {
      for (int rep = 0; rep < 5; ++rep) {
        const auto M = random_gram(n, d, gen, rep % 2 ? 1e-3 : 10.0);
        const auto a = min_norm_weights(M, n);
        double sum = 0, aMa = 0, diag = 0;
        std::vector<double> Ma(n, 0.0);
        for (size_t r = 0; r < n; ++r) {
          EXPECT_GE(a[r], 0);
          sum += a[r];
          diag = std::max(diag, M[r * n + r]);
          for (size_t c = 0; c < n; ++c) Ma[r] += M[r * n + c] * a[c];
        }
        for (size_t r = 0; r < n; ++r) aMa += a[r] * Ma[r];
        EXPECT_NEAR(sum, 1.0, 1e-12);
        // Frank-Wolfe stops at a step below 1e-10, so the conditions hold to ~1e-5 of the scale
        // (exactly for two tasks).
        const double tol = (n == 2 ? 1e-12 : 1e-4) * diag;
        for (size_t r = 0; r < n; ++r) {
          EXPECT_GE(Ma[r], aMa - tol) << "n " << n << " d " << d << " r " << r;
          if (a[r] > 1e-3) {
            EXPECT_NEAR(Ma[r], aMa, tol) << "n " << n << " d " << d << " r " << r;
          }
        }
      }
    }
  }
}

TEST(CAGrad, InnerWeightsMeetTheOptimalityConditions) {
  // w minimises the convex F(w) = wᵀM·b + c'·sqrt(wᵀMw + 1e-8) on the simplex iff ∇F_r is the
  // same for every r with w_r > 0 and no smaller elsewhere.
  Generator gen(12);
  for (size_t n : {2, 3, 5}) {
    for (double cp : {0.01, 0.5, 3.0}) {
      for (int rep = 0; rep < 4; ++rep) {
        const auto M = random_gram(n, 6, gen);
        const auto w = cagrad_weights(M, n, cp);
        std::vector<double> Mw(n, 0.0), Mb(n, 0.0);
        double wMw = 0, sum = 0;
        for (size_t r = 0; r < n; ++r)
          for (size_t c = 0; c < n; ++c) Mw[r] += M[r * n + c] * w[c], Mb[r] += M[r * n + c] / static_cast<double>(n);
        for (size_t r = 0; r < n; ++r) wMw += w[r] * Mw[r], sum += w[r];
        EXPECT_NEAR(sum, 1.0, 1e-12);
        std::vector<double> grad(n);
        for (size_t r = 0; r < n; ++r) grad[r] = Mb[r] + cp * Mw[r] / std::sqrt(wMw + 1e-8);
        // The line search compares objective values, so w is found to ~1e-8 and ∇F to ~3e-7
        // (measured) where c' = 3 makes the objective steep.
        const double lo = *std::min_element(grad.begin(), grad.end());
        for (size_t r = 0; r < n; ++r) {
          EXPECT_GE(w[r], 0);
          if (w[r] > 1e-6) {
            EXPECT_NEAR(grad[r], lo, 1e-6) << "n " << n << " c' " << cp << " r " << r;
          }
        }
      }
    }
  }
}

TEST(CAGrad, ZeroCIsTheSumOfTheTaskGradients) {
  Problem pr;
  auto bal = make_balancer(2, {.strategy = "cagrad", .cagrad_c = 0.0});
  bal->backward(pr.losses(), pr.params());
  const auto want = grad({pr.losses()[0] + pr.losses()[1]}, {pr.W})[0].to_vector<double>();
  const auto got = pr.W.grad().to_vector<double>();
  // Not exact: the 1e-8 added to c' (LibMTL's and the authors' formula) is still there.
  for (size_t k = 0; k < 3; ++k) EXPECT_NEAR(got[k], want[k], 1e-7);
}

TEST(MetaBalance, MainTaskWithoutGradientLeavesAuxiliaryGradientsUnscaledAndWarnsOnce) {
  Problem pr;
  pr.c[0] = {0.0, 0.0, 0.0};  // the main task sends nothing to W
  BalanceParams bp = pr.params();
  bp.names = {"shared.W", "task0.a", "task1.a"};
  auto bal = make_balancer(2, {.strategy = "metabalance", .relax_factor = 0.7});
  for (int s = 0; s < 3; ++s) {
    bal->backward(pr.losses(), bp);
    const auto want = grad({pr.losses()[1]}, {pr.W})[0].to_vector<double>();
    const auto got = pr.W.grad().to_vector<double>();
    for (size_t k = 0; k < 3; ++k) EXPECT_DOUBLE_EQ(got[k], want[k]) << "step " << s;
    const auto warnings = bal->take_warnings();
    if (s == 0) {
      ASSERT_EQ(warnings.size(), 1u);
      EXPECT_NE(warnings[0].find("'shared.W'"), std::string::npos) << warnings[0];
    } else {
      EXPECT_TRUE(warnings.empty()) << "step " << s;
    }
    pr.sgd(0.05);
  }
}

TEST(TaskBalancing, ATaskWithoutLabelsInTheBatchGivesNoNaNAndKeepsItsWeight) {
  // Task 1 has no labels in the batch: its masked loss is a constant 0 (still in the graph).
  for (const std::string& strategy : balance_strategies()) {
    SCOPED_TRACE(strategy);
    Problem pr;
    auto bal = make_balancer(2, {.strategy = strategy, .task_types = {data::TaskType::binary, data::TaskType::binary}});
    // One ordinary step first, so that the strategies' state has moved.
    bal->backward(pr.losses(), pr.params());
    pr.sgd(0.05);
    const auto w_before = bal->weights();
    for (int s = 0; s < 3; ++s) {
      auto L = pr.losses();
      L[1] = ops::mul(L[1], 0.0);
      bal->set_labelled_tasks({true, false});
      bal->backward(L, pr.params());
      for (double g : pr.W.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(g));
      const auto w = bal->weights();
      for (double x : w) EXPECT_TRUE(std::isfinite(x));
      if (strategy == "gradnorm" || strategy == "uwl" || strategy == "fixed" || strategy == "dwa") {
        EXPECT_EQ(w[1], w_before[1]) << "the unlabelled task's weight drifted";
      }
      if (strategy == "mgda") {
        // One labelled task: the min-norm combination is that task's own gradient.
        const auto want = grad({pr.losses()[0]}, {pr.W})[0].to_vector<double>();
        const auto got = pr.W.grad().to_vector<double>();
        for (size_t k = 0; k < 3; ++k) EXPECT_NEAR(got[k], want[k], 1e-12);
        EXPECT_EQ(w[1], 0.0);
      }
      pr.sgd(0.05);
    }
    bal->set_labelled_tasks({});
    bal->backward(pr.losses(), pr.params());
    for (double g : pr.W.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(g));
  }
}

TEST(GradNorm, WeightsSumToTaskCountAfterEveryStep) {
  Problem pr;
  pr.c.push_back({0.2, 0.2, -3.0});
  pr.y.push_back(2.0);
  pr.a.push_back(from_vector(std::vector<double>{0.0}, {1}, {.dtype = DType::f64, .requires_grad = true}));
  auto bal = make_balancer(3, {.strategy = "gradnorm", .gradnorm_alpha = 0.5, .gradnorm_lr = 0.2});
  for (int s = 0; s < 30; ++s) {
    bal->backward(pr.losses(), pr.params());
    const auto w = bal->weights();
    double sum = 0;
    for (double x : w) {
      EXPECT_GT(x, 0);
      sum += x;
    }
    EXPECT_NEAR(sum, 3.0, 1e-12) << "step " << s;
    pr.sgd(0.05);
  }
  // The weights moved away from 1 (the balancing did something).
  const auto w = bal->weights();
  EXPECT_GT(std::abs(w[0] - 1.0) + std::abs(w[1] - 1.0) + std::abs(w[2] - 1.0), 0.05);
}

TEST(GradNorm, StateRoundTripsExactly) {
  Problem p1, p2;
  auto b1 = make_balancer(2, {.strategy = "gradnorm"});
  for (int s = 0; s < 3; ++s) b1->backward(p1.losses(), p1.params()), p1.sgd(0.05);
  auto b2 = make_balancer(2, {.strategy = "gradnorm"});
  b2->load_state(nlohmann::json::parse(b1->state().dump()));
  EXPECT_EQ(b1->weights(), b2->weights());
  EXPECT_EQ(b1->state().dump(), b2->state().dump());
}

TEST(MetaBalance, MainTaskGradientIsUnchanged) {
  // Task 1's gradient on W is zero: the shared gradient must be exactly the main task's.
  Problem pr;
  pr.c[1] = {0.0, 0.0, 0.0};
  auto bal = make_balancer(2, {.strategy = "metabalance", .relax_factor = 1.0});
  bal->backward(pr.losses(), pr.params());
  const auto main = grad({pr.losses()[0]}, {pr.W});
  const auto got = pr.W.grad().to_vector<double>(), want = main[0].to_vector<double>();
  for (size_t k = 0; k < got.size(); ++k) EXPECT_DOUBLE_EQ(got[k], want[k]);

  // With main_task = 1, task 0 is rescaled to task 1's norm (relax 1): ‖g‖ equals m_1/m_0·‖g_0‖
  // plus task 1's own. Check the hand-computed first step: m_i = 0.1·‖g_i‖.
  Problem q;
  auto b2 = make_balancer(2, {.strategy = "metabalance", .relax_factor = 1.0, .main_task = 1});
  const auto L = q.losses();
  const auto g0 = grad({L[0]}, {q.W}, {}, {.retain_graph = true})[0].to_vector<double>();
  const auto g1 = grad({L[1]}, {q.W}, {}, {.retain_graph = true})[0].to_vector<double>();
  double n0 = 0, n1 = 0;
  for (size_t k = 0; k < 3; ++k) n0 += g0[k] * g0[k], n1 += g1[k] * g1[k];
  n0 = 0.1 * std::sqrt(n0), n1 = 0.1 * std::sqrt(n1);
  b2->backward(L, q.params());
  const auto g = q.W.grad().to_vector<double>();
  for (size_t k = 0; k < 3; ++k) EXPECT_NEAR(g[k], g1[k] + g0[k] * n1 / (n0 + 1e-5), 1e-12);
}

TEST(MetaBalance, RowSparseEmbeddingGradientsMatchDense) {
  // A shared embedding table (row-sparse gradient) and two task losses on its rows.
  Generator gen(3);
  auto run = [&](bool sparse_path) {
    Tensor table = uniform({6, 2}, -1, 1, {.dtype = DType::f64}, &gen);
    Generator g2(5);
    table = uniform({6, 2}, -1, 1, {.dtype = DType::f64, .requires_grad = true}, &g2);
    Tensor ids = from_vector(std::vector<int64_t>{0, 3, 3, 5}, {2, 2});
    Tensor e = sparse_path ? ops::embedding_lookup(table, ids)
                           : ops::reshape(ops::index_select(table, ops::reshape(ids, {-1})), {2, 4});
    Tensor w0 = from_vector(std::vector<double>{1, -2, 0.5, 1, 0.3, 0.1, -1, 2}, {2, 4});
    Tensor w1 = from_vector(std::vector<double>{-1, 1, 2, 0.5, -0.3, 1, 1, -2}, {2, 4});
    Tensor l0 = ops::sum(ops::mul(ops::mul(e, w0), ops::mul(e, w0)));
    Tensor l1 = ops::sum(ops::mul(e, w1));
    BalanceParams p{.params = {table}, .shared = {true}, .last_shared = {table}};
    auto bal = make_balancer(2, {.strategy = "metabalance"});
    bal->backward({l0, l1}, p);
    EXPECT_EQ(table.grad().is_sparse(), sparse_path);
    return table.grad().to_dense().to_vector<double>();
  };
  const auto s = run(true), d = run(false);
  ASSERT_EQ(s.size(), d.size());
  for (size_t k = 0; k < s.size(); ++k) EXPECT_NEAR(s[k], d[k], 1e-12);
}

TEST(PCGrad, ProjectedGradientsDoNotConflictAndSparseMatchesDense) {
  // Three tasks; after PCGrad with two tasks the projected g_i is orthogonal to a conflicting g_j.
  Problem pr;
  auto bal = make_balancer(2, {.strategy = "pcgrad", .seed = 9});
  const auto L = pr.losses();
  const auto g0 = grad({L[0]}, {pr.W}, {}, {.retain_graph = true})[0].to_vector<double>();
  const auto g1 = grad({L[1]}, {pr.W}, {}, {.retain_graph = true})[0].to_vector<double>();
  double d = 0, n0 = 0, n1 = 0;
  for (size_t k = 0; k < 3; ++k) d += g0[k] * g1[k], n0 += g0[k] * g0[k], n1 += g1[k] * g1[k];
  ASSERT_LT(d, 0) << "the test problem must have conflicting gradients";
  bal->backward(L, pr.params());
  const auto g = pr.W.grad().to_vector<double>();
  for (size_t k = 0; k < 3; ++k) EXPECT_NEAR(g[k], (g0[k] - d / n1 * g1[k]) + (g1[k] - d / n0 * g0[k]), 1e-12);
  // grad helpers on row-sparse vs dense
  Tensor idx = from_vector(std::vector<int64_t>{3, 1, 3}, {3});
  Tensor val = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor sp = Tensor::sparse_rows(idx, val, {5, 2});
  Tensor de = sp.to_dense();
  Tensor other = from_vector(std::vector<double>{1, -1, 2, 0.5, 3, 1, -2, 4, 0, 7}, {5, 2});
  EXPECT_NEAR(grad_dot(sp, other), grad_dot(de, other), 1e-12);
  EXPECT_NEAR(grad_dot(sp, sp), grad_dot(de, de), 1e-12);
  EXPECT_NEAR(grad_sq_norm(sp), grad_sq_norm(de), 1e-12);
}

TEST(UncertaintyWeighting, HandComputedAdamStep) {
  // Binary tasks: L = exp(−s) L_i + s/2. First Adam step from s = 0 moves s by −lr·sign(dL/ds).
  Problem pr;
  auto bal = make_balancer(
      2, {.strategy = "uwl", .task_types = {data::TaskType::binary, data::TaskType::regression}, .uwl_lr = 0.1});
  const auto L = pr.losses();
  const double l0 = L[0].item(), l1 = L[1].item();
  bal->backward(L, pr.params());
  // the model gradient used weights exp(0) = 1
  const auto ref = grad({pr.losses()[0] + pr.losses()[1]}, {pr.W})[0].to_vector<double>();
  const auto g = pr.W.grad().to_vector<double>();
  for (size_t k = 0; k < 3; ++k) EXPECT_NEAR(g[k], ref[k], 1e-12);
  const double ds0 = -l0 + 0.5, ds1 = -l1 + 1.0;
  const auto w = bal->weights();
  // Adam's first step: s -= lr · g / (|g| + eps·sqrt(1−β2)) ≈ lr·sign(g)
  auto step = [](double gsd) { return -0.1 * gsd / (std::abs(gsd) + 1e-8); };
  EXPECT_NEAR(w[0], std::exp(-step(ds0)), 1e-9);
  EXPECT_NEAR(w[1], std::exp(-step(ds1)), 1e-9);
}

TEST(DynamicWeightAverage, WeightsFromTheLastTwoEpochs) {
  auto bal = make_balancer(2, {.strategy = "dwa", .dwa_temperature = 2.0});
  EXPECT_EQ(bal->weights(), (std::vector<double>{1.0, 1.0}));
  bal->end_epoch({1.0, 2.0});
  EXPECT_EQ(bal->weights(), (std::vector<double>{1.0, 1.0}));
  bal->end_epoch({0.5, 1.8});
  const double e0 = std::exp(0.5 / 2), e1 = std::exp(0.9 / 2);
  const auto w = bal->weights();
  EXPECT_NEAR(w[0], 2 * e0 / (e0 + e1), 1e-12);
  EXPECT_NEAR(w[1], 2 * e1 / (e0 + e1), 1e-12);
}

TEST(TaskBalancing, BadOptionsAreClearErrors) {
  EXPECT_THROW(make_balancer(2, {.strategy = "magic"}), Error);
  EXPECT_THROW(make_balancer(2, {.task_weights = {1.0}}), Error);
  EXPECT_THROW(make_balancer(2, {.strategy = "metabalance", .relax_factor = 2}), Error);
  EXPECT_THROW(make_balancer(2, {.strategy = "metabalance", .main_task = 5}), Error);
  EXPECT_THROW(make_balancer(2, {.strategy = "metabalance", .metabalance_strategy = "shrink"}), Error);
  EXPECT_THROW(make_balancer(2, {.strategy = "cagrad", .cagrad_c = -1}), Error);
  EXPECT_THROW(make_balancer(2, {.strategy = "mgda", .mgda_normalization = "l1"}), Error);
  try {
    make_balancer(2, {.strategy = "magic"});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gradnorm"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rechub::trainer
