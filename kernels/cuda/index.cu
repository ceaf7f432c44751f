// Indexing kernels: block copies (concat/split/narrow), row gathers and scatters, PyTorch's
// gather along dim 0 and its backward, the index range check, and the 2-D transpose.
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

template <class T>
__global__ void gather_rows_kernel(const T* __restrict__ src, const int64_t* __restrict__ idx, int64_t n, int64_t d,
                                   T* __restrict__ out) {
  const int64_t total = n * d, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t i = k / d, j = k % d;
    out[k] = src[idx[i] * d + j];
  }
}

__global__ void scatter_add_rows_kernel(const float* __restrict__ src, const int64_t* __restrict__ idx, int64_t n,
                                        int64_t d, float* __restrict__ out) {
  const int64_t total = n * d, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t i = k / d, j = k % d;
    atomicAdd(out + idx[i] * d + j, src[k]);
  }
}

__global__ void gather_dim0_kernel(const float* __restrict__ a, int64_t ac, const int64_t* __restrict__ idx, int64_t R,
                                   int64_t C, float* __restrict__ out) {
  const int64_t total = R * C, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride)
    out[k] = a[idx[k] * ac + k % C];
}

__global__ void gather_dim0_backward_kernel(const float* __restrict__ g, const int64_t* __restrict__ idx, int64_t R,
                                            int64_t C, int64_t ac, float* __restrict__ gx) {
  const int64_t total = R * C, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride)
    atomicAdd(gx + idx[k] * ac + k % C, g[k]);
}

__global__ void count_out_of_range_kernel(const int64_t* __restrict__ idx, int64_t n, int64_t rows,
                                          unsigned long long* __restrict__ count) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  unsigned long long c = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    c += (idx[i] < 0 || idx[i] >= rows);
  if (c) atomicAdd(count, c);
}

// 32x32 tiles through shared memory (padded against bank conflicts): reads and writes coalesced.
__global__ void transpose_kernel(const float* __restrict__ a, int64_t rows, int64_t cols, float* __restrict__ out) {
  __shared__ float tile[32][33];
  const int64_t c0 = int64_t(blockIdx.x) * 32, r0 = int64_t(blockIdx.y) * 32;
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    const int64_t r = r0 + k, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[k][threadIdx.x] = a[r * cols + c];
  }
  __syncthreads();
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    const int64_t c = c0 + k, r = r0 + threadIdx.x;  // out[c, r] = a[r, c]
    if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][k];
  }
}

}  // namespace

// Each of the `outer` blocks is one contiguous run of bytes: a strided 2-D memcpy.
void copy_block(const void* src, void* dst, int64_t outer, int64_t n_src, int64_t n_dst, int64_t at, int64_t inner,
                int64_t es, bool extract) {
  const size_t row = static_cast<size_t>((extract ? n_dst : n_src) * inner * es);
  if (outer == 0 || row == 0) return;
  const size_t spitch = static_cast<size_t>(n_src * inner * es), dpitch = static_cast<size_t>(n_dst * inner * es);
  const char* s = static_cast<const char*>(src) + (extract ? at * inner * es : 0);
  char* d = static_cast<char*>(dst) + (extract ? 0 : at * inner * es);
  RECHUB_CUDA_CHECK(cudaMemcpy2DAsync(d, dpitch, s, spitch, row, static_cast<size_t>(outer), cudaMemcpyDeviceToDevice,
                                      current_stream()));
}

void gather_rows(const void* src, const int64_t* idx, int64_t n, int64_t d, int64_t es, void* out) {
  if (n * d == 0) return;
  cudaStream_t st = current_stream();
  if (es == 4)
    gather_rows_kernel<<<grid_for(n * d, kBlock), kBlock, 0, st>>>(static_cast<const uint32_t*>(src), idx, n, d,
                                                                   static_cast<uint32_t*>(out));
  else if (es == 8)
    gather_rows_kernel<<<grid_for(n * d, kBlock), kBlock, 0, st>>>(static_cast<const uint64_t*>(src), idx, n, d,
                                                                   static_cast<uint64_t*>(out));
  else
    RECHUB_FAIL("CUDA gather_rows: unsupported element size " << es);
  RECHUB_CUDA_LAUNCH_CHECK("gather_rows");
}

void scatter_add_rows(const float* src, const int64_t* idx, int64_t n, int64_t d, float* out) {
  if (n * d == 0) return;
  scatter_add_rows_kernel<<<grid_for(n * d, kBlock), kBlock, 0, current_stream()>>>(src, idx, n, d, out);
  RECHUB_CUDA_LAUNCH_CHECK("scatter_add_rows");
}

void gather_dim0(const float* a, int64_t ac, const int64_t* idx, int64_t R, int64_t C, float* out) {
  if (R * C == 0) return;
  gather_dim0_kernel<<<grid_for(R * C, kBlock), kBlock, 0, current_stream()>>>(a, ac, idx, R, C, out);
  RECHUB_CUDA_LAUNCH_CHECK("gather_dim0");
}

void gather_dim0_backward(const float* g, const int64_t* idx, int64_t R, int64_t C, int64_t ac, float* gx) {
  if (R * C == 0) return;
  gather_dim0_backward_kernel<<<grid_for(R * C, kBlock), kBlock, 0, current_stream()>>>(g, idx, R, C, ac, gx);
  RECHUB_CUDA_LAUNCH_CHECK("gather_dim0_backward");
}

int64_t count_out_of_range(const int64_t* idx, int64_t n, int64_t rows) {
  if (n == 0) return 0;
  cudaStream_t st = current_stream();
  Scratch count(sizeof(unsigned long long));
  RECHUB_CUDA_CHECK(cudaMemsetAsync(count.get(), 0, sizeof(unsigned long long), st));
  count_out_of_range_kernel<<<grid_for(n, kBlock), kBlock, 0, st>>>(idx, n, rows, count.as<unsigned long long>());
  RECHUB_CUDA_LAUNCH_CHECK("count_out_of_range");
  unsigned long long h = 0;
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(&h, count.get(), sizeof(h), cudaMemcpyDeviceToHost, st));
  RECHUB_CUDA_CHECK(cudaStreamSynchronize(st));
  return static_cast<int64_t>(h);
}

void transpose(const float* a, int64_t rows, int64_t cols, float* out) {
  if (rows * cols == 0) return;
  RECHUB_CHECK((rows + 31) / 32 <= 65535, "CUDA transpose: " << rows << " rows exceed the grid limit");
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32)), block(32, 8);
  transpose_kernel<<<grid, block, 0, current_stream()>>>(a, rows, cols, out);
  RECHUB_CUDA_LAUNCH_CHECK("transpose");
}

}  // namespace rechub::kernels::cuda
