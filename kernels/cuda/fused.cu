// Kernels of the fused ops: the expert block (experts_forward), the gate mix (gate_mix) and batch
// normalisation (batch_norm). See fused.h for what each computes; the formulas are those of
// kernels/cpu/experts.cpp and kernels/cpu/batchnorm.cpp, element for element.
//
// Elementwise passes are grid-stride loops over rows*cols with scalar (4-byte) loads, so no
// alignment is assumed. Column reductions (per-column sums over the rows) run in two passes:
//   1. column_partials: block (32, 8) covers 32 adjacent columns (one warp: coalesced loads) and
//      one chunk of rows; its 8 row lanes stride the chunk, then add up in shared memory in a fixed
//      order and write one double partial per column and chunk (grid.y = chunk <= 65535);
//   2. column_partials_finish: one thread per column adds the chunks in order.
// Both orders depend on the shape only, so results are reproducible run to run.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/fused.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {
using rechub::cuda::current_stream;
using rechub::cuda::grid_for;
using rechub::cuda::Scratch;

namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kColTile = 32;                        // columns per block of a column reduction
constexpr int kRowLanes = 8;                        // row lanes per block of a column reduction
constexpr int64_t kRowsPerChunk = 256;              // rows per block (before the caps below)
constexpr int64_t kMaxChunks = 65535;               // gridDim.y limit
constexpr int64_t kMaxPartials = int64_t(1) << 20;  // doubles per partial array (8 MiB)
constexpr float kLeakySlope = 0.01f;                // kernels::cpu::kLeakyReluSlope

// ---- activations ----

template <ExpertAct A>
__device__ __forceinline__ float act_value(float y) {
  if constexpr (A == ExpertAct::relu) return y > 0.f ? y : 0.f;
  if constexpr (A == ExpertAct::leaky_relu) return y > 0.f ? y : kLeakySlope * y;
  if constexpr (A == ExpertAct::sigmoid) return 1.f / (1.f + expf(-y));
  if constexpr (A == ExpertAct::tanh) return tanhf(y);
  return y;
}

// dy = da * mask * act'(y) for element i of column c (kernels/cpu/experts.cpp's act_grad).
template <ExpertAct A>
__device__ __forceinline__ float act_grad(float da, float s, const float* gamma, const float* beta, int64_t c, float a,
                                          const float* mask, int64_t i) {
  float d;
  if constexpr (A == ExpertAct::relu || A == ExpertAct::leaky_relu) {
    const float y = gamma ? gamma[c] * s + beta[c] : s;
    d = y > 0.f ? 1.f : (A == ExpertAct::relu ? 0.f : kLeakySlope);
  } else if constexpr (A == ExpertAct::sigmoid || A == ExpertAct::tanh) {
    const float ap = mask ? (mask[i] != 0.f ? a / mask[i] : 0.f) : a;
    d = A == ExpertAct::sigmoid ? ap * (1.f - ap) : 1.f - ap * ap;
  } else {
    d = 1.f;
  }
  return da * d * (mask ? mask[i] : 1.f);
}

template <ExpertAct A>
using ActTag = std::integral_constant<ExpertAct, A>;

// Calls f(ActTag<A>{}) for the runtime activation.
template <class F>
void with_act(ExpertAct a, F&& f) {
  switch (a) {
    case ExpertAct::identity:
      f(ActTag<ExpertAct::identity>{});
      return;
    case ExpertAct::relu:
      f(ActTag<ExpertAct::relu>{});
      return;
    case ExpertAct::leaky_relu:
      f(ActTag<ExpertAct::leaky_relu>{});
      return;
    case ExpertAct::sigmoid:
      f(ActTag<ExpertAct::sigmoid>{});
      return;
    case ExpertAct::tanh:
      f(ActTag<ExpertAct::tanh>{});
      return;
  }
  RECHUB_FAIL("CUDA expert kernels: unknown activation " << static_cast<int>(a));
}

// ---- column reductions ----

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

struct ValueTerm {  // (m[r, c], 0)
  const float* m;
  int64_t cols;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c, double& t1, double& t2) const {
    t1 = m[r * cols + c];
    t2 = 0;
  }
};

template <ExpertAct A>
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

// ---- expert block ----

