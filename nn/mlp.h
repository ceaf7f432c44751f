#pragma once
// MLP as torch-rechub builds it: per hidden width d, Linear(in, d) -> BatchNorm1d(d) ->
// activation -> Dropout(p), then (with output_layer) a final Linear(last, 1).
//
// Parameter names follow torch-rechub exactly: the layers sit in a Sequential registered as
// "mlp", numbered in order, so with dims {16, 8} and batch_norm:
//   mlp.0 Linear(in,16)   mlp.1 BatchNorm1d(16)   mlp.2 activation   mlp.3 Dropout
//   mlp.4 Linear(16,8)    mlp.5 BatchNorm1d(8)    mlp.6 activation   mlp.7 Dropout
//   mlp.8 Linear(8,1)
// giving "mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.running_mean", ..., "mlp.8.bias";
// a PyTorch user loads them into torch-rechub's MLP unchanged. Without batch_norm each hidden
// layer is three entries (Linear, activation, Dropout); the Dropout entry is present even at p = 0,
// as in torch-rechub. PReLU adds "mlp.<k>.weight", Dice "mlp.<k>.alpha" and its running stats.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/rng.h"
#include "rechub/nn/sequential.h"

namespace rechub::nn {

struct MLPOptions {
  int64_t input_dim = 0;
  std::vector<int64_t> dims = {};
  std::string activation = "relu";
  double dropout = 0.0;
  bool batch_norm = true;
  bool output_layer = true;
  // Weight initialisation (the default generator when null) and the Dropout layers' seeds
  // (layer k gets dropout_seed + k).
  Generator* generator = nullptr;
  uint64_t dropout_seed = 0x5eed;
};

class MLP : public UnaryModule {
 public:
  explicit MLP(const MLPOptions& opts);
  Tensor forward(const Tensor& x) override;  // [N, input_dim] -> [N, output_dim()]
  std::string type_name() const override { return "MLP"; }
  int64_t input_dim() const { return opts_.input_dim; }
  // 1 with output_layer, else the last hidden width (input_dim when dims is empty).
  int64_t output_dim() const { return output_dim_; }
  const MLPOptions& options() const { return opts_; }
  Sequential& layers() { return *mlp_; }

 private:
  MLPOptions opts_;
  int64_t output_dim_;
  std::shared_ptr<Sequential> mlp_;
};

}  // namespace rechub::nn
