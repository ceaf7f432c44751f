// Lazy (row-sparse) Adam and row-sparse Adagrad on wide rows: rows of 16 or 32 floats take a
// vectorised update in registers, narrow rows the blocked one. Both rules are elementwise, so a
// [R, D] table must move exactly like the same numbers laid out as [R * D, 1] with a gradient row
// per element (the blocked path), and rows outside the gradient must not move at all.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "core/rng.h"
#include "nn/optim.h"

namespace rechub::nn {
namespace {

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
  }
  const auto a = wide.detach().to_vector<float>(), b = narrow.detach().to_vector<float>();
  const auto p0 = before.to_vector<float>();
  for (int64_t i = 0; i < R * D; ++i) {
    EXPECT_NEAR(a[i], b[i], 1e-6f * (1.0f + std::abs(b[i]))) << "element " << i;
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
