#pragma once
// Internal to nn/: the CUDA side of the optimizers (nn/optim_cuda.cpp). Every function takes
// tensors on one CUDA device and queues its work on that device's stream; none reads device
// memory on the host except grad_norm_on_device (one double). In a build without CUDA they throw.
#include <string>
#include <vector>

#include "rechub/core/tensor.h"

namespace rechub::nn::detail {

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

}  // namespace rechub::nn::detail
