#pragma once
// BatchNorm1d with PyTorch's semantics (see ops::batch_norm for the formulas).
#include <cstdint>

#include "rechub/nn/module.h"

namespace rechub::nn {

class BatchNorm1d : public UnaryModule {
 public:
  // Parameters "weight" (ones) and "bias" (zeros) when affine; buffers "running_mean" (zeros),
  // "running_var" (ones) and "num_batches_tracked" (i64 scalar), the names PyTorch uses.
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true);
  // x [N, C] or [N, C, L]. Training: batch statistics (biased variance), running statistics
  // updated with the unbiased variance, num_batches_tracked += 1; a batch of one is an error.
  // Eval: running statistics.
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BatchNorm1d"; }

  int64_t num_features() const { return c_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }
  int64_t num_batches_tracked() const;

 private:
  int64_t c_;
  double eps_, momentum_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_;
};

// counter += 1 for an i64 scalar buffer (num_batches_tracked) on any device. On a CUDA device the
// value is kept in a host mirror (checked against the buffer's storage and version), so training
// steps write it (a fill kernel) without reading device memory; only the first increment after the
// buffer changed otherwise (to(), a checkpoint load) reads it back once.
void increment_counter(Tensor& counter);

}  // namespace rechub::nn
