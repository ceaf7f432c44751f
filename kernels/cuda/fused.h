#pragma once
// CUDA kernels of the fused ops (core/ops_fused_cuda.cpp and core/ops_nn.cpp drive them): the
// expert block of experts_forward, the gate mix of gate_mix and batch normalisation. Same
// conventions as kernels/cuda/ops.h: raw device pointers of contiguous row-major f32 data on the
// current device's stream, asynchronous launches, errors as rechub::Error naming the call site,
// and no CUDA headers here. They mirror kernels/cpu/experts.h and kernels/cpu/batchnorm.h.
//
// Per-column statistics and gradient sums ("column reductions") accumulate in double, in a fixed
// order that depends only on the shape (never on timing): each block sums 32 columns over a chunk
// of rows, a second pass adds the chunks in order. The double outputs (mean, var, sums) are device
// arrays the caller allocates (e.g. f64 tensors on the device); none of these functions reads
// anything back to the host.
#include <cstddef>
#include <cstdint>

namespace rechub::kernels::cuda {

// The same activations in the same order as ops::Activation and kernels::cpu::ExpertAct.
enum class ExpertAct : uint8_t { identity, relu, leaky_relu, sigmoid, tanh };

// ---- column reductions ----
// mean[c] and the biased variance var[c] of z [rows, cols] (row stride ld), accumulated in double
// from values shifted by the column's first element (as kernels::cpu::column_mean_var does).
void column_mean_var(int64_t rows, int64_t cols, const float* z, int64_t ld, double* mean, double* var);
// sums[c] = sum_r m[r, c] for m [rows, cols].
void column_sums(int64_t rows, int64_t cols, const float* m, double* sums);

// ---- the expert block (layout: [B, E*h], see core/ops_fused.h), per layer over C = E*h columns ----
// Per column: training: shift = mean, invstd = 1/sqrt(var + eps), and the running statistics in
// place: rm = (1 - momentum) rm + momentum (mean + bias), rv = (1 - momentum) rv + momentum var
// unbias (PyTorch's rule; unbias = B / (B - 1)). Eval: shift = rm - bias, invstd = 1/sqrt(rv + eps)
// (mean and var unused). bias may be null (0).
void experts_bn_prepare(int64_t cols, bool training, const double* mean, const double* var, const float* bias,
                        double momentum, double eps, double unbias, float* running_mean, float* running_var,
                        float* shift, float* invstd);
// In place over z [rows, cols]: s = (z - shift[c]) * scale[c] with BatchNorm (scale non-null),
// else s = z + bias[c] (bias may be null); s is stored back into z; y = gamma ? gamma[c] s + beta[c]
// : s; out = act(y) * (mask ? mask[r, c] : 1).
void experts_normalize_activate(int64_t rows, int64_t cols, float* z, const float* bias, const float* shift,
                                const float* scale, const float* gamma, const float* beta, ExpertAct act,
                                const float* mask, float* out);
// dy = da * mask * act'(y) (y recomputed from s, gamma, beta; sigmoid/tanh from the output a),
// written to dy unless it is null; sum_dy[c] = sum_r dy and, when non-null, sum_dys[c] = sum_r dy s.
void experts_activation_backward(int64_t rows, int64_t cols, const float* da, const float* s, const float* gamma,
                                 const float* beta, ExpertAct act, const float* a, const float* mask, float* dy,
                                 double* sum_dy, double* sum_dys);
// The per-column results of the backward from the sums (every output may be null):
//   mode none (no BatchNorm):  dbias = sum_dy;
//   mode train:  k = gamma invstd, m1 = sum_dy / rows, m2 = sum_dys / rows, dbias = 0;
//   mode eval:   k = gamma invstd, dbias = k sum_dy;
//   with BatchNorm: dgamma = sum_dys, dbeta = sum_dy.
enum class ExpertBnMode : uint8_t { none, train, eval };
void experts_bn_grad_columns(int64_t cols, int64_t rows, ExpertBnMode mode, const double* sum_dy, const double* sum_dys,
                             const float* gamma, const float* invstd, float* k, float* m1, float* m2, float* dbias,
                             float* dgamma, float* dbeta);
// BatchNorm's training backward fused with the activation's: dz = k[c] (dy - m1[c] - s m2[c]) with
// dy recomputed as experts_activation_backward computes it.
void experts_activation_bn_backward(int64_t rows, int64_t cols, const float* da, const float* s, const float* gamma,
                                    const float* beta, ExpertAct act, const float* a, const float* mask, const float* k,
                                    const float* m1, const float* m2, float* dz);
// m[r, c] *= k[c] in place (BatchNorm's eval backward).
void scale_columns(int64_t rows, int64_t cols, float* m, const float* k);

// ---- gate mix ----
// The expert outputs as the gate sees them, passed by value to the kernels: block i is
// [rows, count[i] * h] (row stride count[i] * h) holding count[i] experts; grad[i] receives its
// gradient in the same layout (null: not needed). The front-end concatenates when there are more.
constexpr int kMaxGateBlocks = 8;
struct GateBlocks {
  int n = 0;
  const float* data[kMaxGateBlocks] = {};
  float* grad[kMaxGateBlocks] = {};
  int64_t count[kMaxGateBlocks] = {};
};
// out[r, :] = sum_e gates[r, e] X_e[r, :], the experts numbered through the blocks in order.
void gate_mix_forward(int64_t rows, int64_t h, const GateBlocks& blocks, const float* gates, int64_t n_experts,
                      float* out);
// One warp per row: dX_e = gates[r, e] dout into blocks.grad, and (when dlogits is non-null)
// dlogits[r, e] = g_e (<dout_r, X_e,r> - sum_j g_j <dout_r, X_j,r>).
void gate_mix_backward(int64_t rows, int64_t h, const GateBlocks& blocks, const float* gates, int64_t n_experts,
                       const float* dout, float* dlogits);

// ---- batch normalisation over channels of a contiguous [N, C, L] tensor (L = 1 for [N, C]) ----
// mean[c] and the biased var[c] over the N*L values of channel c (shifted sums in double).
void batchnorm_stats(const float* x, int64_t N, int64_t C, int64_t L, double* mean, double* var);
// Per channel: training: invstd = 1/sqrt(var + eps) and, when running_mean is non-null, the running
// statistics in place (r = (1 - momentum) r + momentum s, the variance times unbias); eval: mean is
// OUTPUT = running_mean, invstd = 1/sqrt(running_var + eps). Then a = weight invstd (weight null: 1),
// scale = a, shift = bias - mean a (bias null: 0).
void batchnorm_prepare(int64_t C, bool training, double* mean, const double* var, float* running_mean,
                       float* running_var, const float* weight, const float* bias, double momentum, double eps,
                       double unbias, double* invstd, float* scale, float* shift);
// y = x scale[c] + shift[c].
void batchnorm_apply(const float* x, int64_t N, int64_t C, int64_t L, const float* scale, const float* shift, float* y);
// sum_g[c] = sum of g, sum_gx[c] = sum of g (x - mean[c]) over the channel.
void batchnorm_grad_sums(const float* g, const float* x, int64_t N, int64_t C, int64_t L, const double* mean,
                         double* sum_g, double* sum_gx);
// Per channel (M = N*L values): kb = w invstd, training: ka = sum_g / M, kc = w invstd^3 sum_gx / M,
// eval: ka = kc = 0; gw = sum_gx invstd, gb = sum_g (each output may be null; weight null: 1).
void batchnorm_backward_prepare(int64_t C, int64_t M, bool training, const double* sum_g, const double* sum_gx,
                                const double* invstd, const float* weight, double* ka, double* kb, double* kc,
                                float* gw, float* gb);
// dx = (g - ka[c]) kb[c] - (x - mean[c]) kc[c].
void batchnorm_input_grad(const float* g, const float* x, int64_t N, int64_t C, int64_t L, const double* mean,
                          const double* ka, const double* kb, const double* kc, float* dx);

}  // namespace rechub::kernels::cuda
