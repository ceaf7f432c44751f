#pragma once
// The op front-ends: each checks its inputs, runs the kernel for the tensors' device and, when
// grad mode is on, records its backward. Shapes follow PyTorch's conventions.
#include <cstdint>
#include <optional>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/tensor.h"

namespace rechub::ops {

// ---- elementwise, with NumPy broadcasting (rows, columns, scalars, any size-1 dims) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor pow(const Tensor& a, double p);
Tensor clamp(const Tensor& a, double lo, double hi);
Tensor abs(const Tensor& a);
// The output shape of broadcasting a against b; throws naming `op` when they do not broadcast.
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op);
// Sums g down to `shape` over broadcast dimensions (the backward of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- activations ----
Tensor relu(const Tensor& a);
Tensor leaky_relu(const Tensor& a, double negative_slope = 0.01);
// PReLU: weight has 1 element, or one per channel (dim 1 of a [N, C, ...] input).
Tensor prelu(const Tensor& a, const Tensor& weight);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor softmax(const Tensor& a, int64_t dim = -1);
Tensor log_softmax(const Tensor& a, int64_t dim = -1);

// ---- reductions ----
Tensor sum(const Tensor& a);
Tensor sum(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& a);
Tensor max(const Tensor& a, int64_t dim, bool keepdim = false);  // values; gradient to the first max
Tensor argmax(const Tensor& a, int64_t dim);                     // i64, no gradient
// Vector p-norm over all elements (p = 1 or 2).
Tensor norm(const Tensor& a, double p = 2.0);

// ---- linear algebra ----
// op(a) @ op(b) for 2-D a, b; op transposes when asked.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// Batched: [E, M, K] @ [E, K, N] -> [E, M, N] (with optional transposes of the last two dims).
Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x [N, in] @ W[out, in]^T + b[out] as one GEMM plus bias (PyTorch's layout). b may be undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = {});
Tensor transpose(const Tensor& a);  // 2-D

// ---- shapes and indexing ----
Tensor reshape(const Tensor& a, const Shape& shape);  // one dim may be -1
Tensor unsqueeze(const Tensor& a, int64_t dim);
Tensor squeeze(const Tensor& a, int64_t dim);
Tensor concat(const std::vector<Tensor>& ts, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& ts, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim = 0);
// a.narrow(dim, start, length); along dim 0 it is a view (no copy).
Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end);
// Rows of a (dim 0) picked by 1-D integer index: out[i] = a[idx[i]].
Tensor index_select(const Tensor& a, const Tensor& idx);
// PyTorch's gather along dim 0: out[i, j] = a[idx[i, j], j] (idx 2-D, a 2-D).
Tensor gather(const Tensor& a, const Tensor& idx);
// out = base with out[idx[i]] += src[i] along dim 0.
Tensor scatter_add(const Tensor& base, const Tensor& idx, const Tensor& src);

// ---- embeddings ----
// Looks up rows of `table` [V, D] for integer `ids` [B, F] (i32 or i64), returning [B, F*D]
// (feature f of row b at columns f*D..f*D+D). The gradient for the table is row-sparse: the
// unique rows touched and their summed gradients, never a dense V x D matrix.
// `feature_names`/`row_ranges` (optional) name the feature of each column and the rows
// [lo, hi) its ids must fall in, for error messages.
struct EmbeddingCheck {
  std::vector<std::string> feature_names;
  std::vector<std::pair<int64_t, int64_t>> row_ranges;
  // The caller has already checked every id against row_ranges (EmbeddingCollection does while it
  // offsets the ids): the lookup skips its own pass over the ids (on CUDA, a device-to-host read).
  bool ids_checked = false;
};
Tensor embedding_lookup(const Tensor& table, const Tensor& ids, const EmbeddingCheck* check = nullptr);

// ---- losses (reduction: mean over all elements unless stated) ----
enum class Reduction { mean, sum, none };
struct BCEOptions {
  Tensor weight;            // optional, broadcast against the loss
  double pos_weight = 1.0;  // weight of the positive term (imbalanced labels)
  Reduction reduction = Reduction::mean;
};
// Numerically stable BCE on logits: max(x,0) - x*y + log(1 + exp(-|x|)).
Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, const BCEOptions& opts = {});
// BCE on probabilities, with log clamped at -100 like PyTorch.
Tensor binary_cross_entropy(const Tensor& probs, const Tensor& targets, Reduction r = Reduction::mean);
Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction r = Reduction::mean);

}  // namespace rechub::ops

namespace rechub {
// Operators for the common cases.
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return ops::add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return ops::add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return ops::mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return ops::mul(a, 1.0 / s); }
inline Tensor operator+(double s, const Tensor& a) { return ops::add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return ops::rsub(s, a); }
inline Tensor operator*(double s, const Tensor& a) { return ops::mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return ops::rdiv(s, a); }
inline Tensor operator-(const Tensor& a) { return ops::neg(a); }
}  // namespace rechub
