#pragma once
// CPU kernels of the fused expert block and gate mix (core/ops_fused.cpp drives them).
//
// Layout: the outputs of E experts of width h are one row-major matrix [B, E*h]; expert e owns
// columns [e*h, (e+1)*h). The first layer of the block is then one GEMM against the experts'
// weights stacked as [E*h, in], later layers are per-expert GEMMs that read and write column
// blocks through the leading dimension (no copies), and the elementwise passes below run over the
// whole [B, E*h] matrix at once with per-column parameters (bias, BatchNorm) concatenated over
// the experts.
#include <omp.h>

#include <cstdint>

namespace rechub::kernels::cpu {

// Runs f(e) for e in [0, E): with several threads and E a multiple of their count, one expert per
// thread at a time (each GEMM inside then runs single-threaded, see gemm.h), which balances
// exactly and saves a fork/join per GEMM; otherwise in order, each GEMM using every thread.
template <class F>
void for_each_expert(int64_t E, F&& f) {
  const int64_t nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt > 1 && E >= nt && E % nt == 0) {
#pragma omp parallel for schedule(static) num_threads(static_cast <int>(nt))
    for (int64_t e = 0; e < E; ++e) f(e);
  } else {
    for (int64_t e = 0; e < E; ++e) f(e);
  }
}

enum class ExpertAct : uint8_t { identity, relu, leaky_relu, sigmoid, tanh };
// PyTorch's default negative slope (nn.LeakyReLU).
constexpr double kLeakyReluSlope = 0.01;

// Column means and biased variances of z [rows, cols] (row stride ld), accumulated in double from
// shifted values (the first row as shift) so E[z^2] - E[z]^2 does not cancel.
template <class T>
void column_mean_var(int64_t rows, int64_t cols, const T* z, int64_t ld, double* mean, double* var);

// In place over z [rows, cols]: s = (z - shift[c]) * scale[c] is stored back into z (the
// normalised value BatchNorm's backward needs, or the biased pre-activation without BatchNorm);
// y = gamma ? gamma[c] * s + beta[c] : s; a = act(y) * (mask ? mask[r, c] : 1) is written to out.
template <class T>
void normalize_activate(int64_t rows, int64_t cols, T* z, const T* shift, const T* scale, const T* gamma, const T* beta,
                        ExpertAct act, const T* mask, T* out);

// Backward of normalize_activate up to s: dy = da * mask * act'(y), written to dy (unless dy is
// null: BatchNorm's training backward recomputes it, saving a pass of writes); the column sums
// sum_dy[c] = sum_r dy and sum_dys[c] = sum_r dy * s are accumulated in double (either may be null).
// `a` is the layer output (with the mask applied); act' of relu/leaky_relu/identity comes from y,
// of sigmoid/tanh from the unmasked output a / mask.
template <class T>
void activation_backward(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                         ExpertAct act, const T* a, const T* mask, T* dy, double* sum_dy, double* sum_dys);

// In place over dy: dz = k[c] * (dy - m1[c] - s * m2[c]) (BatchNorm's training backward with
// k = gamma * invstd, m1 = mean dy, m2 = mean dy * s), or dz = k[c] * dy when m1 == nullptr.
template <class T>
void batchnorm_backward(int64_t rows, int64_t cols, T* dy, const T* s, const T* k, const T* m1, const T* m2);

// BatchNorm's training backward fused with the activation's: dz = k[c] * (dy - m1[c] - s * m2[c])
// with dy = da * mask * act'(y) recomputed as activation_backward computes it.
template <class T>
void activation_batchnorm_backward(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                                   ExpertAct act, const T* a, const T* mask, const T* k, const T* m1, const T* m2,
                                   T* dz);

// Row-wise softmax in place over logits [rows, n].
template <class T>
void softmax_rows(int64_t rows, int64_t n, T* logits);

// One group of expert outputs as the gate sees it: [rows, count*h] with row stride ld.
template <class T>
struct ExpertBlock {
  const T* data;
  int64_t ld;
  int64_t count;
};

// out[r, :] = sum_e gates[r, e] * X_e[r, :], the experts numbered through the blocks in order.
template <class T>
void gate_mix_forward(int64_t rows, int64_t h, const ExpertBlock<T>* blocks, int64_t nblocks, const T* gates,
                      int64_t n_experts, T* out);

// Backward of gate_mix_forward and of the softmax before it, given dout [rows, h]:
// dX_e[r, :] = gates[r, e] * dout[r, :] into dblocks (same layout as blocks; entries may be null),
// dlogits[r, e] = g_e * (<dout_r, X_e,r> - sum_j g_j <dout_r, X_j,r>).
template <class T>
void gate_mix_backward(int64_t rows, int64_t h, const ExpertBlock<T>* blocks, T* const* dblocks, int64_t nblocks,
                       const T* gates, int64_t n_experts, const T* dout, T* dlogits);

// sums[c] = sum_r m[r, c] (double accumulation; the bias gradient of a [rows, cols] output).
template <class T>
void column_sums(int64_t rows, int64_t cols, const T* m, double* sums);

}  // namespace rechub::kernels::cpu
