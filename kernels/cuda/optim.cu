// Fused optimizer kernels: one pass per parameter reads the parameter, its gradient and state
// once and writes them back once. Element formulas follow torch.optim (see optim.h), evaluated in
// f32 like PyTorch's f32 parameters, with the step-size scalars computed in double on the host.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/optim.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;

namespace {

constexpr int kBlock = 256;

__device__ __forceinline__ void adam_element(float& p, float g, float& m, float& v, float b1, float b2, float wd,
                                             float decay, bool decoupled, float step_size, float bc2_sqrt, float eps) {
  if (wd != 0.f) {
    if (decoupled)
      p = p * decay;
    else
      g = g + wd * p;
  }
  m = m + (1.f - b1) * (g - m);  // torch: exp_avg.lerp_(grad, 1 - beta1)
  v = b2 * v + (1.f - b2) * g * g;
  const float denom = sqrtf(v) / bc2_sqrt + eps;
  p = p - step_size * (m / denom);
}

__global__ void adam_dense_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                  float* __restrict__ v, int64_t n, float b1, float b2, float wd, float decay,
                                  bool decoupled, float step_size, float bc2_sqrt, float eps) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    adam_element(p[i], g[i], m[i], v[i], b1, b2, wd, decay, decoupled, step_size, bc2_sqrt, eps);
}

__global__ void adam_sparse_kernel(float* __restrict__ p, int64_t dim, const int64_t* __restrict__ rows,
                                   const float* __restrict__ g, int64_t nrows, float* __restrict__ m,
                                   float* __restrict__ v, float b1, float b2, float wd, float decay, bool decoupled,
                                   float step_size, float eps) {
  const int64_t total = nrows * dim, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t e = rows[k / dim] * dim + k % dim;
    float gv = g[k];
    const float mo = m[e], vo = v[e];
    if (wd != 0.f) {
      if (decoupled)
        p[e] = p[e] * decay;
      else
        gv = gv + wd * p[e];
    }
    const float mn = (gv - mo) * (1.f - b1) + mo;
    const float vn = (gv * gv - vo) * (1.f - b2) + vo;
    m[e] = mn;
    v[e] = vn;
    p[e] += -step_size * (mn / (sqrtf(vn) + eps));
  }
}

__global__ void adagrad_dense_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ s,
                                     int64_t n, float clr, float wd, float eps) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    float gv = g[i];
    if (wd != 0.f) gv = gv + wd * p[i];
    const float sn = s[i] + gv * gv;
    s[i] = sn;
    p[i] = p[i] - clr * (gv / (sqrtf(sn) + eps));
  }
}

__global__ void adagrad_sparse_kernel(float* __restrict__ p, int64_t dim, const int64_t* __restrict__ rows,
                                      const float* __restrict__ g, int64_t nrows, float* __restrict__ s, float clr,
                                      float eps, float wd) {
  const int64_t total = nrows * dim, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t e = rows[k / dim] * dim + k % dim;
    float gv = g[k];
    if (wd != 0.f) gv = gv + wd * p[e];
    const float sn = s[e] + gv * gv;
    s[e] = sn;
    p[e] += -clr * (gv / (sqrtf(sn) + eps));
  }
}

__global__ void sgd_dense_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf, int64_t n,
                                 float lr, float momentum, float dampening, float wd, bool nesterov, bool first) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    float d = g[i];
    if (wd != 0.f) d = d + wd * p[i];
    if (momentum != 0.f) {
      const float b = first ? d : momentum * buf[i] + (1.f - dampening) * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] - lr * d;
  }
}

__global__ void sgd_sparse_kernel(float* __restrict__ p, int64_t dim, const int64_t* __restrict__ rows,
                                  const float* __restrict__ g, int64_t nrows, float lr) {
  const int64_t total = nrows * dim, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride)
    atomicAdd(p + rows[k / dim] * dim + k % dim, -lr * g[k]);
}

