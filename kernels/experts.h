#pragma once
// The kernel entry points of the fused expert block and the gate mix, one signature for every
// device. The ops (core/ops_fused.cpp: experts_forward, gate_mix) are written once against
// ExpertKernels<T> and pick the table of the input's device:
//
//   kernels/cpu/experts.cpp    cpu::expert_kernels<T>() for f32 and f64 (the reference)
//   kernels/cuda/experts.cu    cuda::expert_kernels() for f32 (cuBLAS for the GEMMs)
//
// Pointers are to contiguous row-major data on that device (on CUDA: the current device's stream,
// asynchronous launches, nothing read back to the host); "double" arrays (statistics, column sums)
// live on the device too. Both devices compute the same formulas in the same order.
//
// Layout: the outputs of E experts of width h are one row-major matrix [B, E*h]; expert e owns
// columns [e*h, (e+1)*h) (see core/ops_fused.h). The first layer is one GEMM against the experts'
// weights stacked as [E*h, in], later layers one strided-batched GEMM over the experts, and the
// elementwise passes below run over the whole [B, C = E*h] matrix with per-column parameters.
#include <cmath>
#include <cstdint>

#include "rechub/kernels/activation.h"
#include "rechub/kernels/host_device.h"

namespace rechub::kernels {

// What a layer's BatchNorm does in the backward's per-column step (bn_grad_columns).
enum class BnMode : uint8_t { none, train, eval };

// The expert outputs as the gate sees them: block i is [rows, count[i] * h] (row stride
// count[i] * h) holding count[i] experts, numbered in order through the blocks; grad[i] receives
// its gradient in the same layout (null: not needed). The op concatenates when there are more.
constexpr int kMaxGateBlocks = 8;
template <class T>
struct GateBlocks {
  int n = 0;
  const T* data[kMaxGateBlocks] = {};
  T* grad[kMaxGateBlocks] = {};
  int64_t count[kMaxGateBlocks] = {};
};

template <class T>
struct ExpertKernels {
  // C[M,N] = alpha op(A) op(B) + beta C, row-major with row strides lda/ldb/ldc (beta = 0: C is
  // not read).
  void (*gemm)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
  // `batch` such GEMMs, matrix i at A + i*stride_a, B + i*stride_b, C + i*stride_c (one per expert).
  void (*gemm_strided_batched)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                               int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                               int64_t ldc, int64_t stride_c, int64_t batch);

  // ---- expert block, per layer over [rows, cols] ----
  // mean[c] and the biased variance var[c] of z (row stride ld), accumulated in double from values
  // shifted by the column's first element, so E[z^2] - E[z]^2 does not cancel.
  void (*column_mean_var)(int64_t rows, int64_t cols, const T* z, int64_t ld, double* mean, double* var);
  // Per column: training: shift = mean, invstd = 1/sqrt(var + eps), and the running statistics in
  // place: rm = (1 - momentum) rm + momentum (mean + bias), rv = (1 - momentum) rv + momentum var
  // unbias (PyTorch's rule; unbias = B / (B - 1)). Eval: shift = rm - bias, invstd =
  // 1/sqrt(rv + eps) (mean and var unused). bias may be null (0).
  void (*bn_prepare)(int64_t cols, bool training, const double* mean, const double* var, const T* bias, double momentum,
                     double eps, double unbias, T* running_mean, T* running_var, T* shift, T* invstd);
  // In place over z: s = (z - shift[c]) * scale[c] with BatchNorm (scale non-null), else
  // s = z + bias[c] (bias may be null); s is stored back into z (the backward reads it);
  // y = gamma ? gamma[c] s + beta[c] : s; out = act(y) * (mask ? mask[r, c] : 1).
  void (*normalize_activate)(int64_t rows, int64_t cols, T* z, const T* bias, const T* shift, const T* scale,
                             const T* gamma, const T* beta, Activation act, const T* mask, T* out);
  // dy = da * mask * act'(y) (y recomputed from s, gamma, beta; sigmoid/tanh from the output a),
  // written to dy unless it is null (BatchNorm's training backward recomputes it); sum_dy[c] =
  // sum_r dy and, when non-null, sum_dys[c] = sum_r dy s (written, double).
  void (*activation_backward)(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                              Activation act, const T* a, const T* mask, T* dy, double* sum_dy, double* sum_dys);
  // The per-column results of the backward from the sums (every output may be null):
  //   none (no BatchNorm):  dbias = sum_dy;
  //   train:  k = gamma invstd, m1 = sum_dy / rows, m2 = sum_dys / rows, dbias = 0;
  //   eval:   k = gamma invstd, dbias = k sum_dy;
  //   with BatchNorm: dgamma = sum_dys, dbeta = sum_dy.
  void (*bn_grad_columns)(int64_t cols, int64_t rows, BnMode mode, const double* sum_dy, const double* sum_dys,
                          const T* gamma, const T* invstd, T* k, T* m1, T* m2, T* dbias, T* dgamma, T* dbeta);
  // BatchNorm's training backward fused with the activation's: dz = k[c] (dy - m1[c] - s m2[c]) with
  // dy recomputed as activation_backward computes it.
  void (*activation_bn_backward)(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                                 Activation act, const T* a, const T* mask, const T* k, const T* m1, const T* m2,
                                 T* dz);
  // m[r, c] *= k[c] in place (BatchNorm's eval backward).
  void (*scale_columns)(int64_t rows, int64_t cols, T* m, const T* k);

