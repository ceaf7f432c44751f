#pragma once
// The kernel entry points of batch normalisation over the channels of a contiguous [N, C, L]
// tensor (L = 1 for [N, C]), one signature for every device. The op (core/ops_nn.cpp:
// batch_norm) is written once against BatchNormKernels<T> and picks the table of the input's
// device:
//
//   kernels/cpu/batchnorm.cpp    cpu::batchnorm_kernels<T>() for f32 and f64 (the reference)
//   kernels/cuda/batchnorm.cu    cuda::batchnorm_kernels() for f32
//
// Pointers are to data on that device (on CUDA: the current device's stream, asynchronous, nothing
// read back to the host), the "double" arrays included. Statistics and gradient sums accumulate in
// double; M = N * L values per channel.
#include <cmath>
#include <cstdint>

#include "rechub/kernels/host_device.h"

namespace rechub::kernels {

template <class T>
struct BatchNormKernels {
  // mean[c] and the biased variance var[c] = mean((x - mean)^2) over the M values of channel c.
  void (*stats)(const T* x, int64_t N, int64_t C, int64_t L, double* mean, double* var);
  // Per channel: training: invstd = 1/sqrt(var + eps) and, when running_mean is non-null, the
  // running statistics in place (r = (1 - momentum) r + momentum s, the variance times unbias);
  // eval: mean is an OUTPUT = running_mean, invstd = 1/sqrt(running_var + eps). Then
  // a = weight invstd (weight null: 1), scale = a, shift = bias - mean a (bias null: 0).
  void (*prepare)(int64_t C, bool training, double* mean, const double* var, T* running_mean, T* running_var,
                  const T* weight, const T* bias, double momentum, double eps, double unbias, double* invstd, T* scale,
                  T* shift);
  // y = x scale[c] + shift[c].
  void (*apply)(const T* x, int64_t N, int64_t C, int64_t L, const T* scale, const T* shift, T* y);
  // sum_g[c] = sum of g, sum_gx[c] = sum of g (x - mean[c]) over the channel.
  void (*grad_sums)(const T* g, const T* x, int64_t N, int64_t C, int64_t L, const double* mean, double* sum_g,
                    double* sum_gx);
  // Per channel (M values): kb = w invstd, training: ka = sum_g / M, kc = w invstd^3 sum_gx / M,
  // eval: ka = kc = 0; gw = sum_gx invstd, gb = sum_g (ka/kb/kc all given or all null; gw, gb may
  // be null; weight null: 1).
  void (*backward_prepare)(int64_t C, int64_t M, bool training, const double* sum_g, const double* sum_gx,
                           const double* invstd, const T* weight, double* ka, double* kb, double* kc, T* gw, T* gb);
  // dx = (g - ka[c]) kb[c] - (x - mean[c]) kc[c] (covers training and eval).
  void (*input_grad)(const T* g, const T* x, int64_t N, int64_t C, int64_t L, const double* mean, const double* ka,
                     const double* kb, const double* kc, T* dx);
};

// ---- per-channel formulas both backends run (one channel c per call) ----
// prepare's channel (see BatchNormKernels::prepare).
template <class T>
RECHUB_HOST_DEVICE inline void batchnorm_prepare_channel(int64_t c, bool training, double* mean, const double* var,
                                                         T* rm, T* rv, const T* w, const T* b, double momentum,
                                                         double eps, double unbias, double* invstd, T* scale,
                                                         T* shift) {
  double m, is;
  if (training) {
    m = mean[c];
    is = 1.0 / ::sqrt(var[c] + eps);
    if (rm) {
      rm[c] = static_cast<T>((1.0 - momentum) * rm[c] + momentum * m);
      rv[c] = static_cast<T>((1.0 - momentum) * rv[c] + momentum * var[c] * unbias);
    }
  } else {
    m = static_cast<double>(rm[c]);
    mean[c] = m;
    is = 1.0 / ::sqrt(static_cast<double>(rv[c]) + eps);
  }
  invstd[c] = is;
  const double a = (w ? static_cast<double>(w[c]) : 1.0) * is;
  scale[c] = static_cast<T>(a);
  shift[c] = static_cast<T>((b ? static_cast<double>(b[c]) : 0.0) - m * a);
}

// backward_prepare's channel (see BatchNormKernels::backward_prepare).
template <class T>
RECHUB_HOST_DEVICE inline void batchnorm_backward_prepare_channel(int64_t c, int64_t M, bool training,
                                                                  const double* sum_g, const double* sum_gx,
                                                                  const double* invstd, const T* w, double* ka,
                                                                  double* kb, double* kc, T* gw, T* gb) {
  const double is = invstd[c], wc = w ? static_cast<double>(w[c]) : 1.0;
  if (kb) {
    kb[c] = wc * is;
    ka[c] = training ? sum_g[c] / static_cast<double>(M) : 0.0;
    kc[c] = training ? wc * is * is * is * sum_gx[c] / static_cast<double>(M) : 0.0;
  }
  if (gw) gw[c] = static_cast<T>(sum_gx[c] * is);
  if (gb) gb[c] = static_cast<T>(sum_g[c]);
}

namespace cpu {
template <class T>
const BatchNormKernels<T>& batchnorm_kernels();  // T = float, double (kernels/cpu/batchnorm.cpp)
}
namespace cuda {
const BatchNormKernels<float>& batchnorm_kernels();  // kernels/cuda/batchnorm.cu
}

}  // namespace rechub::kernels
