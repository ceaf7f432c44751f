#pragma once
// The CUDA kernels behind the op front-ends in core/, one function per kernel family, over raw
// device pointers of contiguous row-major f32 data (i64/i32 for indices) on the current device's
// stream. They mirror kernels/cpu's functions argument for argument, so the front-end calls one or
// the other from the same place. Launches are asynchronous; errors are reported as rechub::Error
// with the call site. This header needs no CUDA headers (core includes it in every build and
// calls these functions only when RECHUB_WITH_CUDA is defined).
#include <cstdint>
#include <vector>

#include "rechub/kernels/cpu/broadcast.h"

namespace rechub::kernels::cuda {

// ---- elementwise (elementwise.cu) ----
using kernels::cpu::BinaryOp;
// out = a op b with NumPy broadcasting; shapes aligned to the output's rank (at most 8 dims).
// The same-shape contiguous case runs with 16-byte vector loads.
void broadcast_binary(BinaryOp op, const std::vector<int64_t>& out_shape, const float* a,
                      const std::vector<int64_t>& a_shape, const float* b, const std::vector<int64_t>& b_shape,
                      float* out);
// out = sum of `in` over the dims where to_shape (aligned) is 1 and from_shape is not.
void sum_to(const float* in, const std::vector<int64_t>& from_shape, float* out, const std::vector<int64_t>& to_shape);

// Unary maps; p0/p1 are the op's scalar parameters (add/mul: s; rsub/rdiv: s; pow: p;
// clamp: lo, hi; leaky_relu: slope).
enum class Unary : uint8_t {
  neg,
  exp,
  log,
  sqrt,
  abs,
  relu,
  sigmoid,
  tanh,
  add,
  mul,
  rsub,
  rdiv,
  pow,
  clamp,
  leaky_relu
};
void unary_forward(Unary op, int64_t n, const float* x, float* y, double p0 = 0, double p1 = 0);
// dx = g * f'(x) using x and/or the forward output y (whichever the op's derivative needs;
// the other may be null): exp/sqrt/sigmoid/tanh read y, the rest read x.
void unary_backward(Unary op, int64_t n, const float* g, const float* x, const float* y, float* dx, double p0 = 0,
                    double p1 = 0);
// Fills n elements of `elem_size` (4 or 8) bytes with `value` converted to the dtype.
void fill(void* p, int64_t n, int elem_size, bool is_float, double value);

// ---- losses (loss.cu), same formulas as kernels/cpu/loss.h ----
void bce_logits_forward(const float* x, const float* y, int64_t n, double pos_weight, float* loss);
void bce_logits_backward(const float* x, const float* y, const float* g, int64_t n, double pos_weight, float* dx);
void bce_forward(const float* p, const float* y, int64_t n, float* loss);
void bce_backward(const float* p, const float* y, const float* g, int64_t n, float* dp);

// ---- reductions (reduce.cu) and softmax (softmax.cu); views [outer, n, inner] around the dim ----
// out[0] = sum of a (or of a^2 when `square`), tree-reduced with f32 partials in double.
void sum_all(const float* a, int64_t n, float* out, bool square = false);
void sum_dim(const float* a, int64_t outer, int64_t n, int64_t inner, float* out);
// Max over the dim; first index of the max; NaN counts as the max (PyTorch's rule).
void max_dim(const float* a, int64_t outer, int64_t n, int64_t inner, float* out, int64_t* argmax);
// gx (zeroed by the caller) [outer, n, inner]: gx[o, argmax[o, j], j] = g[o, j].
void max_dim_backward(const float* g, const int64_t* argmax, int64_t outer, int64_t n, int64_t inner, float* gx);
void softmax_forward(const float* x, int64_t outer, int64_t n, int64_t inner, float* y, bool log);
void softmax_backward(const float* y, const float* dy, int64_t outer, int64_t n, int64_t inner, float* dx, bool log);

// ---- GEMM (gemm.cpp, cuBLAS) ----
// C[M,N] = alpha op(A) op(B) + beta C, row-major with row strides lda/ldb/ldc. Exact fp32 unless
// rechub::cuda::set_allow_tf32(true).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// `batch` independent GEMMs, matrix i at A + i*stride_a etc. (cublasSgemmStridedBatched).
void sgemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                           float* C, int64_t ldc, int64_t stride_c, int64_t batch);
// y[r, :] = bias for r < rows (the epilogue of linear: the GEMM then accumulates with beta = 1).
void broadcast_rows(const float* bias, int64_t rows, int64_t cols, float* y);
void transpose(const float* a, int64_t rows, int64_t cols, float* out);

// ---- indexing (index.cu) ----
// The same block copy as kernels::cpu::copy_block (concat, split and narrow on inner dims).
void copy_block(const void* src, void* dst, int64_t outer, int64_t n_src, int64_t n_dst, int64_t at, int64_t inner,
                int64_t elem_size, bool extract);
// out[i, :] = src[idx[i], :] for elements of elem_size (4 or 8) bytes.
void gather_rows(const void* src, const int64_t* idx, int64_t n, int64_t d, int64_t elem_size, void* out);
// out[idx[i], :] += src[i, :] with atomic adds (duplicate rows sum in an unspecified order).
void scatter_add_rows(const float* src, const int64_t* idx, int64_t n, int64_t d, float* out);
// out[i, j] = a[idx[i, j], j] for a [*, ac] and idx [R, C]; and its backward (atomic adds).
void gather_dim0(const float* a, int64_t ac, const int64_t* idx, int64_t R, int64_t C, float* out);
void gather_dim0_backward(const float* g, const int64_t* idx, int64_t R, int64_t C, int64_t ac, float* gx);
// Number of entries of idx [n] outside [0, rows) (one small device-to-host read; the caller then
// finds the offender on the host for the error message).
int64_t count_out_of_range(const int64_t* idx, int64_t n, int64_t rows);

// ---- embeddings (embedding.cu) ----
// One launch for every feature: out[b, f*D:(f+1)*D] = table[ids[b, f], :].
void embedding_forward(const float* table, int64_t dim, const int32_t* ids, int64_t batch, int64_t nfeat, float* out);
void embedding_forward(const float* table, int64_t dim, const int64_t* ids, int64_t batch, int64_t nfeat, float* out);
// How many ids lie outside their feature's row range: [ranges[2f], ranges[2f+1]) for feature f when
// `ranges` (a device array of 2*nfeat i64) is given, else [0, rows). One small device-to-host read;
// 0 when all are valid (the caller then looks for the offender on the host for its message).
int64_t embedding_count_invalid(const int32_t* ids, int64_t batch, int64_t nfeat, const int64_t* ranges, int64_t rows);
int64_t embedding_count_invalid(const int64_t* ids, int64_t batch, int64_t nfeat, const int64_t* ranges, int64_t rows);
// Row-sparse backward, sort-based and deterministic: the B*F ids (all < `rows`) are radix-sorted
// with their positions (CUB, stable), runs of equal ids become the unique rows, and one warp per
// unique row sums its gradient rows in sorted order = original order (the CPU's order, so the
// two agree to the last bit). Returns the unique count u; writes the u sorted unique ids into
// uniq_out and their summed rows into rows_out (both sized for B*F rows by the caller).
int64_t embedding_backward(const float* grad_out, int64_t dim, const int32_t* ids, int64_t batch, int64_t nfeat,
                           int64_t rows, int64_t* uniq_out, float* rows_out);
int64_t embedding_backward(const float* grad_out, int64_t dim, const int64_t* ids, int64_t batch, int64_t nfeat,
                           int64_t rows, int64_t* uniq_out, float* rows_out);

}  // namespace rechub::kernels::cuda
