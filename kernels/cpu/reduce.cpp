#include "rechub/kernels/cpu/reduce.h"

#include <cmath>

#include "rechub/kernels/cpu/parallel.h"

namespace rechub::kernels::cpu {

template <class T>
double sum_all(const T* a, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i];
  return s;
}

template <class T>
void sum_dim(const T* a, int64_t outer, int64_t n, int64_t inner, T* out) {
  if (inner == 1) {
    parallel_for(outer, kParallelGrain / (n > 0 ? n : 1), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        double s = 0;
        const T* p = a + o * n;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; ++i) s += p[i];
        out[o] = static_cast<T>(s);
      }
    });
    return;
  }
  // Rows of `inner` contiguous values are added one after another (vectorised over the row),
  // threads split the columns, so every output sums in the same order whatever the thread count.
  parallel_for(inner, 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t o = 0; o < outer; ++o) {
      T* po = out + o * inner;
      for (int64_t j = lo; j < hi; ++j) po[j] = T(0);
      for (int64_t i = 0; i < n; ++i) {
        const T* pa = a + (o * n + i) * inner;
#pragma omp simd
        for (int64_t j = lo; j < hi; ++j) po[j] += pa[j];
      }
    }
  });
}

template <class T>
void max_dim(const T* a, int64_t outer, int64_t n, int64_t inner, T* out, int64_t* argmax) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      int64_t best = 0;
      T bv = a[o * n * inner + j];
      for (int64_t i = 1; i < n && !std::isnan(bv); ++i) {
        const T v = a[(o * n + i) * inner + j];
        if (v > bv || std::isnan(v)) {
          bv = v;
          best = i;
        }
      }
      out[o * inner + j] = bv;
      if (argmax) argmax[o * inner + j] = best;
    }
}

template double sum_all<float>(const float*, int64_t);
template double sum_all<double>(const double*, int64_t);
template void sum_dim<float>(const float*, int64_t, int64_t, int64_t, float*);
template void sum_dim<double>(const double*, int64_t, int64_t, int64_t, double*);
template void max_dim<float>(const float*, int64_t, int64_t, int64_t, float*, int64_t*);
template void max_dim<double>(const double*, int64_t, int64_t, int64_t, double*, int64_t*);

}  // namespace rechub::kernels::cpu
