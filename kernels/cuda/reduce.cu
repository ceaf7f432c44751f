// Reductions (sum over all, sum/max along a dim, sum_to for broadcast gradients; softmax is in
// softmax.cu). A tensor is viewed as [outer, n, inner] around the reduced
// dim: inner == 1 (the last dim, the common case) gives one warp per row with coalesced loads;
// inner > 1 gives one thread per (outer, inner) pair, coalesced across inner. Sums accumulate in
// double, like the CPU's row sums, so results do not depend on the launch shape beyond rounding.
#include <cfloat>
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;
using rechub::cuda::Scratch;

namespace {

constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / 32;

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double part[kWarpsPerBlock];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) part[w] = v;
  __syncthreads();
  v = threadIdx.x < kWarpsPerBlock ? part[threadIdx.x] : 0.0;
  if (w == 0) v = warp_sum(v);
  return v;
}

__global__ void sum_partials(const float* __restrict__ a, int64_t n, bool square, double* __restrict__ partial) {
  double s = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const double x = a[i];
    s += square ? x * x : x;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_finish(const double* __restrict__ partial, int n, float* __restrict__ out) {
  double s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = static_cast<float>(s);
}

// One warp per row of n contiguous values.
__global__ void sum_rows(const float* __restrict__ a, int64_t rows, int64_t n, float* __restrict__ out) {
  const int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* p = a + row * n;
  double s = 0;
  for (int64_t i = lane; i < n; i += 32) s += p[i];
  s = warp_sum(s);
  if (lane == 0) out[row] = static_cast<float>(s);
}

__global__ void sum_strided(const float* __restrict__ a, int64_t outer, int64_t n, int64_t inner,
                            float* __restrict__ out) {
  const int64_t total = outer * inner, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t o = k / inner, j = k % inner;
    const float* p = a + o * n * inner + j;
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += p[i * inner];
    out[k] = static_cast<float>(s);
  }
}

// (v, i) beats (bv, bi) under PyTorch's max: NaN wins, then the larger value, then the lower index.
__device__ __forceinline__ bool max_better(float v, int64_t i, float bv, int64_t bi) {
  const bool vn = isnan(v), bn = isnan(bv);
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}

__global__ void max_rows(const float* __restrict__ a, int64_t rows, int64_t n, float* __restrict__ out,
                         int64_t* __restrict__ arg) {
  const int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* p = a + row * n;
  float bv = -INFINITY;
  int64_t bi = INT64_MAX;
  for (int64_t i = lane; i < n; i += 32)
    if (max_better(p[i], i, bv, bi)) bv = p[i], bi = i;
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_down_sync(0xffffffffu, bv, o);
    const int64_t i = __shfl_down_sync(0xffffffffu, bi, o);
    if (max_better(v, i, bv, bi)) bv = v, bi = i;
  }
  if (lane == 0) {
    out[row] = bv;
    if (arg) arg[row] = bi;
  }
}

__global__ void max_strided(const float* __restrict__ a, int64_t outer, int64_t n, int64_t inner,
                            float* __restrict__ out, int64_t* __restrict__ arg) {
  const int64_t total = outer * inner, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t o = k / inner, j = k % inner;
    const float* p = a + o * n * inner + j;
    float bv = p[0];
    int64_t bi = 0;
    for (int64_t i = 1; i < n && !isnan(bv); ++i) {
      const float v = p[i * inner];
      if (v > bv || isnan(v)) bv = v, bi = i;
    }
    out[k] = bv;
    if (arg) arg[k] = bi;
  }
}

__global__ void max_backward_kernel(const float* __restrict__ g, const int64_t* __restrict__ arg, int64_t outer,
                                    int64_t n, int64_t inner, float* __restrict__ gx) {
  const int64_t total = outer * inner, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t o = k / inner, j = k % inner;
    gx[(o * n + arg[k]) * inner + j] = g[k];
  }
}

unsigned warp_rows_grid(int64_t rows) { return grid_for(rows, kWarpsPerBlock); }

}  // namespace

