#pragma once
// Batch normalisation over the channels of a contiguous [N, C, L] tensor (L = 1 for [N, C]):
// per-channel statistics over the N*L elements of a channel, the affine transform and the
// hand-written backward. Statistics and gradient sums accumulate in double.
#include <cstdint>

namespace rechub::kernels::cpu {

// mean[c] and the biased variance var[c] = mean((x - mean)^2), two passes (stable).
template <class T>
void batchnorm_stats(const T* x, int64_t N, int64_t C, int64_t L, double* mean, double* var);

// y = x * scale[c] + shift[c].
template <class T>
void batchnorm_apply(const T* x, int64_t N, int64_t C, int64_t L, const T* scale, const T* shift, T* y);

// sum_g[c] = sum of g, sum_gx[c] = sum of g * (x - mean[c]) over the channel.
template <class T>
void batchnorm_grad_sums(const T* g, const T* x, int64_t N, int64_t C, int64_t L, const double* mean, double* sum_g,
                         double* sum_gx);

// dx = (g - ka[c]) * kb[c] - (x - mean[c]) * kc[c]: covers both the training backward
// (ka = sum_g / M, kb = gamma * invstd, kc = gamma * invstd^3 * sum_gx / M) and eval (ka = kc = 0).
template <class T>
void batchnorm_input_grad(const T* g, const T* x, int64_t N, int64_t C, int64_t L, const double* mean, const double* ka,
                          const double* kb, const double* kc, T* dx);

}  // namespace rechub::kernels::cpu
