#pragma once
// The optimizers' update kernels as core offers them to nn/optim*.cpp (nn includes no kernel):
//
// CUDA (core/ops_optim.cpp over kernels/cuda/optim.h): every function takes tensors on one CUDA
// device and queues its work on that device's stream; none reads device memory on the host except
// grad_norm_on_device (one double). In a build without CUDA they throw.
//
// CPU: the row-sparse Adam and Adagrad steps in registers (kernels/cpu/optim_rows.h), on the
// instruction set this machine runs (kernels/cpu/isa.h).
#include <cstdint>
#include <string>
#include <vector>

#include "rechub/core/tensor.h"
#include "rechub/kernels/cpu/optim_rows.h"

namespace rechub::ops {

// ---- CPU: row-sparse steps of a float table, rows idx[lo..hi) of width n, gradient row k at
// g + k * n. They return false where no vector kernel applies (no AVX2/AVX-512, or n not a
// multiple of the vector width) and the caller runs its portable loop. ----
using SparseAdamCoef = kernels::cpu::SparseAdamCoef;
// m += (1-b1)(g - m); v += (1-b2)(g^2 - v); p -= step_size * m / (sqrt(v) + eps); with L2 (g += wd p)
// or decoupled decay (p *= decay) first.
bool sparse_adam_rows(float* p, float* m, float* v, const float* g, const int64_t* idx, int64_t lo, int64_t hi,
                      int64_t n, const SparseAdamCoef& c);
// sum += g^2; p -= clr * g / (sqrt(sum) + eps); with L2 (g += wd p) first.
bool sparse_adagrad_rows(float* p, float* sum, const float* g, const int64_t* idx, int64_t lo, int64_t hi, int64_t n,
                         float clr, float eps, float wd, bool has_wd);

// ---- CUDA ----

// A row-sparse CUDA gradient with its duplicate rows summed, rows sorted (on the device; reads the
// unique count back).
Tensor coalesce_on_device(const Tensor& grad);
// sum |g|^p over the tensors (or max |g| when norm_type is infinite), all on one CUDA device.
double grad_norm_on_device(const std::vector<Tensor>& grads, double norm_type);
void scale_on_device(Tensor& g, double coef);

struct CudaAdam {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
};
// `grad` dense, or row-sparse with unique rows; step counted from 1.
void adam_update_cuda(Tensor& p, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step,
                      const CudaAdam& c);
struct CudaAdagrad {
  double lr, lr_decay, weight_decay, eps;
};
void adagrad_update_cuda(Tensor& p, const Tensor& grad, Tensor& sum, int64_t step, const CudaAdagrad& c);
struct CudaSgd {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
};
// momentum_buf undefined without momentum; `first` when the buffer was just created.
void sgd_update_cuda(Tensor& p, const Tensor& grad, Tensor& momentum_buf, bool first, const CudaSgd& c);

}  // namespace rechub::ops