// Unique rows: each element is touched by one thread, so no atomics.
__global__ void sgd_sparse_unique_kernel(float* __restrict__ p, int64_t dim, const int64_t* __restrict__ rows,
                                         const float* __restrict__ g, int64_t nrows, float* __restrict__ buf, float lr,
                                         float momentum, float dampening, float wd, bool nesterov, bool first) {
  const int64_t total = nrows * dim, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += stride) {
    const int64_t e = rows[k / dim] * dim + k % dim;
    float d = g[k];
    if (wd != 0.f) d = d + wd * p[e];
    if (buf) {
      const float b = first ? d : buf[e] * momentum + (1.f - dampening) * d;
      buf[e] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[e] = p[e] + (-lr) * d;
  }
}

// mode 0: sum g^2; 1: sum |g|^p; 2: max |g| (as the bits of a non-negative double, which order as
// unsigned integers).
__global__ void grad_norm_kernel(const float* __restrict__ g, int64_t n, double p, int mode, double* acc) {
  __shared__ double part[kBlock];
  double a = 0.0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const double x = fabs(static_cast<double>(g[i]));
    if (mode == 0)
      a += x * x;
    else if (mode == 1)
      a += pow(x, p);
    else
      a = (x > a || x != x) ? x : a;
  }
  part[threadIdx.x] = a;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const double o = part[threadIdx.x + s];
      if (mode == 2)
        part[threadIdx.x] = (o > part[threadIdx.x] || o != o) ? o : part[threadIdx.x];
      else
        part[threadIdx.x] += o;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (mode == 2)
      atomicMax(reinterpret_cast<unsigned long long*>(acc),
                static_cast<unsigned long long>(__double_as_longlong(part[0])));
    else
      atomicAdd(acc, part[0]);
  }
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float c) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) x[i] = x[i] * c;
}

void check_step(int64_t step, const char* who) {
  RECHUB_CHECK(step >= 1,
               who << ": step must count from 1 (PyTorch's state['step'] after the increment), got " << step);
}

}  // namespace

void adam_dense(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, int64_t step,
                const AdamConfig& c) {
  check_step(step, "adam_dense");
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(c.beta1, double(step)), bc2 = 1.0 - std::pow(c.beta2, double(step));
  adam_dense_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(
      param, grad, exp_avg, exp_avg_sq, n, float(c.beta1), float(c.beta2), float(c.weight_decay),
      float(1.0 - c.lr * c.weight_decay), c.decoupled, float(c.lr / bc1), float(std::sqrt(bc2)), float(c.eps));
  RECHUB_CUDA_LAUNCH_CHECK("adam_dense");
}

void adam_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                      float* exp_avg, float* exp_avg_sq, int64_t step, const AdamConfig& c) {
  check_step(step, "adam_sparse_rows");
  if (nrows * dim == 0) return;
  const double bc1 = 1.0 - std::pow(c.beta1, double(step)), bc2 = 1.0 - std::pow(c.beta2, double(step));
  adam_sparse_kernel<<<grid_for(nrows * dim, kBlock), kBlock, 0, current_stream()>>>(
      param, dim, rows, grad_rows, nrows, exp_avg, exp_avg_sq, float(c.beta1), float(c.beta2), float(c.weight_decay),
      float(1.0 - c.lr * c.weight_decay), c.decoupled, float(c.lr * std::sqrt(bc2) / bc1), float(c.eps));
  RECHUB_CUDA_LAUNCH_CHECK("adam_sparse_rows");
}

void adagrad_dense(float* param, const float* grad, float* state_sum, int64_t n, int64_t step, const AdagradConfig& c) {
  check_step(step, "adagrad_dense");
  if (n == 0) return;
  const double clr = c.lr / (1.0 + double(step - 1) * c.lr_decay);
  adagrad_dense_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(param, grad, state_sum, n, float(clr),
                                                                             float(c.weight_decay), float(c.eps));
  RECHUB_CUDA_LAUNCH_CHECK("adagrad_dense");
}

