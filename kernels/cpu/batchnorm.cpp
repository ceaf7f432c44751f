// The CPU entry points of batch normalisation over the channels of [N, C, L] (kernels/batchnorm.h,
// f32 and f64): the reference of kernels/cuda/batchnorm.cu, and its table cpu::batchnorm_kernels().
#include "rechub/kernels/batchnorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "rechub/kernels/cpu/parallel.h"

namespace rechub::kernels::cpu {

namespace {

// Per-channel sums of f(n, c, l) over n and l; rows are split over threads with one partial
// array per thread, reduced in thread order.
template <class F>
void channel_sums(int64_t N, int64_t C, int64_t L, int nsums, double* out, F f) {
  // Fixed blocks of rows, whatever the thread count: each block's partial sums are summed in block
  // order, so the result is the same on 1, 2 or 16 threads (a partial per thread would not be).
  constexpr int64_t kRowBlock = 256;
  const int64_t nb = std::max<int64_t>(1, (N + kRowBlock - 1) / kRowBlock);
  const int64_t width = static_cast<int64_t>(nsums) * C;
  std::vector<double> part(static_cast<size_t>(nb * width), 0.0);
  auto block = [&](int64_t b) {
    double* p = part.data() + b * width;
    const int64_t lo = b * kRowBlock, hi = std::min(N, lo + kRowBlock);
    for (int64_t n = lo; n < hi; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t l = 0; l < L; ++l) f(p, n, c, l, (n * C + c) * L + l);
  };
  const bool parallel = N * C * L > kParallelGrain && nb > 1 && !omp_in_parallel() && omp_get_max_threads() > 1;
  if (parallel) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; ++b) block(b);
  } else {
    for (int64_t b = 0; b < nb; ++b) block(b);
  }
  std::fill_n(out, static_cast<size_t>(width), 0.0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t i = 0; i < width; ++i) out[i] += part[static_cast<size_t>(b * width + i)];
}

template <class F>
void for_rows(int64_t N, int64_t C, int64_t L, F f) {
  parallel_for(N, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, C * L)), [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) f(n);
  });
}

template <class T>
void batchnorm_stats(const T* x, int64_t N, int64_t C, int64_t L, double* mean, double* var) {
  const double M = static_cast<double>(N * L);
  channel_sums(N, C, L, 1, mean, [&](double* p, int64_t, int64_t c, int64_t, int64_t i) { p[c] += x[i]; });
  for (int64_t c = 0; c < C; ++c) mean[c] = M > 0 ? mean[c] / M : 0.0;
  channel_sums(N, C, L, 1, var, [&](double* p, int64_t, int64_t c, int64_t, int64_t i) {
    const double d = x[i] - mean[c];
    p[c] += d * d;
  });
  for (int64_t c = 0; c < C; ++c) var[c] = M > 0 ? var[c] / M : 0.0;
}

template <class T>
void batchnorm_apply(const T* x, int64_t N, int64_t C, int64_t L, const T* scale, const T* shift, T* y) {
  for_rows(N, C, L, [&](int64_t n) {
    const T* xr = x + n * C * L;
    T* yr = y + n * C * L;
    if (L == 1) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * scale[c] + shift[c];
    } else {
      for (int64_t c = 0; c < C; ++c)
        for (int64_t l = 0; l < L; ++l) yr[c * L + l] = xr[c * L + l] * scale[c] + shift[c];
    }
  });
}

template <class T>
void batchnorm_grad_sums(const T* g, const T* x, int64_t N, int64_t C, int64_t L, const double* mean, double* sum_g,
                         double* sum_gx) {
  std::vector<double> both(2 * C);
  channel_sums(N, C, L, 2, both.data(), [&](double* p, int64_t, int64_t c, int64_t, int64_t i) {
    p[c] += g[i];
    p[C + c] += static_cast<double>(g[i]) * (x[i] - mean[c]);
  });
  std::copy_n(both.begin(), C, sum_g);
  std::copy_n(both.begin() + C, C, sum_gx);
}

template <class T>
void batchnorm_input_grad(const T* g, const T* x, int64_t N, int64_t C, int64_t L, const double* mean, const double* ka,
                          const double* kb, const double* kc, T* dx) {
  for_rows(N, C, L, [&](int64_t n) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        dx[i] = static_cast<T>((g[i] - ka[c]) * kb[c] - (x[i] - mean[c]) * kc[c]);
      }
  });
}

template <class T>
void batchnorm_prepare(int64_t C, bool training, double* mean, const double* var, T* rm, T* rv, const T* w, const T* b,
                       double momentum, double eps, double unbias, double* invstd, T* scale, T* shift) {
  for (int64_t c = 0; c < C; ++c)
    batchnorm_prepare_channel(c, training, mean, var, rm, rv, w, b, momentum, eps, unbias, invstd, scale, shift);
}

template <class T>
void batchnorm_backward_prepare(int64_t C, int64_t M, bool training, const double* sum_g, const double* sum_gx,
                                const double* invstd, const T* w, double* ka, double* kb, double* kc, T* gw, T* gb) {
  for (int64_t c = 0; c < C; ++c)
    batchnorm_backward_prepare_channel(c, M, training, sum_g, sum_gx, invstd, w, ka, kb, kc, gw, gb);
}

}  // namespace

template <class T>
const BatchNormKernels<T>& batchnorm_kernels() {
  static const BatchNormKernels<T> table{
      &batchnorm_stats<T>,     &batchnorm_prepare<T>,          &batchnorm_apply<T>,
      &batchnorm_grad_sums<T>, &batchnorm_backward_prepare<T>, &batchnorm_input_grad<T>};
  return table;
}
template const BatchNormKernels<float>& batchnorm_kernels<float>();
template const BatchNormKernels<double>& batchnorm_kernels<double>();

}  // namespace rechub::kernels::cpu
