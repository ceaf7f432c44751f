// The CUDA entry points of batch normalisation over the channels of [N, C, L] (kernels/batchnorm.h,
// f32): the same formulas as kernels/cpu/batchnorm.cpp and its table cuda::batchnorm_kernels().
// Statistics and gradient sums are the column reductions of columns.cuh (in double).
#include <cstdint>

#include "rechub/kernels/batchnorm.h"
#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/columns.cuh"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
namespace {

struct BnGradTerm {  // (g, g * (x - mean[c]))
  ColumnView g;
  const float* x;
  const double* mean;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c, double& t1, double& t2) const {
    const int64_t i = g.at(r, c);
    const double gv = g.p[i];
    t1 = gv;
    t2 = gv * (static_cast<double>(x[i]) - mean[c]);
  }
};

__global__ void batchnorm_prepare_kernel(int64_t C, bool training, double* __restrict__ mean,
                                         const double* __restrict__ var, float* __restrict__ rm, float* __restrict__ rv,
                                         const float* __restrict__ w, const float* __restrict__ b, double momentum,
                                         double eps, double unbias, double* __restrict__ invstd,
                                         float* __restrict__ scale, float* __restrict__ shift) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += stride)
    batchnorm_prepare_channel(c, training, mean, var, rm, rv, w, b, momentum, eps, unbias, invstd, scale, shift);
}

__global__ void batchnorm_apply_kernel(const float* __restrict__ x, int64_t C, int64_t L, int64_t total,
                                       const float* __restrict__ scale, const float* __restrict__ shift,
                                       float* __restrict__ y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int64_t c = (i / L) % C;
    y[i] = x[i] * scale[c] + shift[c];
  }
}

__global__ void batchnorm_backward_prepare_kernel(int64_t C, int64_t M, bool training, const double* __restrict__ sum_g,
                                                  const double* __restrict__ sum_gx, const double* __restrict__ invstd,
                                                  const float* __restrict__ w, double* __restrict__ ka,
                                                  double* __restrict__ kb, double* __restrict__ kc,
                                                  float* __restrict__ gw, float* __restrict__ gb) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += stride)
    batchnorm_backward_prepare_channel(c, M, training, sum_g, sum_gx, invstd, w, ka, kb, kc, gw, gb);
}

__global__ void batchnorm_input_grad_kernel(const float* __restrict__ g, const float* __restrict__ x, int64_t C,
                                            int64_t L, int64_t total, const double* __restrict__ mean,
                                            const double* __restrict__ ka, const double* __restrict__ kb,
                                            const double* __restrict__ kc, float* __restrict__ dx) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int64_t c = (i / L) % C;
    dx[i] =
        static_cast<float>((static_cast<double>(g[i]) - ka[c]) * kb[c] - (static_cast<double>(x[i]) - mean[c]) * kc[c]);
  }
}

void batchnorm_stats(const float* x, int64_t N, int64_t C, int64_t L, double* mean, double* var) {
  mean_var("batchnorm_stats", N * L, C, ColumnView{x, C * L, L}, mean, var);
}

void batchnorm_prepare(int64_t C, bool training, double* mean, const double* var, float* running_mean,
                       float* running_var, const float* weight, const float* bias, double momentum, double eps,
                       double unbias, double* invstd, float* scale, float* shift) {
  if (C <= 0) return;
  batchnorm_prepare_kernel<<<grid_for(C), kBlock, 0, current_stream()>>>(
      C, training, mean, var, running_mean, running_var, weight, bias, momentum, eps, unbias, invstd, scale, shift);
  RECHUB_CUDA_LAUNCH_CHECK("batchnorm_prepare");
}

void batchnorm_apply(const float* x, int64_t N, int64_t C, int64_t L, const float* scale, const float* shift,
                     float* y) {
  const int64_t total = N * C * L;
  if (total <= 0) return;
  batchnorm_apply_kernel<<<grid_for(total), kBlock, 0, current_stream()>>>(x, C, L, total, scale, shift, y);
  RECHUB_CUDA_LAUNCH_CHECK("batchnorm_apply");
}

void batchnorm_grad_sums(const float* g, const float* x, int64_t N, int64_t C, int64_t L, const double* mean,
                         double* sum_g, double* sum_gx) {
  column_reduce("batchnorm_grad_sums", N * L, C, BnGradTerm{ColumnView{g, C * L, L}, x, mean}, sum_g, sum_gx);
}

void batchnorm_backward_prepare(int64_t C, int64_t M, bool training, const double* sum_g, const double* sum_gx,
                                const double* invstd, const float* weight, double* ka, double* kb, double* kc,
                                float* gw, float* gb) {
  if (C <= 0) return;
  RECHUB_CHECK((ka == nullptr) == (kb == nullptr) && (kb == nullptr) == (kc == nullptr),
               "batchnorm_backward_prepare: ka, kb and kc are all given or all omitted");
  batchnorm_backward_prepare_kernel<<<grid_for(C), kBlock, 0, current_stream()>>>(C, M, training, sum_g, sum_gx, invstd,
                                                                                  weight, ka, kb, kc, gw, gb);
  RECHUB_CUDA_LAUNCH_CHECK("batchnorm_backward_prepare");
}

void batchnorm_input_grad(const float* g, const float* x, int64_t N, int64_t C, int64_t L, const double* mean,
                          const double* ka, const double* kb, const double* kc, float* dx) {
  const int64_t total = N * C * L;
  if (total <= 0) return;
  batchnorm_input_grad_kernel<<<grid_for(total), kBlock, 0, current_stream()>>>(g, x, C, L, total, mean, ka, kb, kc,
                                                                                dx);
  RECHUB_CUDA_LAUNCH_CHECK("batchnorm_input_grad");
}

}  // namespace

const BatchNormKernels<float>& batchnorm_kernels() {
  static const BatchNormKernels<float> table{&batchnorm_stats,     &batchnorm_prepare,          &batchnorm_apply,
                                             &batchnorm_grad_sums, &batchnorm_backward_prepare, &batchnorm_input_grad};
  return table;
}

}  // namespace rechub::kernels::cuda
