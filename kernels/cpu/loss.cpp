#include "rechub/kernels/cpu/loss.h"

#include <algorithm>
#include <cmath>

namespace rechub::kernels::cpu {

template <class T>
void bce_logits_forward(const T* x, const T* y, int64_t n, double pos_weight, T* loss) {
  for (int64_t i = 0; i < n; ++i) {
    const T c = T(1) + (T(pos_weight) - T(1)) * y[i];
    const T sp = std::log1p(std::exp(-std::abs(x[i]))) + std::max(-x[i], T(0));  // softplus(-x)
    loss[i] = (T(1) - y[i]) * x[i] + c * sp;
  }
}

template <class T>
void bce_logits_backward(const T* x, const T* y, const T* g, int64_t n, double pos_weight, T* dx) {
  for (int64_t i = 0; i < n; ++i) {
    const T c = T(1) + (T(pos_weight) - T(1)) * y[i];
    const T s = x[i] >= 0 ? std::exp(-x[i]) / (T(1) + std::exp(-x[i])) : T(1) / (T(1) + std::exp(x[i]));  // sigmoid(-x)
    dx[i] = g[i] * ((T(1) - y[i]) - c * s);
  }
}

template <class T>
void bce_forward(const T* p, const T* y, int64_t n, T* loss) {
  for (int64_t i = 0; i < n; ++i) {
    const T lp = std::max(std::log(p[i]), T(-100));
    const T l1p = std::max(std::log1p(-p[i]), T(-100));
    loss[i] = -(y[i] * lp + (T(1) - y[i]) * l1p);
  }
}

template <class T>
void bce_backward(const T* p, const T* y, const T* g, int64_t n, T* dp) {
  for (int64_t i = 0; i < n; ++i) dp[i] = g[i] * (p[i] - y[i]) / std::max(p[i] * (T(1) - p[i]), T(1e-12));
}

template void bce_logits_forward<float>(const float*, const float*, int64_t, double, float*);
template void bce_logits_forward<double>(const double*, const double*, int64_t, double, double*);
template void bce_logits_backward<float>(const float*, const float*, const float*, int64_t, double, float*);
template void bce_logits_backward<double>(const double*, const double*, const double*, int64_t, double, double*);
template void bce_forward<float>(const float*, const float*, int64_t, float*);
template void bce_forward<double>(const double*, const double*, int64_t, double*);
template void bce_backward<float>(const float*, const float*, const float*, int64_t, float*);
template void bce_backward<double>(const double*, const double*, const double*, int64_t, double*);

}  // namespace rechub::kernels::cpu
