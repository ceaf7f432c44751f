#pragma once
// Softmax and log-softmax over one dimension of a tensor viewed as [outer, n, inner].
#include <cstdint>

namespace rechub::kernels::cpu {

template <class T>
void softmax_forward(const T* x, int64_t outer, int64_t n, int64_t inner, T* y, bool log);
// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
template <class T>
void softmax_backward(const T* y, const T* dy, int64_t outer, int64_t n, int64_t inner, T* dx, bool log);

}  // namespace rechub::kernels::cpu
