// The fused batch_norm op: gradients against central finite differences in f64 (training and eval,
// with and without the affine parameters, 2-D and 3-D inputs), the forward against a naive
// computation, and the running-statistics update.
#include <gtest/gtest.h>

#include <cmath>

#include "rechub/core/ops_nn.h"
#include "support/gradcheck.h"

namespace rechub {
namespace {
using testing::gradcheck;
using testing::rand64;
using V = std::vector<Tensor>;

TEST(BatchNormOp, TrainingGradientsMatchFiniteDifferences) {
  Generator g(11);
  for (Shape s : {Shape{5, 3}, Shape{2, 1}, Shape{7, 4, 3}, Shape{33, 17}}) {
    const int64_t C = s[1];
    Tensor x = rand64(s, g, -2.0, 2.0), w = rand64({C}, g, 0.5, 1.5), b = rand64({C}, g);
    EXPECT_TRUE(
        gradcheck([](const V& v) { return ops::batch_norm(v[0], v[1], v[2], Tensor(), Tensor(), true, 0.1, 1e-5); },
                  {x, w, b}, 1e-6, 1e-5))
        << shape_str(s);
    Tensor x2 = rand64(s, g, -2.0, 2.0);
    EXPECT_TRUE(gradcheck(
        [](const V& v) { return ops::batch_norm(v[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-3); }, {x2},
        1e-6, 1e-5))
        << "no affine " << shape_str(s);
  }
}

TEST(BatchNormOp, EvalGradientsMatchFiniteDifferences) {
  Generator g(12);
  Tensor x = rand64({6, 4}, g), w = rand64({4}, g), b = rand64({4}, g);
  Tensor rm = uniform({4}, -0.5, 0.5, {.dtype = DType::f64}, &g),
         rv = uniform({4}, 0.5, 2.0, {.dtype = DType::f64}, &g);
  EXPECT_TRUE(
      gradcheck([&](const V& v) { return ops::batch_norm(v[0], v[1], v[2], rm, rv, false, 0.1, 1e-5); }, {x, w, b}));
}

TEST(BatchNormOp, ForwardAndRunningStatsMatchNaiveFormulas) {
  Generator g(13);
  const int64_t N = 9, C = 5;
  Tensor x = uniform({N, C}, -3, 3, {.dtype = DType::f64}, &g), w = uniform({C}, 0.5, 2, {.dtype = DType::f64}, &g),
         b = uniform({C}, -1, 1, {.dtype = DType::f64}, &g);
  Tensor rm = uniform({C}, -1, 1, {.dtype = DType::f64}, &g), rv = uniform({C}, 0.5, 2, {.dtype = DType::f64}, &g);
  const auto rm0 = rm.to_vector<double>(), rv0 = rv.to_vector<double>();
  Tensor y = ops::batch_norm(x, w, b, rm, rv, true, 0.3, 1e-5);
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>(), wv = w.to_vector<double>(),
             bv = b.to_vector<double>(), rm1 = rm.to_vector<double>(), rv1 = rv.to_vector<double>();
  for (int64_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (int64_t n = 0; n < N; ++n) m += xv[n * C + c];
    m /= N;
    for (int64_t n = 0; n < N; ++n) v += (xv[n * C + c] - m) * (xv[n * C + c] - m);
    for (int64_t n = 0; n < N; ++n)
      EXPECT_NEAR(yv[n * C + c], (xv[n * C + c] - m) / std::sqrt(v / N + 1e-5) * wv[c] + bv[c], 1e-12);
    EXPECT_NEAR(rm1[c], 0.7 * rm0[c] + 0.3 * m, 1e-12);
    EXPECT_NEAR(rv1[c], 0.7 * rv0[c] + 0.3 * v / (N - 1), 1e-12);  // unbiased in the running stat
  }
  // Eval uses the running statistics and leaves them alone.
  Tensor ye = ops::batch_norm(x, w, b, rm, rv, false, 0.3, 1e-5);
  const auto yev = ye.to_vector<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(yev[n * C + c], (xv[n * C + c] - rm1[c]) / std::sqrt(rv1[c] + 1e-5) * wv[c] + bv[c], 1e-12);
  EXPECT_EQ(rm.to_vector<double>(), rm1);
}

TEST(BatchNormOp, RejectsBatchOfOneInTrainingAndMismatchedShapes) {
  Tensor x = ones({1, 4});
  try {
    ops::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than 1 value per channel"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::batch_norm(ones({3, 4}), ones({5}), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(ops::batch_norm(ones({3}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(ops::batch_norm(ones({3, 4}), Tensor(), Tensor(), Tensor(), Tensor(), false), Error);
}

}  // namespace
}  // namespace rechub