__global__ void experts_bn_prepare_kernel(int64_t cols, bool training, const double* __restrict__ mean,
                                          const double* __restrict__ var, const float* __restrict__ bias,
                                          double momentum, double eps, double unbias, float* __restrict__ rm,
                                          float* __restrict__ rv, float* __restrict__ shift,
                                          float* __restrict__ invstd) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += stride) {
    if (training) {
      shift[c] = static_cast<float>(mean[c]);
      invstd[c] = static_cast<float>(1.0 / sqrt(var[c] + eps));
      const double b = bias ? static_cast<double>(bias[c]) : 0.0;
      rm[c] = static_cast<float>((1.0 - momentum) * rm[c] + momentum * (mean[c] + b));
      rv[c] = static_cast<float>((1.0 - momentum) * rv[c] + momentum * var[c] * unbias);
    } else {
      shift[c] = rm[c] - (bias ? bias[c] : 0.f);
      invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(rv[c]) + eps));
    }
  }
}

template <ExpertAct A>
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

__global__ void experts_bn_grad_columns_kernel(int64_t cols, int64_t rows, ExpertBnMode mode,
                                               const double* __restrict__ sum_dy, const double* __restrict__ sum_dys,
                                               const float* __restrict__ gamma, const float* __restrict__ invstd,
                                               float* __restrict__ k, float* __restrict__ m1, float* __restrict__ m2,
                                               float* __restrict__ dbias, float* __restrict__ dgamma,
                                               float* __restrict__ dbeta) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += stride) {
    const double sdy = sum_dy[c];
    if (mode == ExpertBnMode::none) {
      if (dbias) dbias[c] = static_cast<float>(sdy);
      continue;
    }
    const float kc = gamma[c] * invstd[c];
    if (k) k[c] = kc;
    if (mode == ExpertBnMode::train) {
      if (m1) m1[c] = static_cast<float>(sdy / static_cast<double>(rows));
      if (m2) m2[c] = static_cast<float>(sum_dys[c] / static_cast<double>(rows));
      if (dbias) dbias[c] = 0.f;
    } else {
      if (dbias) dbias[c] = static_cast<float>(static_cast<double>(kc) * sdy);
    }
    if (dgamma) dgamma[c] = static_cast<float>(sum_dys[c]);
    if (dbeta) dbeta[c] = static_cast<float>(sdy);
  }
}

template <ExpertAct A>
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

__global__ void gate_mix_forward_kernel(int64_t rows, int64_t h, GateBlocks b, const float* __restrict__ gates,
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
__global__ void gate_mix_backward_kernel(int64_t rows, int64_t h, GateBlocks b, const float* __restrict__ gates,
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

// ---- batch normalisation ----

__global__ void batchnorm_prepare_kernel(int64_t C, bool training, double* __restrict__ mean,
                                         const double* __restrict__ var, float* __restrict__ rm, float* __restrict__ rv,
                                         const float* __restrict__ w, const float* __restrict__ b, double momentum,
                                         double eps, double unbias, double* __restrict__ invstd,
                                         float* __restrict__ scale, float* __restrict__ shift) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += stride) {
    double m, is;
    if (training) {
      m = mean[c];
      is = 1.0 / sqrt(var[c] + eps);
      if (rm) {
        rm[c] = static_cast<float>((1.0 - momentum) * rm[c] + momentum * m);
        rv[c] = static_cast<float>((1.0 - momentum) * rv[c] + momentum * var[c] * unbias);
      }
    } else {
      m = rm[c];
      mean[c] = m;
      is = 1.0 / sqrt(static_cast<double>(rv[c]) + eps);
    }
    invstd[c] = is;
    const double a = (w ? static_cast<double>(w[c]) : 1.0) * is;
    scale[c] = static_cast<float>(a);
    shift[c] = static_cast<float>((b ? static_cast<double>(b[c]) : 0.0) - m * a);
  }
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
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += stride) {
    const double is = invstd[c], wc = w ? static_cast<double>(w[c]) : 1.0;
    if (kb) {
      kb[c] = wc * is;
      ka[c] = training ? sum_g[c] / static_cast<double>(M) : 0.0;
      kc[c] = training ? wc * is * is * is * sum_gx[c] / static_cast<double>(M) : 0.0;
    }
    if (gw) gw[c] = static_cast<float>(sum_gx[c] * is);
    if (gb) gb[c] = static_cast<float>(sum_g[c]);
  }
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

}  // namespace

// ---- column reductions ----

void column_mean_var(int64_t rows, int64_t cols, const float* z, int64_t ld, double* mean, double* var) {
  mean_var("column_mean_var", rows, cols, ColumnView{z, ld, 1}, mean, var);
}

void column_sums(int64_t rows, int64_t cols, const float* m, double* sums) {
  column_reduce("column_sums", rows, cols, ValueTerm{m, cols}, sums, nullptr);
}

