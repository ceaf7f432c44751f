#pragma once
// Finite-difference gradient check in f64: the reference every differentiable op is tested against.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"

namespace rechub::testing {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d<w, f(x)>/dx_i against central differences, with w a fixed random weight so every
// output element matters. Inputs must be f64 leaves that require grad.
inline ::testing::AssertionResult gradcheck(const Fn& f, std::vector<Tensor> inputs, double eps = 1e-6,
                                            double tol = 1e-6, uint64_t seed = 7) {
  Tensor out = f(inputs);
  Generator gen(seed);
  Tensor w = randn(out.shape(), {.dtype = DType::f64}, &gen);
  std::vector<Tensor> analytic = grad({out}, inputs, {w}, {.allow_unused = true});
  auto weighted = [&](const std::vector<Tensor>& xs) {
    NoGradGuard ng;
    Tensor o = f(xs);
    const auto ov = o.to_vector<double>();
    const auto wv = w.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < ov.size(); ++i) s += ov[i] * wv[i];
    return s;
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    const Tensor a = analytic[k].defined() ? analytic[k].to_dense() : zeros(x.shape(), {.dtype = DType::f64});
    const auto av = a.to_vector<double>();
    double* px = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = px[i];
      px[i] = orig + eps;
      const double fp = weighted(inputs);
      px[i] = orig - eps;
      const double fm = weighted(inputs);
      px[i] = orig;
      const double num = (fp - fm) / (2 * eps);
      const double err = std::abs(num - av[i]);
      if (err > tol * (1.0 + std::abs(num)))
        return ::testing::AssertionFailure() << "input " << k << " element " << i << ": analytic " << av[i]
                                             << " vs numeric " << num << " (shape " << shape_str(x.shape()) << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

inline Tensor rand64(const Shape& s, Generator& g, double lo = -1.0, double hi = 1.0) {
  return uniform(s, lo, hi, {.dtype = DType::f64, .requires_grad = true}, &g);
}

// Max |a - b| / (1 + |b|) over elements.
inline double max_rel_diff(const Tensor& a, const Tensor& b) {
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  if (av.size() != bv.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    const double d = std::abs(av[i] - bv[i]) / (1.0 + std::abs(bv[i]));
    if (!(d <= m)) m = d;  // NaN propagates as failure
  }
  return m;
}

}  // namespace rechub::testing
