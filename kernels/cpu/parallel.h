#pragma once
// OpenMP helpers for the CPU kernels: split a loop over threads only when it pays.
#include <omp.h>

#include <cstdint>

namespace rechub::kernels::cpu {

// Below this many elements a loop runs on one thread (thread start-up costs more).
constexpr int64_t kParallelGrain = 1 << 15;

template <class F>
inline void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= grain || omp_in_parallel() || omp_get_max_threads() == 1) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
    if (lo < hi) f(lo, hi);
  }
}

// out[i] = f(a[i]) for i < n.
template <class T, class U, class F>
inline void unary_map(int64_t n, const T* a, U* out, F f) {
  parallel_for(n, kParallelGrain, [&](int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) out[i] = f(a[i]);
  });
}

// out[i] = f(a[i], b[i]) for i < n.
template <class T, class F>
inline void binary_map(int64_t n, const T* a, const T* b, T* out, F f) {
  parallel_for(n, kParallelGrain, [&](int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) out[i] = f(a[i], b[i]);
  });
}

}  // namespace rechub::kernels::cpu