  // ---- gate mix ----
  // y[r, :] = bias for r < rows (the GEMM then accumulates the logits onto it with beta = 1).
  void (*broadcast_rows)(const T* bias, int64_t rows, int64_t cols, T* y);
  // Row-wise softmax of logits [rows, n] into gates (may be the same array on the CPU only).
  void (*softmax_rows)(int64_t rows, int64_t n, const T* logits, T* gates);
  // out[r, :] = sum_e gates[r, e] X_e[r, :], the experts numbered through the blocks in order.
  void (*gate_mix_forward)(int64_t rows, int64_t h, const GateBlocks<T>& blocks, const T* gates, int64_t n_experts,
                           T* out);
  // Backward of gate_mix_forward and of the softmax before it, given dout [rows, h]:
  // dX_e = gates[r, e] dout into blocks.grad, and (when dlogits is non-null)
  // dlogits[r, e] = g_e (<dout_r, X_e,r> - sum_j g_j <dout_r, X_j,r>).
  void (*gate_mix_backward)(int64_t rows, int64_t h, const GateBlocks<T>& blocks, const T* gates, int64_t n_experts,
                            const T* dout, T* dlogits);
  // sums[c] = sum_r m[r, c] for m [rows, cols] (the gate bias's gradient).
  void (*column_sums)(int64_t rows, int64_t cols, const T* m, T* sums);
};

// ---- per-column formulas both backends run (one column c per call) ----
// bn_prepare's column (see ExpertKernels::bn_prepare).
template <class T>
RECHUB_HOST_DEVICE inline void bn_prepare_column(int64_t c, bool training, const double* mean, const double* var,
                                                 const T* bias, double momentum, double eps, double unbias, T* rm,
                                                 T* rv, T* shift, T* invstd) {
  if (training) {
    shift[c] = static_cast<T>(mean[c]);
    invstd[c] = static_cast<T>(1.0 / ::sqrt(var[c] + eps));
    const double b = bias ? static_cast<double>(bias[c]) : 0.0;
    rm[c] = static_cast<T>((1.0 - momentum) * rm[c] + momentum * (mean[c] + b));
    rv[c] = static_cast<T>((1.0 - momentum) * rv[c] + momentum * var[c] * unbias);
  } else {
    shift[c] = rm[c] - (bias ? bias[c] : T(0));
    invstd[c] = static_cast<T>(1.0 / ::sqrt(static_cast<double>(rv[c]) + eps));
  }
}

// bn_grad_columns's column (see ExpertKernels::bn_grad_columns).
template <class T>
RECHUB_HOST_DEVICE inline void bn_grad_column(int64_t c, int64_t rows, BnMode mode, const double* sum_dy,
                                              const double* sum_dys, const T* gamma, const T* invstd, T* k, T* m1,
                                              T* m2, T* dbias, T* dgamma, T* dbeta) {
  const double sdy = sum_dy[c];
  if (mode == BnMode::none) {
    if (dbias) dbias[c] = static_cast<T>(sdy);
    return;
  }
  const T kc = gamma[c] * invstd[c];
  if (k) k[c] = kc;
  if (mode == BnMode::train) {
    if (m1) m1[c] = static_cast<T>(sdy / static_cast<double>(rows));
    if (m2) m2[c] = static_cast<T>(sum_dys[c] / static_cast<double>(rows));
    if (dbias) dbias[c] = T(0);
  } else {
    if (dbias) dbias[c] = static_cast<T>(static_cast<double>(kc) * sdy);
  }
  if (dgamma) dgamma[c] = static_cast<T>(sum_dys[c]);
  if (dbeta) dbeta[c] = static_cast<T>(sdy);
}

namespace cpu {
template <class T>
const ExpertKernels<T>& expert_kernels();  // T = float, double (kernels/cpu/experts.cpp)
}
namespace cuda {
const ExpertKernels<float>& expert_kernels();  // kernels/cuda/experts.cu
}

}  // namespace rechub::kernels
