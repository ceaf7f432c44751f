// The CUDA entry points of the fused expert block and the gate mix (kernels/experts.h, f32): the
// same formulas as kernels/cpu/experts.cpp, element for element, and its table
// cuda::expert_kernels(). GEMMs go to cuBLAS (kernels/cuda/gemm.cpp), the gate's softmax to
// softmax.cu and its bias gradient to reduce.cu's sum_dim.
//
// Elementwise passes are grid-stride loops over rows*cols with scalar (4-byte) loads, so no
// alignment is assumed. Column reductions (batch statistics, gradient sums) are those of
// columns.cuh.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/columns.cuh"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"
#include "rechub/kernels/experts.h"

namespace rechub::kernels::cuda {
namespace {

constexpr int kWarps = kBlock / 32;
constexpr float kLeakySlope = static_cast<float>(kLeakyReluSlope);

// ---- activations ----

template <Activation A>
__device__ __forceinline__ float act_value(float y) {
  if constexpr (A == Activation::relu) return y > 0.f ? y : 0.f;
  if constexpr (A == Activation::leaky_relu) return y > 0.f ? y : kLeakySlope * y;
  if constexpr (A == Activation::sigmoid) return 1.f / (1.f + expf(-y));
  if constexpr (A == Activation::tanh) return tanhf(y);
  return y;
}

// dy = da * mask * act'(y) for element i of column c (kernels/cpu/experts.cpp's act_grad).
template <Activation A>
__device__ __forceinline__ float act_grad(float da, float s, const float* gamma, const float* beta, int64_t c, float a,
                                          const float* mask, int64_t i) {
  float d;
  if constexpr (A == Activation::relu || A == Activation::leaky_relu) {
    const float y = gamma ? gamma[c] * s + beta[c] : s;
    d = y > 0.f ? 1.f : (A == Activation::relu ? 0.f : kLeakySlope);
  } else if constexpr (A == Activation::sigmoid || A == Activation::tanh) {
    const float ap = mask ? (mask[i] != 0.f ? a / mask[i] : 0.f) : a;
    d = A == Activation::sigmoid ? ap * (1.f - ap) : 1.f - ap * ap;
  } else {
    d = 1.f;
  }
  return da * d * (mask ? mask[i] : 1.f);
}

template <Activation A>
using ActTag = std::integral_constant<Activation, A>;

// Calls f(ActTag<A>{}) for the runtime activation.
template <class F>
void with_act(Activation a, F&& f) {
  switch (a) {
    case Activation::identity:
      f(ActTag<Activation::identity>{});
      return;
    case Activation::relu:
      f(ActTag<Activation::relu>{});
      return;
    case Activation::leaky_relu:
      f(ActTag<Activation::leaky_relu>{});
      return;
    case Activation::sigmoid:
      f(ActTag<Activation::sigmoid>{});
      return;
    case Activation::tanh:
      f(ActTag<Activation::tanh>{});
      return;
  }
  RECHUB_FAIL("CUDA expert kernels: unknown activation " << static_cast<int>(a));
}

template <Activation A>
struct ActGradTerm {  // (dy, dy * s), writing dy when asked
  const float *da, *s, *gamma, *beta, *a, *mask;
  float* dy;
  int64_t cols;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c, double& t1, double& t2) const {
    const int64_t i = r * cols + c;
    const float v = act_grad<A>(da[i], s[i], gamma, beta, c, a[i], mask, i);
    if (dy) dy[i] = v;
    t1 = v;
    t2 = static_cast<double>(v) * s[i];
  }
};

// ---- expert block ----

__global__ void experts_bn_prepare_kernel(int64_t cols, bool training, const double* __restrict__ mean,
                                          const double* __restrict__ var, const float* __restrict__ bias,
                                          double momentum, double eps, double unbias, float* __restrict__ rm,
                                          float* __restrict__ rv, float* __restrict__ shift,
                                          float* __restrict__ invstd) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += stride)
    bn_prepare_column(c, training, mean, var, bias, momentum, eps, unbias, rm, rv, shift, invstd);
}

template <Activation A>
__global__ void experts_normalize_activate_kernel(int64_t rows, int64_t cols, float* __restrict__ z,
                                                  const float* __restrict__ bias, const float* __restrict__ shift,
                                                  const float* __restrict__ scale, const float* __restrict__ gamma,
                                                  const float* __restrict__ beta, const float* __restrict__ mask,
                                                  float* __restrict__ out) {
  const int64_t total = rows * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int64_t c = i % cols;
    const float v = z[i];
    const float s = scale ? (v - shift[c]) * scale[c] : (bias ? v + bias[c] : v);
    z[i] = s;
    float o = act_value<A>(gamma ? gamma[c] * s + beta[c] : s);
    if (mask) o *= mask[i];
    out[i] = o;
  }
}

