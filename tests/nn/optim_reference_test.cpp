// Every optimizer against its update rule written out in f64 (tests/support/optim_reference.h):
// dense and row-sparse gradients, with and without weight decay, default and custom betas and
// eps, float32 and float64 parameters, row widths that take the vectorised row paths (16, 32)
// and the blocked one (5, 24). No PyTorch: this is what catches a flipped weight-decay sign, a
// missing square root in a bias correction or eps on the wrong side of it. ctest also runs these
// with RECHUB_CPU=generic so that each dispatch path the machine has is checked, never against
// itself. Then row-sparse updates against the dense optimizer on the touched rows.
#include "support/optim_reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <sstream>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/optim.h"

namespace rechub::nn {
namespace {

using rechub::testing::OptimKind;
using rechub::testing::OptimRefConfig;
using rechub::testing::OptimReference;

// Values rounded to the dtype, so that the optimizer and the reference start from the same numbers.
std::vector<double> rounded(std::vector<double> v, DType dt) {
  if (dt == DType::f32)
    for (double& x : v) x = static_cast<double>(static_cast<float>(x));
  return v;
}
Tensor tensor_of(const std::vector<double>& v, const Shape& s, DType dt, bool requires_grad = false) {
  if (dt == DType::f64) return from_vector(v, s, {.dtype = DType::f64, .requires_grad = requires_grad});
  return from_vector(std::vector<float>(v.begin(), v.end()), s, {.requires_grad = requires_grad});
}
std::vector<double> normal(Generator& g, size_t n, double scale) {
  std::vector<double> v(n);
  for (double& x : v) x = scale * g.normal();
  return v;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimRefConfig& c, const Tensor& p) {
  std::vector<ParamGroup> groups = {{{p}, c.lr, c.weight_decay}};
  switch (c.kind) {
    case OptimKind::adam:
      return std::make_unique<Adam>(groups, AdamOptions{.beta1 = c.beta1, .beta2 = c.beta2, .eps = c.eps});
    case OptimKind::adamw:
      return std::make_unique<AdamW>(groups, AdamOptions{.beta1 = c.beta1, .beta2 = c.beta2, .eps = c.eps});
    case OptimKind::adagrad:
      return std::make_unique<Adagrad>(groups, AdagradOptions{.lr_decay = c.lr_decay,
                                                              .initial_accumulator_value = c.initial_accumulator_value,
                                                              .eps = c.ag_eps});
    case OptimKind::sgd:
      return std::make_unique<SGD>(
          groups, SGDOptions{.momentum = c.momentum, .dampening = c.dampening, .nesterov = c.nesterov});
  }
  return nullptr;
}

struct Case {
  std::string name;
  OptimRefConfig cfg;
  bool sparse = false;
  int64_t width = 16;
  double grad_scale = 1.0;
};

// Runs 6 steps of the optimizer and of the reference on a [40, width] parameter and compares the
// parameter after every step: within a few float32 roundings (or 1e-12 in float64) of the
// reference, relative to max(1, |p|). Sparse steps touch varying rows, one of them twice.
void run_case(const Case& c, DType dt) {
  SCOPED_TRACE(c.name + (dt == DType::f32 ? " f32" : " f64"));
  const int64_t R = 40, D = c.width;
  Generator g(17);
  const std::vector<double> p0 = rounded(normal(g, static_cast<size_t>(R * D), 1.0), dt);
  Tensor p = tensor_of(p0, {R, D}, dt, true);
  auto opt = make_optimizer(c.cfg, p);
  OptimReference ref(c.cfg, p0, D);
  const std::vector<std::vector<int64_t>> row_sets = {
      {1, 3, 4, 20, 39}, {3, 5, 20, 3}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 39}, {20}, {39, 1, 7}, {2, 3, 4, 20}};
  const double tol = dt == DType::f32 ? 4e-6 : 1e-12;
  for (size_t s = 0; s < row_sets.size(); ++s) {
    if (c.sparse) {
      const auto& rows = row_sets[s];
      const int64_t n = static_cast<int64_t>(rows.size());
      const auto vals = rounded(normal(g, static_cast<size_t>(n * D), c.grad_scale), dt);
      p.set_grad(Tensor::sparse_rows(from_vector(rows, {n}), tensor_of(vals, {n, D}, dt), p.shape()));
      ref.sparse_step(rows, vals);
    } else {
      const auto vals = rounded(normal(g, static_cast<size_t>(R * D), c.grad_scale), dt);
      p.set_grad(tensor_of(vals, {R, D}, dt));
      ref.dense_step(vals);
    }
    opt->step();
    const auto got = p.detach().to_vector<double>();
    const auto& want = ref.param();
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double e = std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i]));
      if (!(e <= worst)) worst = e, at = i;
    }
    ASSERT_LE(worst, tol) << "step " << s + 1 << ": element " << at << " (row " << static_cast<int64_t>(at) / D
                          << ") is " << got[at] << ", the f64 reference " << want[at] << " (started at " << p0[at]
                          << ")";
  }
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> cases() {
  std::vector<Case> out;
  const auto adam = [](OptimKind k, double wd, double b1, double b2, double eps) {
    OptimRefConfig c{.kind = k, .lr = 0.01, .weight_decay = wd, .beta1 = b1, .beta2 = b2, .eps = eps};
    return c;
  };
  for (const bool sparse : {false, true}) {
    const std::string mode = sparse ? "sparse" : "dense";
    for (const int64_t w : {16, 32, 5, 24}) {
      const std::string ws = "_w" + std::to_string(w);
      out.push_back({"adam_" + mode + ws, adam(OptimKind::adam, 0, 0.9, 0.999, 1e-8), sparse, w});
      out.push_back({"adam_wd_" + mode + ws, adam(OptimKind::adam, 0.1, 0.9, 0.999, 1e-8), sparse, w});
      out.push_back({"adamw_wd_" + mode + ws, adam(OptimKind::adamw, 0.5, 0.9, 0.999, 1e-8), sparse, w});
      // Custom betas and an eps of the gradient's order: eps placement and the bias corrections matter.
      out.push_back({"adam_betas_eps_" + mode + ws, adam(OptimKind::adam, 0.05, 0.7, 0.95, 0.3), sparse, w});
      out.push_back({"adamw_betas_eps_" + mode + ws, adam(OptimKind::adamw, 0.2, 0.5, 0.9, 0.1), sparse, w});
      // Default eps against gradients of 1e-7: sqrt(v_hat) ~ eps, where a misplaced eps shows.
      out.push_back({"adam_tiny_grad_" + mode + ws, adam(OptimKind::adam, 0, 0.9, 0.999, 1e-8), sparse, w, 1e-7});
      out.push_back({"adagrad_" + mode + ws, {.kind = OptimKind::adagrad, .lr = 0.05, .ag_eps = 1e-10}, sparse, w});
      out.push_back({"adagrad_wd_decay_init_" + mode + ws,
                     {.kind = OptimKind::adagrad,
                      .lr = 0.05,
                      .weight_decay = 0.1,
                      .lr_decay = 0.3,
                      .initial_accumulator_value = 0.2,
                      .ag_eps = 0.05},
                     sparse,
                     w});
      out.push_back({"sgd_" + mode + ws, {.kind = OptimKind::sgd, .lr = 0.05}, sparse, w});
      out.push_back({"sgd_wd_momentum_" + mode + ws,
                     {.kind = OptimKind::sgd, .lr = 0.05, .weight_decay = 0.1, .momentum = 0.9},
                     sparse,
                     w});
      out.push_back({"sgd_nesterov_" + mode + ws,
                     {.kind = OptimKind::sgd, .lr = 0.05, .weight_decay = 0.05, .momentum = 0.8, .nesterov = true},
                     sparse,
                     w});
      if (!sparse)  // the row-sparse buffer of a row first seen later starts at 0: dampening 0 only there
        out.push_back({"sgd_dampening_" + mode + ws,
                       {.kind = OptimKind::sgd, .lr = 0.05, .weight_decay = 0.1, .momentum = 0.9, .dampening = 0.3},
                       sparse,
                       w});
    }
  }
  return out;
}

