#pragma once
// Activations as modules, built by name (case-insensitive) as torch-rechub's activation_layer does:
//   "relu", "sigmoid", "tanh", "softmax" (over the last dim), "leaky_relu" (alias "leakyrelu",
//   slope 0.01), "identity" (alias "linear"): no parameters;
//   "prelu": one learnable slope, parameter "weight" [1] = 0.25 (nn.PReLU());
//   "dice":  DIN's Dice (Zhou et al., "Deep Interest Network", KDD 2018, eq. 7):
//              p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)),  f(s) = p(s) s + (1 - p(s)) alpha s,
//            with E/Var the per-feature batch mean and biased variance in training and running
//            averages (momentum 0.1, unbiased variance, as BatchNorm1d) in eval; eps = 1e-8 as in
//            the paper; parameter "alpha" [features] = 0, buffers "running_mean", "running_var".
//            (torch-rechub's Dice normalises each row over its features with eps 1e-3 instead; this
//            is the paper's version.) Needs the feature count.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/nn/module.h"

namespace rechub::nn {

// The accepted names, for messages and documentation.
const std::vector<std::string>& activation_names();

// Throws rechub::Error listing the valid names for an unknown one, and for "dice" without
// num_features.
std::shared_ptr<UnaryModule> make_activation(const std::string& name, int64_t num_features = 0);

// The parameter-free activations.
class Activation : public UnaryModule {
 public:
  enum class Kind { relu, sigmoid, tanh, softmax, leaky_relu, identity };
  explicit Activation(Kind kind, double negative_slope = 0.01) : kind_(kind), slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override;
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
  double slope_;
};

class PReLU : public UnaryModule {
 public:
  // num_parameters 1 (one shared slope) or the channel count; weight = init.
  explicit PReLU(int64_t num_parameters = 1, double init = 0.25);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "PReLU"; }
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

class Dice : public UnaryModule {
 public:
  explicit Dice(int64_t num_features, double eps = 1e-8, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;  // x [N, num_features]
  std::string type_name() const override { return "Dice"; }
  const Tensor& alpha() const { return alpha_; }

 private:
  int64_t c_;
  double eps_, momentum_;
  Tensor alpha_, running_mean_, running_var_;
};

}  // namespace rechub::nn
