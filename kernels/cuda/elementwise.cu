// Elementwise kernels: broadcasting binary ops (16-byte vector loads on the contiguous same-shape
// path), unary maps and their derivatives, fills and the bias broadcast of linear. Formulas match
// kernels/cpu/ element for element (the losses are in loss.cu).
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;

namespace {

constexpr int kMaxRank = 8;
constexpr int kBlock = 256;

template <BinaryOp OP>
__device__ __forceinline__ float apply(float a, float b) {
  if constexpr (OP == BinaryOp::add) return a + b;
  if constexpr (OP == BinaryOp::sub) return a - b;
  if constexpr (OP == BinaryOp::mul) return a * b;
  return a / b;
}

template <BinaryOp OP>
__global__ void binary_same_shape(int64_t n, const float* __restrict__ a, const float* __restrict__ b,
                                  float* __restrict__ out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) out[i] = apply<OP>(a[i], b[i]);
}

// n4 float4 groups; all three pointers 16-byte aligned.
template <BinaryOp OP>
__global__ void binary_same_shape_vec4(int64_t n4, const float4* __restrict__ a, const float4* __restrict__ b,
                                       float4* __restrict__ out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += stride) {
    const float4 x = a[i], y = b[i];
    out[i] = make_float4(apply<OP>(x.x, y.x), apply<OP>(x.y, y.y), apply<OP>(x.z, y.z), apply<OP>(x.w, y.w));
  }
}

struct BroadcastDims {
  int rank;
  int64_t size[kMaxRank];
  int64_t stride_a[kMaxRank];  // 0 along broadcast dims
  int64_t stride_b[kMaxRank];
};

template <BinaryOp OP>
__global__ void binary_broadcast(int64_t n, BroadcastDims d, const float* __restrict__ a, const float* __restrict__ b,
                                 float* __restrict__ out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int k = d.rank - 1; k >= 0; --k) {
      const int64_t c = rem % d.size[k];
      rem /= d.size[k];
      oa += c * d.stride_a[k];
      ob += c * d.stride_b[k];
    }
    out[i] = apply<OP>(a[oa], b[ob]);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <BinaryOp OP>
void launch_binary(const std::vector<int64_t>& os, const float* a, const std::vector<int64_t>& as, const float* b,
                   const std::vector<int64_t>& bs, float* out) {
  int64_t n = 1;
  for (int64_t s : os) n *= s;
  if (n == 0) return;
  cudaStream_t st = current_stream();
  if (as == os && bs == os) {
    if (aligned16(a) && aligned16(b) && aligned16(out)) {
      const int64_t n4 = n / 4;
      if (n4 > 0)
        binary_same_shape_vec4<OP><<<grid_for(n4, kBlock), kBlock, 0, st>>>(
            n4, reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b), reinterpret_cast<float4*>(out));
      if (n % 4) binary_same_shape<OP><<<1, 32, 0, st>>>(n % 4, a + n4 * 4, b + n4 * 4, out + n4 * 4);
    } else {
      binary_same_shape<OP><<<grid_for(n, kBlock), kBlock, 0, st>>>(n, a, b, out);
    }
    RECHUB_CUDA_LAUNCH_CHECK("binary_same_shape");
    return;
  }
  RECHUB_CHECK(os.size() <= kMaxRank, "CUDA broadcast: rank " << os.size() << " exceeds " << kMaxRank);
  BroadcastDims d{};
  d.rank = static_cast<int>(os.size());
  int64_t sa = 1, sb = 1;
  for (int k = d.rank - 1; k >= 0; --k) {
    d.size[k] = os[k];
    d.stride_a[k] = as[k] == 1 ? 0 : sa;
    d.stride_b[k] = bs[k] == 1 ? 0 : sb;
    sa *= as[k];
    sb *= bs[k];
  }
  binary_broadcast<OP><<<grid_for(n, kBlock), kBlock, 0, st>>>(n, d, a, b, out);
  RECHUB_CUDA_LAUNCH_CHECK("binary_broadcast");
}

// Scalar ops compute in double like the CPU lambdas (x + s with s a double), then round.
__device__ __forceinline__ float unary_f(Unary op, float x, double p0, double p1) {
  switch (op) {
    case Unary::neg:
      return -x;
    case Unary::exp:
      return expf(x);
    case Unary::log:
      return logf(x);
    case Unary::sqrt:
      return sqrtf(x);
    case Unary::abs:
      return fabsf(x);
    case Unary::relu:
      return x > 0.f ? x : 0.f;
    case Unary::sigmoid:
      return x >= 0.f ? 1.f / (1.f + expf(-x)) : expf(x) / (1.f + expf(x));
    case Unary::tanh:
      return tanhf(x);
    case Unary::add:
      return static_cast<float>(double(x) + p0);
    case Unary::mul:
      return static_cast<float>(double(x) * p0);
    case Unary::rsub:
      return static_cast<float>(p0 - double(x));
    case Unary::rdiv:
      return static_cast<float>(p0 / double(x));
    case Unary::pow:
      return static_cast<float>(pow(double(x), p0));
    case Unary::clamp:
      return isnan(x) ? x : fminf(fmaxf(x, float(p0)), float(p1));
    case Unary::leaky_relu:
      return x > 0.f ? x : x * float(p0);
  }
  return x;
}

