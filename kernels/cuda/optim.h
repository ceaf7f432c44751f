#pragma once
// Fused optimizer updates on device memory (f32), one launch per parameter tensor, with
// PyTorch's exact update formulas (torch.optim, single-tensor "for-loop" implementations), for
// the optimizers in nn/ to call on cuda tensors. `step` is the step count after incrementing
// (1 on the first update), as PyTorch's state["step"]. All pointers are device pointers on the
// current device; launches are asynchronous on its stream.
#include <cstdint>

namespace rechub::kernels::cuda {

struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  // AdamW (torch.optim.AdamW): p *= 1 - lr * weight_decay first, and no wd * p in the gradient.
  bool decoupled = false;
};
// torch.optim.Adam (amsgrad=False, maximize=False); with c.decoupled torch.optim.AdamW
// (p *= 1 - lr wd instead of g += wd p):
//   g += wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
void adam_dense(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, int64_t step,
                const AdamConfig& c);
// torch.optim.SparseAdam ("lazy" Adam) on the rows a row-sparse gradient touches; `rows` must be
// unique (a coalesced gradient), grad_rows is [nrows, dim]:
//   m_r += (1-b1)(g - m_r);  v_r += (1-b2)(g^2 - v_r)
//   p_r -= lr sqrt(1 - b2^t) / (1 - b1^t) * m_r / (sqrt(v_r) + eps)
// (SparseAdam adds eps to sqrt(v) before the bias correction, unlike Adam.) A weight_decay (not in
// SparseAdam; rechub's CPU rule) applies to the touched rows only: g += wd p_r, or with
// c.decoupled p_r *= 1 - lr wd before the update.
void adam_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                      float* exp_avg, float* exp_avg_sq, int64_t step, const AdamConfig& c);

struct AdagradConfig {
  double lr = 1e-2, lr_decay = 0.0, weight_decay = 0.0, eps = 1e-10;
};
// torch.optim.Adagrad: g += wd * p; clr = lr / (1 + (t-1) lr_decay); s += g^2; p -= clr g / (sqrt(s) + eps)
void adagrad_dense(float* param, const float* grad, float* state_sum, int64_t n, int64_t step, const AdagradConfig& c);
// Adagrad's sparse branch (unique rows): the same per touched row (a weight_decay, which torch
// refuses for sparse gradients, adds wd p_r on those rows as rechub's CPU rule does).
void adagrad_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                         float* state_sum, int64_t step, const AdagradConfig& c);

struct SgdConfig {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};
// torch.optim.SGD: g += wd * p; with momentum: buf = g on the first step (step == 1), else
// buf = momentum buf + (1 - dampening) g; g = nesterov ? g + momentum buf : buf; p -= lr g.
// momentum_buf may be null when momentum == 0.
void sgd_dense(float* param, const float* grad, float* momentum_buf, int64_t n, int64_t step, const SgdConfig& c);
// SGD on a row-sparse gradient (momentum and weight_decay must be 0, as PyTorch requires):
// p[rows[i], :] -= lr * grad_rows[i, :]; duplicate rows are all applied (atomic adds).
void sgd_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                     const SgdConfig& c);
// rechub's CPU rule for SGD on a row-sparse gradient with UNIQUE rows: d = g + wd p_r; with momentum
// the buffer rows are updated lazily: buf_r = d when `first_step` (the buffer was just created,
// zero-filled), else momentum buf_r + (1 - dampening) d; d = nesterov ? d + momentum buf_r : buf_r;
// p_r -= lr d. momentum_buf may be null when momentum == 0.
void sgd_sparse_unique_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                            float* momentum_buf, bool first_step, const SgdConfig& c);

// ---- gradient clipping ----
// acc[0] (a device double, zeroed by the caller) += sum |g|^p over g[0, n) for norm_type p
// (p == 2 squares), or acc[0] = max(acc[0], max |g|) when `inf`. Partial sums in double.
void grad_norm_accumulate(const float* g, int64_t n, double norm_type, bool inf, double* acc);
// x[0, n) *= c.
void scale_inplace(float* x, int64_t n, float c);

}  // namespace rechub::kernels::cuda