__global__ void experts_bn_grad_columns_kernel(int64_t cols, int64_t rows, BnMode mode,
                                               const double* __restrict__ sum_dy, const double* __restrict__ sum_dys,
                                               const float* __restrict__ gamma, const float* __restrict__ invstd,
                                               float* __restrict__ k, float* __restrict__ m1, float* __restrict__ m2,
                                               float* __restrict__ dbias, float* __restrict__ dgamma,
                                               float* __restrict__ dbeta) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += stride)
    bn_grad_column(c, rows, mode, sum_dy, sum_dys, gamma, invstd, k, m1, m2, dbias, dgamma, dbeta);
}

template <Activation A>
__global__ void experts_activation_bn_backward_kernel(int64_t rows, int64_t cols, const float* __restrict__ da,
                                                      const float* __restrict__ s, const float* __restrict__ gamma,
                                                      const float* __restrict__ beta, const float* __restrict__ a,
                                                      const float* __restrict__ mask, const float* __restrict__ k,
                                                      const float* __restrict__ m1, const float* __restrict__ m2,
                                                      float* __restrict__ dz) {
  const int64_t total = rows * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int64_t c = i % cols;
    const float v = act_grad<A>(da[i], s[i], gamma, beta, c, a[i], mask, i);
    dz[i] = k[c] * (v - m1[c] - s[i] * m2[c]);
  }
}

__global__ void scale_columns_kernel(int64_t rows, int64_t cols, float* __restrict__ m, const float* __restrict__ k) {
  const int64_t total = rows * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) m[i] *= k[i % cols];
}

// ---- gate mix ----

__global__ void gate_mix_forward_kernel(int64_t rows, int64_t h, GateBlocks<float> b, const float* __restrict__ gates,
                                        int64_t n_experts, float* __restrict__ out) {
  const int64_t total = rows * h, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / h, c = i % h;
    const float* g = gates + r * n_experts;
    float acc = 0.f;
    int64_t e = 0;
    for (int bi = 0; bi < b.n; ++bi) {
      const int64_t ld = b.count[bi] * h;
      const float* x = b.data[bi] + r * ld + c;
      for (int64_t j = 0; j < b.count[bi]; ++j, ++e) acc += g[e] * x[j * h];
    }
    out[i] = acc;
  }
}

__device__ __forceinline__ float warp_allsum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row. dlogits[r, e] first holds dg_e = <dout_r, X_e,r> (written by lane 0), then,
// after __syncwarp, g_e (dg_e - sum_j g_j dg_j).
__global__ void gate_mix_backward_kernel(int64_t rows, int64_t h, GateBlocks<float> b, const float* __restrict__ gates,
                                         int64_t n_experts, const float* __restrict__ dout, float* dlogits) {
  const int64_t r = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // the same for the whole warp: the shuffles below see all 32 lanes
  const float* d = dout + r * h;
  const float* g = gates + r * n_experts;
  float* dl = dlogits ? dlogits + r * n_experts : nullptr;
  float mean = 0.f;
  int64_t e = 0;
  for (int bi = 0; bi < b.n; ++bi) {
    const int64_t ld = b.count[bi] * h;
    const float* x = b.data[bi] + r * ld;
    float* dx = b.grad[bi] ? b.grad[bi] + r * ld : nullptr;
    for (int64_t j = 0; j < b.count[bi]; ++j, ++e) {
      const float w = g[e];
      float dot = 0.f;
      for (int64_t c = lane; c < h; c += 32) {
        const float dv = d[c];
        dot += dv * x[j * h + c];
        if (dx) dx[j * h + c] = w * dv;
      }
      if (dl) {
        dot = warp_allsum(dot);
        mean += w * dot;
        if (lane == 0) dl[e] = dot;
      }
    }
  }
  if (dl) {
    __syncwarp();
    for (int64_t i = lane; i < n_experts; i += 32) dl[i] = g[i] * (dl[i] - mean);
  }
}

void column_mean_var(int64_t rows, int64_t cols, const float* z, int64_t ld, double* mean, double* var) {
  mean_var("column_mean_var", rows, cols, ColumnView{z, ld, 1}, mean, var);
}

void bn_prepare(int64_t cols, bool training, const double* mean, const double* var, const float* bias, double momentum,
                double eps, double unbias, float* running_mean, float* running_var, float* shift, float* invstd) {
  if (cols <= 0) return;
  experts_bn_prepare_kernel<<<grid_for(cols), kBlock, 0, current_stream()>>>(
      cols, training, mean, var, bias, momentum, eps, unbias, running_mean, running_var, shift, invstd);
  RECHUB_CUDA_LAUNCH_CHECK("experts_bn_prepare");
}

