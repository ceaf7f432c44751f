#pragma once
// Binary cross-entropy kernels (per element; the front-end reduces).
#include <cstdint>

namespace rechub::kernels::cpu {

// l = (1-y)*x + c*softplus(-x), c = 1 + (pos_weight-1)*y: stable for any x.
template <class T>
void bce_logits_forward(const T* x, const T* y, int64_t n, double pos_weight, T* loss);
// dl/dx = (1-y) - c*sigmoid(-x)  (= sigmoid(x) - y when pos_weight = 1), times g[i].
template <class T>
void bce_logits_backward(const T* x, const T* y, const T* g, int64_t n, double pos_weight, T* dx);
// l = -(y*max(log p, -100) + (1-y)*max(log(1-p), -100))  (PyTorch's clamp)
template <class T>
void bce_forward(const T* p, const T* y, int64_t n, T* loss);
// dl/dp = (p - y) / max(p*(1-p), 1e-12)  (PyTorch's formula), times g[i].
template <class T>
void bce_backward(const T* p, const T* y, const T* g, int64_t n, T* dp);

}  // namespace rechub::kernels::cpu
