// Binary cross-entropy kernels (per element; the front-end in core/ops_loss.cpp reduces): the
// formulas of kernels/cpu/loss.cpp element for element, declared in ops.h.
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;

namespace {

constexpr int kBlock = 256;

// softplus(-x) = log1p(exp(-|x|)) + max(-x, 0), stable for any x.
__global__ void bce_logits_forward_kernel(const float* __restrict__ x, const float* __restrict__ y, int64_t n, float pw,
                                          float* __restrict__ loss) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float c = 1.f + (pw - 1.f) * y[i];
    const float sp = log1pf(expf(-fabsf(x[i]))) + fmaxf(-x[i], 0.f);
    loss[i] = (1.f - y[i]) * x[i] + c * sp;
  }
}

__global__ void bce_logits_backward_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                           const float* __restrict__ g, int64_t n, float pw, float* __restrict__ dx) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float c = 1.f + (pw - 1.f) * y[i];
    const float s = x[i] >= 0.f ? expf(-x[i]) / (1.f + expf(-x[i])) : 1.f / (1.f + expf(x[i]));  // sigmoid(-x)
    dx[i] = g[i] * ((1.f - y[i]) - c * s);
  }
}

__global__ void bce_forward_kernel(const float* __restrict__ p, const float* __restrict__ y, int64_t n,
                                   float* __restrict__ loss) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float lp = fmaxf(logf(p[i]), -100.f);
    const float l1p = fmaxf(log1pf(-p[i]), -100.f);
    loss[i] = -(y[i] * lp + (1.f - y[i]) * l1p);
  }
}

__global__ void bce_backward_kernel(const float* __restrict__ p, const float* __restrict__ y,
                                    const float* __restrict__ g, int64_t n, float* __restrict__ dp) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    dp[i] = g[i] * (p[i] - y[i]) / fmaxf(p[i] * (1.f - p[i]), 1e-12f);
}

}  // namespace

void bce_logits_forward(const float* x, const float* y, int64_t n, double pos_weight, float* loss) {
  if (n == 0) return;
  bce_logits_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(x, y, n, float(pos_weight), loss);
  RECHUB_CUDA_LAUNCH_CHECK("bce_logits_forward");
}

void bce_logits_backward(const float* x, const float* y, const float* g, int64_t n, double pos_weight, float* dx) {
  if (n == 0) return;
  bce_logits_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(x, y, g, n, float(pos_weight), dx);
  RECHUB_CUDA_LAUNCH_CHECK("bce_logits_backward");
}

void bce_forward(const float* p, const float* y, int64_t n, float* loss) {
  if (n == 0) return;
  bce_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(p, y, n, loss);
  RECHUB_CUDA_LAUNCH_CHECK("bce_forward");
}

void bce_backward(const float* p, const float* y, const float* g, int64_t n, float* dp) {
  if (n == 0) return;
  bce_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(p, y, g, n, dp);
  RECHUB_CUDA_LAUNCH_CHECK("bce_backward");
}

}  // namespace rechub::kernels::cuda