void sum_all(const float* a, int64_t n, float* out, bool square) {
  cudaStream_t st = current_stream();
  const int blocks = static_cast<int>(n == 0 ? 1 : (n + kBlock - 1) / kBlock < 1024 ? (n + kBlock - 1) / kBlock : 1024);
  Scratch partial(sizeof(double) * blocks);
  sum_partials<<<blocks, kBlock, 0, st>>>(a, n, square, partial.as<double>());
  RECHUB_CUDA_LAUNCH_CHECK("sum_partials");
  sum_finish<<<1, kBlock, 0, st>>>(partial.as<double>(), blocks, out);
  RECHUB_CUDA_LAUNCH_CHECK("sum_finish");
}

void sum_dim(const float* a, int64_t outer, int64_t n, int64_t inner, float* out) {
  if (outer * inner == 0) return;
  cudaStream_t st = current_stream();
  if (inner == 1) {
    sum_rows<<<warp_rows_grid(outer), kBlock, 0, st>>>(a, outer, n, out);
    RECHUB_CUDA_LAUNCH_CHECK("sum_rows");
  } else {
    sum_strided<<<grid_for(outer * inner, kBlock), kBlock, 0, st>>>(a, outer, n, inner, out);
    RECHUB_CUDA_LAUNCH_CHECK("sum_strided");
  }
}

// One sum_dim pass per broadcast dim, through scratch buffers; a size-1 dim does not change the
// memory layout, so after the last pass the data has the layout of to_shape.
void sum_to(const float* in, const std::vector<int64_t>& from, float* out, const std::vector<int64_t>& to) {
  std::vector<int64_t> cur = from;
  std::vector<size_t> dims;
  for (size_t d = 0; d < from.size(); ++d)
    if (to[d] == 1 && from[d] != 1) dims.push_back(d);
  int64_t total = 1;
  for (int64_t s : from) total *= s;
  if (dims.empty()) {
    RECHUB_CUDA_CHECK(cudaMemcpyAsync(out, in, sizeof(float) * total, cudaMemcpyDeviceToDevice, current_stream()));
    return;
  }
  Scratch tmp(sizeof(float) * (total > 0 ? total : 1));
  const float* src = in;
  for (size_t k = 0; k < dims.size(); ++k) {
    const size_t d = dims[k];
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < d; ++i) outer *= cur[i];
    for (size_t i = d + 1; i < cur.size(); ++i) inner *= cur[i];
    // Alternate between the scratch buffer and `out` so that the last pass lands in `out`.
    float* dst = ((dims.size() - 1 - k) % 2 == 0) ? out : tmp.as<float>();
    if (outer * inner > 0 && cur[d] == 0)
      fill(dst, outer * inner, 4, true, 0.0);
    else
      sum_dim(src, outer, cur[d], inner, dst);
    cur[d] = 1;
    src = dst;
  }
}

void max_dim(const float* a, int64_t outer, int64_t n, int64_t inner, float* out, int64_t* argmax) {
  if (outer * inner == 0) return;
  cudaStream_t st = current_stream();
  if (inner == 1) {
    max_rows<<<warp_rows_grid(outer), kBlock, 0, st>>>(a, outer, n, out, argmax);
    RECHUB_CUDA_LAUNCH_CHECK("max_rows");
  } else {
    max_strided<<<grid_for(outer * inner, kBlock), kBlock, 0, st>>>(a, outer, n, inner, out, argmax);
    RECHUB_CUDA_LAUNCH_CHECK("max_strided");
  }
}

void max_dim_backward(const float* g, const int64_t* argmax, int64_t outer, int64_t n, int64_t inner, float* gx) {
  if (outer * inner == 0) return;
  max_backward_kernel<<<grid_for(outer * inner, kBlock), kBlock, 0, current_stream()>>>(g, argmax, outer, n, inner, gx);
  RECHUB_CUDA_LAUNCH_CHECK("max_dim_backward");
}

}  // namespace rechub::kernels::cuda
