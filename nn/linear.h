#pragma once
// Linear: y = x W^T + b with PyTorch's layout (weight [out, in]) and default initialisation.
#include <cstdint>

#include "rechub/core/rng.h"
#include "rechub/nn/module.h"

namespace rechub::nn {

class Linear : public UnaryModule {
 public:
  // weight = kaiming_uniform(a = sqrt(5)) and bias ~ U(-1/sqrt(in), 1/sqrt(in)), i.e. both uniform
  // in +-1/sqrt(in_features), exactly PyTorch's reset_parameters (weight drawn first).
  // Parameters: "weight" [out, in], "bias" [out] (when bias).
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  // x [N, in] -> [N, out]; a wrong width is an error naming this layer.
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
};

}  // namespace rechub::nn
