#pragma once
// Sequential: unary modules applied in order, registered as children "0", "1", ... (PyTorch's
// nn.Sequential naming, so "mlp.0.weight" means the same in both libraries).
#include <memory>
#include <vector>

#include "rechub/nn/module.h"

namespace rechub::nn {

class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule>> layers);
  void push_back(std::shared_ptr<UnaryModule> layer);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<UnaryModule>& operator[](size_t i) const { return layers_.at(i); }

 private:
  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

}  // namespace rechub::nn
