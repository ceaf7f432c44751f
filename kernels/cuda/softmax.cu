// Softmax and log-softmax forward and backward over a dim, the tensor viewed as [outer, n, inner]
// around it: inner == 1 (the last dim) gives one warp per row with coalesced loads; inner > 1 one
// thread per (outer, inner) pair. The formulas of kernels/cpu/softmax.cpp; declared in ops.h.
#include <cfloat>
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;

namespace {

constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / 32;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum_f(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row: max, sum of exp(x - max), then the outputs.
__global__ void softmax_rows(const float* __restrict__ x, int64_t rows, int64_t n, float* __restrict__ y, bool log) {
  const int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* px = x + row * n;
  float* py = y + row * n;
  float m = -INFINITY;
  for (int64_t i = lane; i < n; i += 32) m = fmaxf(m, px[i]);
  m = warp_max(m);
  float s = 0.f;
  for (int64_t i = lane; i < n; i += 32) s += expf(px[i] - m);
  s = warp_sum_f(s);
  if (log) {
    const float ls = m + logf(s);
    for (int64_t i = lane; i < n; i += 32) py[i] = px[i] - ls;
  } else {
    const float inv = 1.f / s;
    for (int64_t i = lane; i < n; i += 32) py[i] = expf(px[i] - m) * inv;
  }
}

__global__ void softmax_strided(const float* __restrict__ x, int64_t outer, int64_t n, int64_t inner,
                                float* __restrict__ y, bool log) {
  const int64_t total = outer * inner, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t o = k / inner, j = k % inner;
    const float* px = x + o * n * inner + j;
    float* py = y + o * n * inner + j;
    float m = -INFINITY;
    for (int64_t i = 0; i < n; ++i) m = fmaxf(m, px[i * inner]);
    float s = 0.f;
    for (int64_t i = 0; i < n; ++i) s += expf(px[i * inner] - m);
    const float ls = m + logf(s), inv = 1.f / s;
    for (int64_t i = 0; i < n; ++i) py[i * inner] = log ? px[i * inner] - ls : expf(px[i * inner] - m) * inv;
  }
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
__global__ void softmax_backward_rows(const float* __restrict__ y, const float* __restrict__ dy, int64_t rows,
                                      int64_t n, float* __restrict__ dx, bool log) {
  const int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *py = y + row * n, *pg = dy + row * n;
  float* pd = dx + row * n;
  float s = 0.f;
  for (int64_t i = lane; i < n; i += 32) s += log ? pg[i] : pg[i] * py[i];
  s = warp_sum_f(s);
  for (int64_t i = lane; i < n; i += 32) pd[i] = log ? pg[i] - expf(py[i]) * s : py[i] * (pg[i] - s);
}

__global__ void softmax_backward_strided(const float* __restrict__ y, const float* __restrict__ dy, int64_t outer,
                                         int64_t n, int64_t inner, float* __restrict__ dx, bool log) {
  const int64_t total = outer * inner, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t o = k / inner, j = k % inner, base = o * n * inner + j;
    float s = 0.f;
    for (int64_t i = 0; i < n; ++i) s += log ? dy[base + i * inner] : dy[base + i * inner] * y[base + i * inner];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t e = base + i * inner;
      dx[e] = log ? dy[e] - expf(y[e]) * s : y[e] * (dy[e] - s);
    }
  }
}

unsigned warp_rows_grid(int64_t rows) { return grid_for(rows, kWarpsPerBlock); }

}  // namespace

void softmax_forward(const float* x, int64_t outer, int64_t n, int64_t inner, float* y, bool log) {
  if (outer * inner * n == 0) return;
  cudaStream_t st = current_stream();
  if (inner == 1) {
    softmax_rows<<<warp_rows_grid(outer), kBlock, 0, st>>>(x, outer, n, y, log);
    RECHUB_CUDA_LAUNCH_CHECK("softmax_rows");
  } else {
    softmax_strided<<<grid_for(outer * inner, kBlock), kBlock, 0, st>>>(x, outer, n, inner, y, log);
    RECHUB_CUDA_LAUNCH_CHECK("softmax_strided");
  }
}

void softmax_backward(const float* y, const float* dy, int64_t outer, int64_t n, int64_t inner, float* dx, bool log) {
  if (outer * inner * n == 0) return;
  cudaStream_t st = current_stream();
  if (inner == 1) {
    softmax_backward_rows<<<warp_rows_grid(outer), kBlock, 0, st>>>(y, dy, outer, n, dx, log);
    RECHUB_CUDA_LAUNCH_CHECK("softmax_backward_rows");
  } else {
    softmax_backward_strided<<<grid_for(outer * inner, kBlock), kBlock, 0, st>>>(y, dy, outer, n, inner, dx, log);
    RECHUB_CUDA_LAUNCH_CHECK("softmax_backward_strided");
  }
}

}  // namespace rechub::kernels::cuda
