#include "rechub/kernels/cpu/batchnorm.h"

#include <algorithm>
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

}  // namespace

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

#define RECHUB_BN_INSTANTIATE(T)                                                                                     \
  template void batchnorm_stats<T>(const T*, int64_t, int64_t, int64_t, double*, double*);                           \
  template void batchnorm_apply<T>(const T*, int64_t, int64_t, int64_t, const T*, const T*, T*);                     \
  template void batchnorm_grad_sums<T>(const T*, const T*, int64_t, int64_t, int64_t, const double*, double*,        \
                                       double*);                                                                     \
  template void batchnorm_input_grad<T>(const T*, const T*, int64_t, int64_t, int64_t, const double*, const double*, \
                                        const double*, const double*, T*);
RECHUB_BN_INSTANTIATE(float)
RECHUB_BN_INSTANTIATE(double)
#undef RECHUB_BN_INSTANTIATE

}  // namespace rechub::kernels::cpu