// ---- expert block ----

void experts_bn_prepare(int64_t cols, bool training, const double* mean, const double* var, const float* bias,
                        double momentum, double eps, double unbias, float* running_mean, float* running_var,
                        float* shift, float* invstd) {
  if (cols <= 0) return;
  experts_bn_prepare_kernel<<<grid_for(cols), kBlock, 0, current_stream()>>>(
      cols, training, mean, var, bias, momentum, eps, unbias, running_mean, running_var, shift, invstd);
  RECHUB_CUDA_LAUNCH_CHECK("experts_bn_prepare");
}

void experts_normalize_activate(int64_t rows, int64_t cols, float* z, const float* bias, const float* shift,
                                const float* scale, const float* gamma, const float* beta, ExpertAct act,
                                const float* mask, float* out) {
  if (rows <= 0 || cols <= 0) return;
  with_act(act, [&](auto tag) {
    constexpr ExpertAct A = decltype(tag)::value;
    experts_normalize_activate_kernel<A><<<grid_for(rows * cols), kBlock, 0, current_stream()>>>(
        rows, cols, z, bias, shift, scale, gamma, beta, mask, out);
  });
  RECHUB_CUDA_LAUNCH_CHECK("experts_normalize_activate");
}

void experts_activation_backward(int64_t rows, int64_t cols, const float* da, const float* s, const float* gamma,
                                 const float* beta, ExpertAct act, const float* a, const float* mask, float* dy,
                                 double* sum_dy, double* sum_dys) {
  with_act(act, [&](auto tag) {
    constexpr ExpertAct A = decltype(tag)::value;
    column_reduce("experts_activation_backward", rows, cols, ActGradTerm<A>{da, s, gamma, beta, a, mask, dy, cols},
                  sum_dy, sum_dys);
  });
}

void experts_bn_grad_columns(int64_t cols, int64_t rows, ExpertBnMode mode, const double* sum_dy, const double* sum_dys,
                             const float* gamma, const float* invstd, float* k, float* m1, float* m2, float* dbias,
                             float* dgamma, float* dbeta) {
  if (cols <= 0) return;
  experts_bn_grad_columns_kernel<<<grid_for(cols), kBlock, 0, current_stream()>>>(
      cols, rows, mode, sum_dy, sum_dys, gamma, invstd, k, m1, m2, dbias, dgamma, dbeta);
  RECHUB_CUDA_LAUNCH_CHECK("experts_bn_grad_columns");
}

void experts_activation_bn_backward(int64_t rows, int64_t cols, const float* da, const float* s, const float* gamma,
                                    const float* beta, ExpertAct act, const float* a, const float* mask, const float* k,
                                    const float* m1, const float* m2, float* dz) {
  if (rows <= 0 || cols <= 0) return;
  with_act(act, [&](auto tag) {
    constexpr ExpertAct A = decltype(tag)::value;
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

// ---- gate mix ----

void gate_mix_forward(int64_t rows, int64_t h, const GateBlocks& blocks, const float* gates, int64_t n_experts,
                      float* out) {
  RECHUB_CHECK(blocks.n >= 1 && blocks.n <= kMaxGateBlocks, "gate_mix_forward: " << blocks.n << " expert blocks");
  if (rows <= 0 || h <= 0) return;
  gate_mix_forward_kernel<<<grid_for(rows * h), kBlock, 0, current_stream()>>>(rows, h, blocks, gates, n_experts, out);
  RECHUB_CUDA_LAUNCH_CHECK("gate_mix_forward");
}

void gate_mix_backward(int64_t rows, int64_t h, const GateBlocks& blocks, const float* gates, int64_t n_experts,
                       const float* dout, float* dlogits) {
  RECHUB_CHECK(blocks.n >= 1 && blocks.n <= kMaxGateBlocks, "gate_mix_backward: " << blocks.n << " expert blocks");
  if (rows <= 0) return;
  const int64_t grid = (rows + kWarps - 1) / kWarps;
  RECHUB_CHECK(grid <= INT32_MAX, "gate_mix_backward: " << rows << " rows exceed the grid");
  gate_mix_backward_kernel<<<static_cast<unsigned>(grid), kBlock, 0, current_stream()>>>(rows, h, blocks, gates,
                                                                                         n_experts, dout, dlogits);
  RECHUB_CUDA_LAUNCH_CHECK("gate_mix_backward");
}

// ---- batch normalisation ----

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

}  // namespace rechub::kernels::cuda