// f'(x) (or f' expressed through y = f(x)), in double where the CPU lambda is.
__device__ __forceinline__ float unary_df(Unary op, float x, float y, double p0, double p1) {
  switch (op) {
    case Unary::neg:
      return -1.f;
    case Unary::exp:
      return y;
    case Unary::log:
      return static_cast<float>(1.0 / double(x));
    case Unary::sqrt:
      return static_cast<float>(0.5 / double(y));
    case Unary::abs:
      return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case Unary::relu:
      return x > 0.f ? 1.f : 0.f;
    case Unary::sigmoid:
      return y * (1.f - y);
    case Unary::tanh:
      return 1.f - y * y;
    case Unary::add:
      return 1.f;
    case Unary::mul:
      return static_cast<float>(p0);
    case Unary::rsub:
      return -1.f;
    case Unary::rdiv:
      return static_cast<float>(-p0 / (double(x) * double(x)));
    case Unary::pow:
      return p0 == 0 ? 0.f : static_cast<float>(p0 * pow(double(x), p0 - 1));
    case Unary::clamp:
      return double(x) >= p0 && double(x) <= p1 ? 1.f : 0.f;
    case Unary::leaky_relu:
      return x > 0.f ? 1.f : static_cast<float>(p0);
  }
  return 0.f;
}

__global__ void unary_forward_kernel(Unary op, int64_t n, const float* __restrict__ x, float* __restrict__ y, double p0,
                                     double p1) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) y[i] = unary_f(op, x[i], p0, p1);
}

__global__ void unary_backward_kernel(Unary op, int64_t n, const float* __restrict__ g, const float* __restrict__ x,
                                      const float* __restrict__ y, float* __restrict__ dx, double p0, double p1) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    dx[i] = g[i] * unary_df(op, x ? x[i] : 0.f, y ? y[i] : 0.f, p0, p1);
}

template <class T>
__global__ void fill_kernel(T* p, int64_t n, T v) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) p[i] = v;
}

__global__ void broadcast_rows_kernel(const float* __restrict__ bias, int64_t rows, int64_t cols,
                                      float* __restrict__ y) {
  const int64_t n = rows * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) y[i] = bias[i % cols];
}

}  // namespace

void broadcast_binary(BinaryOp op, const std::vector<int64_t>& os, const float* a, const std::vector<int64_t>& as,
                      const float* b, const std::vector<int64_t>& bs, float* out) {
  switch (op) {
    case BinaryOp::add:
      launch_binary<BinaryOp::add>(os, a, as, b, bs, out);
      break;
    case BinaryOp::sub:
      launch_binary<BinaryOp::sub>(os, a, as, b, bs, out);
      break;
    case BinaryOp::mul:
      launch_binary<BinaryOp::mul>(os, a, as, b, bs, out);
      break;
    case BinaryOp::div:
      launch_binary<BinaryOp::div>(os, a, as, b, bs, out);
      break;
  }
}

void unary_forward(Unary op, int64_t n, const float* x, float* y, double p0, double p1) {
  if (n == 0) return;
  unary_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(op, n, x, y, p0, p1);
  RECHUB_CUDA_LAUNCH_CHECK("unary_forward");
}

void unary_backward(Unary op, int64_t n, const float* g, const float* x, const float* y, float* dx, double p0,
                    double p1) {
  if (n == 0) return;
  unary_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(op, n, g, x, y, dx, p0, p1);
  RECHUB_CUDA_LAUNCH_CHECK("unary_backward");
}

void fill(void* p, int64_t n, int elem_size, bool is_float, double value) {
  if (n == 0) return;
  cudaStream_t st = current_stream();
  if (value == 0.0) {  // all-zero bytes for every dtype
    RECHUB_CUDA_CHECK(cudaMemsetAsync(p, 0, static_cast<size_t>(n) * elem_size, st));
    return;
  }
  const unsigned g = grid_for(n, kBlock);
  if (elem_size == 4 && is_float)
    fill_kernel<<<g, kBlock, 0, st>>>(static_cast<float*>(p), n, static_cast<float>(value));
  else if (elem_size == 4)
    fill_kernel<<<g, kBlock, 0, st>>>(static_cast<int32_t*>(p), n, static_cast<int32_t>(value));
  else if (is_float)
    fill_kernel<<<g, kBlock, 0, st>>>(static_cast<double*>(p), n, value);
  else
    fill_kernel<<<g, kBlock, 0, st>>>(static_cast<int64_t*>(p), n, static_cast<int64_t>(value));
  RECHUB_CUDA_LAUNCH_CHECK("fill");
}

void broadcast_rows(const float* bias, int64_t rows, int64_t cols, float* y) {
  if (rows * cols == 0) return;
  broadcast_rows_kernel<<<grid_for(rows * cols, kBlock), kBlock, 0, current_stream()>>>(bias, rows, cols, y);
  RECHUB_CUDA_LAUNCH_CHECK("broadcast_rows");
}

}  // namespace rechub::kernels::cuda