class OptimReferenceF64 : public ::testing::TestWithParam<Case> {};
TEST_P(OptimReferenceF64, Float32MatchesTheFormula) { run_case(GetParam(), DType::f32); }
TEST_P(OptimReferenceF64, Float64MatchesTheFormula) { run_case(GetParam(), DType::f64); }
INSTANTIATE_TEST_SUITE_P(AllRules, OptimReferenceF64, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// Row-sparse against dense: a [30, D] table whose gradient always has the same rows (in a varying
// order, one row split in two entries) must move on those rows exactly like a dense [5, D]
// parameter holding only those rows with the summed gradient, and not at all elsewhere. For Adam
// eps is 0: SparseAdam adds eps before the bias correction (see nn/optim.h), the dense rule after.
void sparse_against_dense(OptimRefConfig cfg, int64_t D, DType dt) {
  const int64_t R = 30;
  const std::vector<int64_t> touched = {2, 5, 6, 17, 29};
  const int64_t n = static_cast<int64_t>(touched.size());
  Generator g(5);
  const auto t0 = rounded(normal(g, static_cast<size_t>(R * D), 1.0), dt);
  std::vector<double> d0;
  for (int64_t r : touched) d0.insert(d0.end(), t0.begin() + r * D, t0.begin() + (r + 1) * D);
  Tensor table = tensor_of(t0, {R, D}, dt, true), dense = tensor_of(d0, {n, D}, dt, true);
  auto ot = make_optimizer(cfg, table), od = make_optimizer(cfg, dense);
  for (int s = 0; s < 5; ++s) {
    const auto vals = rounded(normal(g, static_cast<size_t>(n * D), 1.0), dt);
    // The sparse gradient lists the rows reversed, the first one split into two entries.
    std::vector<int64_t> rows;
    std::vector<double> svals;
    for (int64_t k = n - 1; k >= 0; --k) {
      rows.push_back(touched[static_cast<size_t>(k)]);
      for (int64_t j = 0; j < D; ++j) svals.push_back(vals[static_cast<size_t>(k * D + j)] * (k == 0 ? 0.5 : 1.0));
    }
    rows.push_back(touched[0]);
    for (int64_t j = 0; j < D; ++j) svals.push_back(vals[static_cast<size_t>(j)] * 0.5);
    const int64_t ns = static_cast<int64_t>(rows.size());
    table.set_grad(Tensor::sparse_rows(from_vector(rows, {ns}), tensor_of(svals, {ns, D}, dt), table.shape()));
    dense.set_grad(tensor_of(vals, {n, D}, dt));
    ot->step();
    od->step();
  }
  const auto a = table.detach().to_vector<double>(), b = dense.detach().to_vector<double>();
  const double tol = dt == DType::f32 ? 2e-6 : 1e-12;
  for (int64_t r = 0; r < R; ++r) {
    const auto it = std::find(touched.begin(), touched.end(), r);
    for (int64_t j = 0; j < D; ++j) {
      const double got = a[static_cast<size_t>(r * D + j)];
      if (it == touched.end()) {
        ASSERT_EQ(got, t0[static_cast<size_t>(r * D + j)]) << "untouched row " << r << " moved";
      } else {
        const double want = b[static_cast<size_t>((it - touched.begin()) * D + j)];
        ASSERT_NEAR(got, want, tol * std::max(1.0, std::abs(want))) << "row " << r << " column " << j;
      }
    }
  }
}

class SparseAgainstDense : public ::testing::TestWithParam<int64_t> {};
TEST_P(SparseAgainstDense, AdamWithWeightDecay) {
  for (DType dt : {DType::f32, DType::f64})
    sparse_against_dense(
        {.kind = OptimKind::adam, .lr = 0.01, .weight_decay = 0.2, .beta1 = 0.8, .beta2 = 0.95, .eps = 0}, GetParam(),
        dt);
}
TEST_P(SparseAgainstDense, AdamWWithWeightDecay) {
  for (DType dt : {DType::f32, DType::f64})
    sparse_against_dense({.kind = OptimKind::adamw, .lr = 0.01, .weight_decay = 0.5, .eps = 0}, GetParam(), dt);
}
TEST_P(SparseAgainstDense, AdagradWithWeightDecayAndLrDecay) {
  for (DType dt : {DType::f32, DType::f64})
    sparse_against_dense({.kind = OptimKind::adagrad,
                          .lr = 0.05,
                          .weight_decay = 0.1,
                          .lr_decay = 0.2,
                          .initial_accumulator_value = 0.1,
                          .ag_eps = 1e-3},
                         GetParam(), dt);
}
TEST_P(SparseAgainstDense, SgdWithMomentumAndWeightDecay) {
  for (DType dt : {DType::f32, DType::f64})
    sparse_against_dense({.kind = OptimKind::sgd, .lr = 0.05, .weight_decay = 0.1, .momentum = 0.9, .nesterov = true},
                         GetParam(), dt);
}
INSTANTIATE_TEST_SUITE_P(Widths, SparseAgainstDense, ::testing::Values(16, 32, 7),
                         [](const ::testing::TestParamInfo<int64_t>& i) { return "w" + std::to_string(i.param); });

}  // namespace
}  // namespace rechub::nn
