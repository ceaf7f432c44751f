// Embedding lookup over one table arena for all features in one launch, the id range check, and
// the row-sparse backward (sort-based unique-row reduction; see kernels/cuda/ops.h).
//
// Why sorting rather than atomics: atomics into a dense [V, D] buffer need V*D memory and a pass
// over it to find the touched rows; atomics into a compacted buffer still need the unique ids
// first. A stable radix sort of B*F keys gives the unique ids, a deterministic summation order
// (the CPU's) and the compacted layout at once, in a few passes over 12 bytes per id.
#include <cstdint>
#include <cub/cub.cuh>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;
using rechub::cuda::Scratch;

namespace {

constexpr int kBlock = 256;

template <class I>
__global__ void embedding_forward_kernel(const float* __restrict__ table, int64_t dim, const I* __restrict__ ids,
                                         int64_t n, float* __restrict__ out) {
  const int64_t total = n * dim, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t r = k / dim, j = k % dim;
    out[k] = table[static_cast<int64_t>(ids[r]) * dim + j];
  }
}

// dim4 = dim / 4 float4 per row; table and out 16-byte aligned.
template <class I>
__global__ void embedding_forward_vec4(const float4* __restrict__ table, int64_t dim4, const I* __restrict__ ids,
                                       int64_t n, float4* __restrict__ out) {
  const int64_t total = n * dim4, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t r = k / dim4, j = k % dim4;
    out[k] = table[static_cast<int64_t>(ids[r]) * dim4 + j];
  }
}

template <class I>
__global__ void count_invalid_kernel(const I* __restrict__ ids, int64_t n, int64_t nfeat,
                                     const int64_t* __restrict__ ranges, int64_t rows,
                                     unsigned long long* __restrict__ count) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  unsigned long long c = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const int64_t id = static_cast<int64_t>(ids[i]);
    const int64_t f = i % nfeat;
    const int64_t lo = ranges ? ranges[2 * f] : 0, hi = ranges ? ranges[2 * f + 1] : rows;
    c += (id < lo || id >= hi);
  }
  if (c) atomicAdd(count, c);
}

template <class I>
__global__ void widen_ids(const I* __restrict__ ids, int64_t n, int64_t* __restrict__ keys, int64_t* __restrict__ pos) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    keys[i] = static_cast<int64_t>(ids[i]);
    pos[i] = i;
  }
}

// One warp per unique row u: rows_out[u, :] = sum over its run of grad_out[pos[p], :], in run order.
__global__ void sum_runs(const float* __restrict__ grad_out, int64_t dim, const int64_t* __restrict__ pos,
                         const int64_t* __restrict__ run_start, const int64_t* __restrict__ run_len, int64_t u,
                         float* __restrict__ rows_out) {
  const int64_t run = blockIdx.x * int64_t(kBlock / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (run >= u) return;
  const int64_t s = run_start[run], len = run_len[run];
  for (int64_t j = lane; j < dim; j += 32) {
    float acc = 0.f;
    for (int64_t p = s; p < s + len; ++p) acc += grad_out[pos[p] * dim + j];
    rows_out[run * dim + j] = acc;
  }
}

int end_bit_for(int64_t rows) {
  int bits = 1;
  while (bits < 63 && (int64_t(1) << bits) < rows) ++bits;
  return bits;
}

template <class I>
void forward_impl(const float* table, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, float* out) {
  const int64_t n = batch * nfeat;
  if (n * dim == 0) return;
  cudaStream_t st = current_stream();
  const bool vec =
      dim % 4 == 0 && (reinterpret_cast<uintptr_t>(table) & 15) == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0;
  if (vec)
    embedding_forward_vec4<<<grid_for(n * dim / 4, kBlock), kBlock, 0, st>>>(
        reinterpret_cast<const float4*>(table), dim / 4, ids, n, reinterpret_cast<float4*>(out));
  else
    embedding_forward_kernel<<<grid_for(n * dim, kBlock), kBlock, 0, st>>>(table, dim, ids, n, out);
  RECHUB_CUDA_LAUNCH_CHECK("embedding_forward");
}

template <class I>
int64_t count_invalid_impl(const I* ids, int64_t batch, int64_t nfeat, const int64_t* ranges, int64_t rows) {
  const int64_t n = batch * nfeat;
  if (n == 0) return 0;
  cudaStream_t st = current_stream();
  Scratch count(sizeof(unsigned long long));
  RECHUB_CUDA_CHECK(cudaMemsetAsync(count.get(), 0, sizeof(unsigned long long), st));
  count_invalid_kernel<<<grid_for(n, kBlock), kBlock, 0, st>>>(ids, n, nfeat, ranges, rows,
                                                               count.as<unsigned long long>());
  RECHUB_CUDA_LAUNCH_CHECK("embedding_count_invalid");
  unsigned long long h = 0;
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(&h, count.get(), sizeof(h), cudaMemcpyDeviceToHost, st));
  RECHUB_CUDA_CHECK(cudaStreamSynchronize(st));
  return static_cast<int64_t>(h);
}

