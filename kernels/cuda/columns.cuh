#pragma once
// The column reductions of the CUDA kernels (kernels/cuda/experts.cu, kernels/cuda/batchnorm.cu):
// per-column sums over the rows, in two passes:
//   1. column_partials: block (32, 8) covers 32 adjacent columns (one warp: coalesced loads) and
//      one chunk of rows; its 8 row lanes stride the chunk, then add up in shared memory in a fixed
//      order and write one double partial per column and chunk (grid.y = chunk <= 65535);
//   2. column_partials_finish: one thread per column adds the chunks in order.
// Both orders depend on the shape only, so results are reproducible run to run. Each including
// .cu file gets its own copy (internal linkage).
#include <algorithm>
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
namespace {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;
using rechub::cuda::Scratch;

constexpr int kBlock = 256;
constexpr int kColTile = 32;                        // columns per block of a column reduction
constexpr int kRowLanes = 8;                        // row lanes per block of a column reduction
constexpr int64_t kRowsPerChunk = 256;              // rows per block (before the caps below)
constexpr int64_t kMaxChunks = 65535;               // gridDim.y limit
constexpr int64_t kMaxPartials = int64_t(1) << 20;  // doubles per partial array (8 MiB)

// Element (r, c) of a matrix seen as [rows, cols]: row-major with row stride ld when L == 1, else
// channel c of a contiguous [N, cols, L] tensor with r = n * L + l (ld = cols * L).
struct ColumnView {
  const float* p;
  int64_t ld, L;
  __device__ __forceinline__ int64_t at(int64_t r, int64_t c) const {
    return L == 1 ? r * ld + c : (r / L) * ld + c * L + r % L;
  }
};

// The terms each column reduction adds up: f(r, c, t1, t2) for every element once.
struct ShiftedMomentsTerm {  // (z - z[0, c], (z - z[0, c])^2)
  ColumnView v;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c, double& t1, double& t2) const {
    const double d = static_cast<double>(v.p[v.at(r, c)]) - static_cast<double>(v.p[v.at(0, c)]);
    t1 = d;
    t2 = d * d;
  }
};

template <class F>
__global__ void __launch_bounds__(kColTile* kRowLanes)
    column_partials(int64_t rows, int64_t cols, int64_t rows_per_chunk, F f, double* __restrict__ p1,
                    double* __restrict__ p2) {
  __shared__ double s1[kRowLanes][kColTile], s2[kRowLanes][kColTile];
  const int64_t c = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double a1 = 0, a2 = 0;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      double t1, t2;
      f(r, c, t1, t2);
      a1 += t1;
      a2 += t2;
    }
  }
  s1[threadIdx.y][threadIdx.x] = a1;
  s2[threadIdx.y][threadIdx.x] = a2;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double t1 = 0, t2 = 0;
    for (int i = 0; i < kRowLanes; ++i) {
      t1 += s1[i][threadIdx.x];
      t2 += s2[i][threadIdx.x];
    }
    p1[int64_t(blockIdx.y) * cols + c] = t1;
    if (p2) p2[int64_t(blockIdx.y) * cols + c] = t2;
  }
}

__global__ void column_partials_finish(int64_t cols, int64_t chunks, const double* __restrict__ p1,
                                       const double* __restrict__ p2, double* __restrict__ out1,
                                       double* __restrict__ out2) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += stride) {
    double t1 = 0, t2 = 0;
    for (int64_t j = 0; j < chunks; ++j) {
      t1 += p1[j * cols + c];
      if (p2) t2 += p2[j * cols + c];
    }
    out1[c] = t1;
    if (out2) out2[c] = t2;
  }
}

// out1[c] = sum_r t1(r, c) and, when out2 is non-null, out2[c] = sum_r t2(r, c) (device arrays).
template <class F>
void column_reduce(const char* what, int64_t rows, int64_t cols, const F& f, double* out1, double* out2) {
  if (cols <= 0) return;
  RECHUB_CHECK((cols + kColTile - 1) / kColTile <= INT32_MAX, what << ": " << cols << " columns exceed the grid");
  int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  chunks = std::min({chunks, kMaxChunks, std::max<int64_t>(1, kMaxPartials / cols)});
  chunks = std::max<int64_t>(chunks, 1);
  const int64_t per = rows > 0 ? (rows + chunks - 1) / chunks : 0;
  Scratch part(static_cast<size_t>(chunks * cols) * sizeof(double) * (out2 ? 2 : 1));
  double* p1 = part.as<double>();
  double* p2 = out2 ? p1 + chunks * cols : nullptr;
  const dim3 block(kColTile, kRowLanes);
  const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile), static_cast<unsigned>(chunks));
  column_partials<<<grid, block, 0, current_stream()>>>(rows, cols, per, f, p1, p2);
  RECHUB_CUDA_LAUNCH_CHECK(what);
  column_partials_finish<<<grid_for(cols), kBlock, 0, current_stream()>>>(cols, chunks, p1, p2, out1, out2);
  RECHUB_CUDA_LAUNCH_CHECK("column_partials_finish");
}

// On entry mean/var hold the shifted sums; on exit the mean and the biased variance.
__global__ void mean_var_finish(int64_t rows, int64_t cols, ColumnView v, double* __restrict__ mean,
                                double* __restrict__ var) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += stride) {
    if (rows <= 0) {
      mean[c] = var[c] = 0;
      continue;
    }
    const double inv = 1.0 / static_cast<double>(rows);
    const double m = mean[c] * inv;
    mean[c] = static_cast<double>(v.p[v.at(0, c)]) + m;
    var[c] = fmax(0.0, var[c] * inv - m * m);
  }
}

void mean_var(const char* what, int64_t rows, int64_t cols, ColumnView v, double* mean, double* var) {
  if (cols <= 0) return;
  column_reduce(what, rows, cols, ShiftedMomentsTerm{v}, mean, var);
  mean_var_finish<<<grid_for(cols), kBlock, 0, current_stream()>>>(rows, cols, v, mean, var);
  RECHUB_CUDA_LAUNCH_CHECK("mean_var_finish");
}

}  // namespace
}  // namespace rechub::kernels::cuda
