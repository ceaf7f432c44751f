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
};
// torch.optim.Adam (amsgrad=False, maximize=False):
//   g += wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
void adam_dense(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, int64_t step,
                const AdamConfig& c);
// torch.optim.SparseAdam ("lazy" Adam) on the rows a row-sparse gradient touches; `rows` must be
// unique (a coalesced gradient), grad_rows is [nrows, dim]:
//   m_r += (1-b1)(g - m_r);  v_r += (1-b2)(g^2 - v_r)
//   p_r -= lr sqrt(1 - b2^t) / (1 - b1^t) * m_r / (sqrt(v_r) + eps)
// (SparseAdam adds eps to sqrt(v) before the bias correction, unlike Adam.) weight_decay must be 0.
void adam_sparse_rows(float* param, int64_t dim, const int64_t* rows, const float* grad_rows, int64_t nrows,
                      float* exp_avg, float* exp_avg_sq, int64_t step, const AdamConfig& c);

struct AdagradConfig {
  double lr = 1e-2, lr_decay = 0.0, weight_decay = 0.0, eps = 1e-10;
};
// torch.optim.Adagrad: g += wd * p; clr = lr / (1 + (t-1) lr_decay); s += g^2; p -= clr g / (sqrt(s) + eps)
void adagrad_dense(float* param, const float* grad, float* state_sum, int64_t n, int64_t step, const AdagradConfig& c);
// Adagrad's sparse branch (unique rows, weight_decay must be 0): the same per touched row.
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

}  // namespace rechub::kernels::cuda