void normalize_activate(int64_t rows, int64_t cols, float* z, const float* bias, const float* shift, const float* scale,
                        const float* gamma, const float* beta, Activation act, const float* mask, float* out) {
  if (rows <= 0 || cols <= 0) return;
  with_act(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    experts_normalize_activate_kernel<A><<<grid_for(rows * cols), kBlock, 0, current_stream()>>>(
        rows, cols, z, bias, shift, scale, gamma, beta, mask, out);
  });
  RECHUB_CUDA_LAUNCH_CHECK("experts_normalize_activate");
}

void activation_backward(int64_t rows, int64_t cols, const float* da, const float* s, const float* gamma,
                         const float* beta, Activation act, const float* a, const float* mask, float* dy,
                         double* sum_dy, double* sum_dys) {
  with_act(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    column_reduce("experts_activation_backward", rows, cols, ActGradTerm<A>{da, s, gamma, beta, a, mask, dy, cols},
                  sum_dy, sum_dys);
  });
}

void bn_grad_columns(int64_t cols, int64_t rows, BnMode mode, const double* sum_dy, const double* sum_dys,
                     const float* gamma, const float* invstd, float* k, float* m1, float* m2, float* dbias,
                     float* dgamma, float* dbeta) {
  if (cols <= 0) return;
  experts_bn_grad_columns_kernel<<<grid_for(cols), kBlock, 0, current_stream()>>>(
      cols, rows, mode, sum_dy, sum_dys, gamma, invstd, k, m1, m2, dbias, dgamma, dbeta);
  RECHUB_CUDA_LAUNCH_CHECK("experts_bn_grad_columns");
}

void activation_bn_backward(int64_t rows, int64_t cols, const float* da, const float* s, const float* gamma,
                            const float* beta, Activation act, const float* a, const float* mask, const float* k,
                            const float* m1, const float* m2, float* dz) {
  if (rows <= 0 || cols <= 0) return;
  with_act(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    experts_activation_bn_backward_kernel<A><<<grid_for(rows * cols), kBlock, 0, current_stream()>>>(
        rows, cols, da, s, gamma, beta, a, mask, k, m1, m2, dz);
  });
  RECHUB_CUDA_LAUNCH_CHECK("experts_activation_bn_backward");
}

void scale_columns(int64_t rows, int64_t cols, float* m, const float* k) {
  if (rows <= 0 || cols <= 0) return;
  scale_columns_kernel<<<grid_for(rows * cols), kBlock, 0, current_stream()>>>(rows, cols, m, k);
  RECHUB_CUDA_LAUNCH_CHECK("scale_columns");
}

void gate_mix_forward(int64_t rows, int64_t h, const GateBlocks<float>& blocks, const float* gates, int64_t n_experts,
                      float* out) {
  RECHUB_CHECK(blocks.n >= 1 && blocks.n <= kMaxGateBlocks, "gate_mix_forward: " << blocks.n << " expert blocks");
  if (rows <= 0 || h <= 0) return;
  gate_mix_forward_kernel<<<grid_for(rows * h), kBlock, 0, current_stream()>>>(rows, h, blocks, gates, n_experts, out);
  RECHUB_CUDA_LAUNCH_CHECK("gate_mix_forward");
}

void gate_mix_backward(int64_t rows, int64_t h, const GateBlocks<float>& blocks, const float* gates, int64_t n_experts,
                       const float* dout, float* dlogits) {
  RECHUB_CHECK(blocks.n >= 1 && blocks.n <= kMaxGateBlocks, "gate_mix_backward: " << blocks.n << " expert blocks");
  if (rows <= 0) return;
  const int64_t grid = (rows + kWarps - 1) / kWarps;
  RECHUB_CHECK(grid <= INT32_MAX, "gate_mix_backward: " << rows << " rows exceed the grid");
  gate_mix_backward_kernel<<<static_cast<unsigned>(grid), kBlock, 0, current_stream()>>>(rows, h, blocks, gates,
                                                                                         n_experts, dout, dlogits);
  RECHUB_CUDA_LAUNCH_CHECK("gate_mix_backward");
}

// The gate's softmax over the experts: reduce.cu's softmax over [rows, n, 1].
void softmax_rows(int64_t rows, int64_t n, const float* logits, float* gates) {
  softmax_forward(logits, rows, n, 1, gates, false);
}

// The gate bias's gradient: reduce.cu's sum over the rows of [rows, cols].
void column_sums(int64_t rows, int64_t cols, const float* m, float* sums) { sum_dim(m, 1, rows, cols, sums); }

}  // namespace

const ExpertKernels<float>& expert_kernels() {
  static const ExpertKernels<float> table{&sgemm,
                                          &sgemm_strided_batched,
                                          &column_mean_var,
                                          &bn_prepare,
                                          &normalize_activate,
                                          &activation_backward,
                                          &bn_grad_columns,
                                          &activation_bn_backward,
                                          &scale_columns,
                                          &broadcast_rows,
                                          &softmax_rows,
                                          &gate_mix_forward,
                                          &gate_mix_backward,
                                          &column_sums};
  return table;
}

}  // namespace rechub::kernels::cuda