template <class I>
int64_t backward_impl(const float* grad_out, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, int64_t rows,
                      int64_t* uniq_out, float* rows_out) {
  const int64_t n = batch * nfeat;
  if (n == 0) return 0;
  RECHUB_CHECK(n <= INT32_MAX, "CUDA embedding backward: " << n << " ids exceed CUB's 32-bit item count");
  const int items = static_cast<int>(n);
  cudaStream_t st = current_stream();
  Scratch keys(sizeof(int64_t) * n), pos(sizeof(int64_t) * n), sorted_keys(sizeof(int64_t) * n),
      sorted_pos(sizeof(int64_t) * n), run_len(sizeof(int64_t) * n), run_start(sizeof(int64_t) * n),
      num_runs(sizeof(int64_t));
  widen_ids<<<grid_for(n, kBlock), kBlock, 0, st>>>(ids, n, keys.as<int64_t>(), pos.as<int64_t>());
  RECHUB_CUDA_LAUNCH_CHECK("widen_ids");

  const int end_bit = end_bit_for(rows);
  size_t sort_bytes = 0, rle_bytes = 0, scan_bytes = 0;
  RECHUB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys.as<int64_t>(), sorted_keys.as<int64_t>(),
                                                    pos.as<int64_t>(), sorted_pos.as<int64_t>(), items, 0, end_bit,
                                                    st));
  RECHUB_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(nullptr, rle_bytes, sorted_keys.as<int64_t>(), uniq_out,
                                                       run_len.as<int64_t>(), num_runs.as<int64_t>(), items, st));
  RECHUB_CUDA_CHECK(
      cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, run_len.as<int64_t>(), run_start.as<int64_t>(), items, st));
  size_t temp_bytes = sort_bytes;
  if (rle_bytes > temp_bytes) temp_bytes = rle_bytes;
  if (scan_bytes > temp_bytes) temp_bytes = scan_bytes;
  Scratch temp(temp_bytes);

  RECHUB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), sort_bytes, keys.as<int64_t>(),
                                                    sorted_keys.as<int64_t>(), pos.as<int64_t>(),
                                                    sorted_pos.as<int64_t>(), items, 0, end_bit, st));
  RECHUB_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(temp.get(), rle_bytes, sorted_keys.as<int64_t>(), uniq_out,
                                                       run_len.as<int64_t>(), num_runs.as<int64_t>(), items, st));
  int64_t u = 0;
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(&u, num_runs.get(), sizeof(u), cudaMemcpyDeviceToHost, st));
  RECHUB_CUDA_CHECK(cudaStreamSynchronize(st));
  RECHUB_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.get(), scan_bytes, run_len.as<int64_t>(),
                                                  run_start.as<int64_t>(), static_cast<int>(u), st));
  if (dim > 0) {
    sum_runs<<<grid_for(u, kBlock / 32), kBlock, 0, st>>>(grad_out, dim, sorted_pos.as<int64_t>(),
                                                          run_start.as<int64_t>(), run_len.as<int64_t>(), u, rows_out);
    RECHUB_CUDA_LAUNCH_CHECK("embedding sum_runs");
  }
  return u;
}

}  // namespace

void embedding_forward(const float* table, int64_t dim, const int32_t* ids, int64_t batch, int64_t nfeat, float* out) {
  forward_impl(table, dim, ids, batch, nfeat, out);
}
void embedding_forward(const float* table, int64_t dim, const int64_t* ids, int64_t batch, int64_t nfeat, float* out) {
  forward_impl(table, dim, ids, batch, nfeat, out);
}
int64_t embedding_count_invalid(const int32_t* ids, int64_t batch, int64_t nfeat, const int64_t* ranges, int64_t rows) {
  return count_invalid_impl(ids, batch, nfeat, ranges, rows);
}
int64_t embedding_count_invalid(const int64_t* ids, int64_t batch, int64_t nfeat, const int64_t* ranges, int64_t rows) {
  return count_invalid_impl(ids, batch, nfeat, ranges, rows);
}
int64_t embedding_backward(const float* grad_out, int64_t dim, const int32_t* ids, int64_t batch, int64_t nfeat,
                           int64_t rows, int64_t* uniq_out, float* rows_out) {
  return backward_impl(grad_out, dim, ids, batch, nfeat, rows, uniq_out, rows_out);
}
int64_t embedding_backward(const float* grad_out, int64_t dim, const int64_t* ids, int64_t batch, int64_t nfeat,
                           int64_t rows, int64_t* uniq_out, float* rows_out) {
  return backward_impl(grad_out, dim, ids, batch, nfeat, rows, uniq_out, rows_out);
}

}  // namespace rechub::kernels::cuda
