#pragma once
// Reductions over one dimension of a contiguous tensor viewed as [outer, n, inner].
#include <cstdint>

namespace rechub::kernels::cpu {

template <class T>
double sum_all(const T* a, int64_t n);  // accumulated in double
template <class T>
void sum_dim(const T* a, int64_t outer, int64_t n, int64_t inner, T* out);
// Max over the dim; argmax gets the first index of the max (NaN counts as the max, like PyTorch).
template <class T>
void max_dim(const T* a, int64_t outer, int64_t n, int64_t inner, T* out, int64_t* argmax);

}  // namespace rechub::kernels::cpu
