// Lazy (row-sparse) Adam and row-sparse Adagrad on wide rows: rows of 16 or 32 floats take a
// vectorised update in registers, narrow rows the blocked one. Both rules are elementwise, so a
// [R, D] table must move exactly like the same numbers laid out as [R * D, 1] with a gradient row
// per element (the blocked path), and rows outside the gradient must not move at all. Where the
// CPU has no vectorised row path both layouts take the blocked one, so the table is also checked
// against the rule written out in f64 (tests/support/optim_reference.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/optim.h"
#include "support/optim_reference.h"

namespace rechub::nn {
namespace {

testing::OptimRefConfig ref_config(const AdamOptions& o, bool decoupled, double lr, double wd) {
  return {.kind = decoupled ? testing::OptimKind::adamw : testing::OptimKind::adam,
          .lr = lr,
          .weight_decay = wd,
          .beta1 = o.beta1,
          .beta2 = o.beta2,
          .eps = o.eps};
}
testing::OptimRefConfig ref_config(const AdagradOptions& o, bool, double lr, double wd) {
  return {.kind = testing::OptimKind::adagrad,
          .lr = lr,
          .weight_decay = wd,
          .lr_decay = o.lr_decay,
          .initial_accumulator_value = o.initial_accumulator_value,
          .ag_eps = o.eps};
}

template <class Opt, class Options = AdamOptions>
void check_wide_rows_match_elementwise(int64_t D, double wd,
                                       Options opts = AdamOptions{.beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6}) {
  const int64_t R = 40;
  Generator g(7);
  Tensor wide = randn({R, D}, {.requires_grad = true}, &g);
  Tensor narrow = from_vector(wide.detach().to_vector<float>(), {R * D, 1}, {.requires_grad = true});
  const Tensor before = wide.detach().clone();
  Opt ow({{{wide}, 0.01, wd}}, opts);
  Opt on({{{narrow}, 0.01, wd}}, opts);
  const auto p0d = before.to_vector<double>();
  testing::OptimReference ref(ref_config(opts, std::is_same_v<Opt, AdamW>, 0.01, wd), p0d, D);
  const std::vector<std::vector<int64_t>> steps = {{1, 3, 4, 20, 39}, {3, 5, 20}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}};
  for (const auto& rows : steps) {
    const int64_t n = static_cast<int64_t>(rows.size());
    Tensor val = randn({n, D}, {}, &g);
    std::vector<int64_t> elems;
    for (int64_t r : rows)
      for (int64_t j = 0; j < D; ++j) elems.push_back(r * D + j);
    wide.set_grad(Tensor::sparse_rows(from_vector(rows, {n}), val, wide.shape()));
    narrow.set_grad(Tensor::sparse_rows(from_vector(elems, {n * D}), ops::reshape(val, {n * D, 1}), narrow.shape()));
    ow.step();
    on.step();
    ref.sparse_step(rows, val.to_vector<double>());
  }
  const auto a = wide.detach().to_vector<float>(), b = narrow.detach().to_vector<float>();
  const auto p0 = before.to_vector<float>();
  for (int64_t i = 0; i < R * D; ++i) {
    EXPECT_NEAR(a[i], b[i], 1e-6f * (1.0f + std::abs(b[i]))) << "element " << i;
    const double want = ref.param()[static_cast<size_t>(i)];
    EXPECT_NEAR(a[i], want, 4e-6 * std::max(1.0, std::abs(want))) << "element " << i << " against the f64 rule";
    const int64_t r = i / D;
    const bool touched = r <= 9 || r == 20 || r == 39;
    if (touched) {
      EXPECT_NE(a[i], p0[i]) << "touched row " << r << " did not move";
    } else {
      EXPECT_EQ(a[i], p0[i]) << "untouched row " << r << " moved";
    }
  }
}

TEST(SparseAdamRows, Width16MatchesElementwise) { check_wide_rows_match_elementwise<Adam>(16, 0.0); }
TEST(SparseAdamRows, Width32WithWeightDecayMatchesElementwise) { check_wide_rows_match_elementwise<Adam>(32, 0.01); }
TEST(SparseAdamRows, AdamWWidth16MatchesElementwise) { check_wide_rows_match_elementwise<AdamW>(16, 0.05); }
TEST(SparseAdamRows, Width24MatchesElementwise) { check_wide_rows_match_elementwise<Adam>(24, 0.0); }
TEST(SparseAdagradRows, Width16MatchesElementwise) {
  check_wide_rows_match_elementwise<Adagrad>(16, 0.0, AdagradOptions{.initial_accumulator_value = 0.1, .eps = 1e-6});
}
TEST(SparseAdagradRows, Width32WithWeightDecayAndLrDecayMatchesElementwise) {
  check_wide_rows_match_elementwise<Adagrad>(32, 0.01, AdagradOptions{.lr_decay = 0.1, .eps = 1e-6});
}

}  // namespace
}  // namespace rechub::nn
