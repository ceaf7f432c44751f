#include "rechub/kernels/cpu/softmax.h"

#include <cmath>
#include <limits>

#include "rechub/kernels/cpu/parallel.h"

namespace rechub::kernels::cpu {

template <class T>
void softmax_forward(const T* x, int64_t outer, int64_t n, int64_t inner, T* y, bool log) {
  parallel_for(outer * inner, kParallelGrain / (n > 0 ? n : 1), [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t o = k / inner, j = k % inner;
      const T* px = x + o * n * inner + j;
      T* py = y + o * n * inner + j;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, px[i * inner]);
      T s = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T e = std::exp(px[i * inner] - m);
        if (!log) py[i * inner] = e;
        s += e;
      }
      if (log) {
        const T ls = m + std::log(s);
        for (int64_t i = 0; i < n; ++i) py[i * inner] = px[i * inner] - ls;
      } else {
        const T inv = T(1) / s;
        for (int64_t i = 0; i < n; ++i) py[i * inner] *= inv;
      }
    }
  });
}

template <class T>
void softmax_backward(const T* y, const T* dy, int64_t outer, int64_t n, int64_t inner, T* dx, bool log) {
  parallel_for(outer * inner, kParallelGrain / (n > 0 ? n : 1), [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t o = k / inner, j = k % inner;
      const int64_t base = o * n * inner + j;
      T s = 0;
      if (log) {
        for (int64_t i = 0; i < n; ++i) s += dy[base + i * inner];
        for (int64_t i = 0; i < n; ++i) dx[base + i * inner] = dy[base + i * inner] - std::exp(y[base + i * inner]) * s;
      } else {
        for (int64_t i = 0; i < n; ++i) s += dy[base + i * inner] * y[base + i * inner];
        for (int64_t i = 0; i < n; ++i) dx[base + i * inner] = y[base + i * inner] * (dy[base + i * inner] - s);
      }
    }
  });
}

template void softmax_forward<float>(const float*, int64_t, int64_t, int64_t, float*, bool);
template void softmax_forward<double>(const double*, int64_t, int64_t, int64_t, double*, bool);
template void softmax_backward<float>(const float*, const float*, int64_t, int64_t, int64_t, float*, bool);
template void softmax_backward<double>(const double*, const double*, int64_t, int64_t, int64_t, double*, bool);

}  // namespace rechub::kernels::cpu