void adagrad_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                         float* state_sum, int64_t step, const AdagradConfig& c) {
  check_step(step, "adagrad_sparse_rows");
  if (nrows * dim == 0) return;
  const double clr = c.lr / (1.0 + double(step - 1) * c.lr_decay);
  adagrad_sparse_kernel<<<grid_for(nrows * dim, kBlock), kBlock, 0, current_stream()>>>(
      param, dim, rows, grad_rows, nrows, state_sum, float(clr), float(c.eps), float(c.weight_decay));
  RECHUB_CUDA_LAUNCH_CHECK("adagrad_sparse_rows");
}

void sgd_dense(float* param, const float* grad, float* momentum_buf, int64_t n, int64_t step, const SgdConfig& c) {
  check_step(step, "sgd_dense");
  RECHUB_CHECK(c.momentum == 0.0 || momentum_buf != nullptr, "sgd_dense: momentum " << c.momentum << " needs a buffer");
  RECHUB_CHECK(!c.nesterov || (c.momentum > 0 && c.dampening == 0),
               "sgd_dense: Nesterov momentum requires a momentum and zero dampening");
  if (n == 0) return;
  sgd_dense_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(param, grad, momentum_buf, n, float(c.lr),
                                                                         float(c.momentum), float(c.dampening),
                                                                         float(c.weight_decay), c.nesterov, step == 1);
  RECHUB_CUDA_LAUNCH_CHECK("sgd_dense");
}

void sgd_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                     const SgdConfig& c) {
  RECHUB_CHECK(c.momentum == 0.0 && c.weight_decay == 0.0,
               "sgd_sparse_rows: momentum and weight_decay are not supported with sparse gradients");
  if (nrows * dim == 0) return;
  sgd_sparse_kernel<<<grid_for(nrows * dim, kBlock), kBlock, 0, current_stream()>>>(param, dim, rows, grad_rows, nrows,
                                                                                    float(c.lr));
  RECHUB_CUDA_LAUNCH_CHECK("sgd_sparse_rows");
}

void sgd_sparse_unique_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                            float* momentum_buf, bool first_step, const SgdConfig& c) {
  RECHUB_CHECK(c.momentum == 0.0 || momentum_buf != nullptr,
               "sgd_sparse_unique_rows: momentum " << c.momentum << " needs a buffer");
  RECHUB_CHECK(!c.nesterov || (c.momentum > 0 && c.dampening == 0),
               "sgd_sparse_unique_rows: Nesterov momentum requires a momentum and zero dampening");
  if (nrows * dim == 0) return;
  sgd_sparse_unique_kernel<<<grid_for(nrows * dim, kBlock), kBlock, 0, current_stream()>>>(
      param, dim, rows, grad_rows, nrows, c.momentum != 0.0 ? momentum_buf : nullptr, float(c.lr), float(c.momentum),
      float(c.dampening), float(c.weight_decay), c.nesterov, first_step);
  RECHUB_CUDA_LAUNCH_CHECK("sgd_sparse_unique_rows");
}

void grad_norm_accumulate(const float* g, int64_t n, double norm_type, bool inf, double* acc) {
  if (n == 0) return;
  const int mode = inf ? 2 : (norm_type == 2.0 ? 0 : 1);
  grad_norm_kernel<<<std::min<unsigned>(grid_for(n, kBlock), 1024u), kBlock, 0, current_stream()>>>(g, n, norm_type,
                                                                                                    mode, acc);
  RECHUB_CUDA_LAUNCH_CHECK("grad_norm_accumulate");
}

void scale_inplace(float* x, int64_t n, float c) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(x, n, c);
  RECHUB_CUDA_LAUNCH_CHECK("scale_inplace");
}

}  // namespace rechub::kernels::cuda
