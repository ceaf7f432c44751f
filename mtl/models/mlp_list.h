#pragma once
// MLPList: torch-rechub MLPs held as children "0", "1", ... (a PyTorch nn.ModuleList of MLP), run
// through the fused expert op: any contiguous range of equally shaped MLPs that read the same
// input runs as ONE expert block (ops::experts_forward), and a single MLP as a block of one
// expert followed by its output Linear. With fused = false the same parameters go through the
// unfused composition (ops::experts_forward_unfused), which draws the same dropout masks.
//
// Names: as a list registered as "experts", MLP 3's first Linear is "experts.3.mlp.0.weight" and
// its BatchNorm "experts.3.mlp.1.running_mean"; a single MLP registered as "bottom_mlp" has
// "bottom_mlp.mlp.0.weight": exactly torch-rechub's state_dict keys (ModuleList of MLP, or MLP).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/ops_fused.h"
#include "rechub/core/rng.h"
#include "rechub/nn/mlp.h"
#include "rechub/nn/module.h"

namespace rechub::models {

class MLPList {
 public:
  // `count` MLPs of the same shape: nn::MLP(input_dim, dims, activation, dropout, batch_norm =
  // true, output_layer), registered on `parent` as `name` (a list: children "0", "1", ...; or,
  // with as_list = false and count = 1, the MLP itself). Weights are drawn from `init` in order.
  MLPList(nn::Module& parent, const std::string& name, int64_t count, int64_t input_dim,
          const std::vector<int64_t>& dims, const std::string& activation, double dropout, bool output_layer,
          Generator* init, bool as_list = true);

  // MLPs [first, first + count) on the same x: [B, count * last_width] (hidden layers only:
  // the MLPs must be built without output layer).
  Tensor forward_block(const Tensor& x, int64_t first, int64_t count, bool fused, Generator& dropout_gen) const;
  // MLP i on x: [B, output_dim()].
  Tensor forward_one(int64_t i, const Tensor& x, bool fused, Generator& dropout_gen) const;

  int64_t size() const { return static_cast<int64_t>(mlps_.size()); }
  int64_t output_dim() const { return output_dim_; }
  const nn::MLP& mlp(int64_t i) const { return *mlps_.at(i); }
  // The Linear weight and bias of the last layer (hidden or output) of MLP i.
  std::vector<Tensor> last_layer_parameters(int64_t i) const;
  bool is_training() const { return mlps_[0]->is_training(); }

 private:
  struct Layer {
    Tensor weight, bias, gamma, beta, running_mean, running_var, num_batches;
  };
  std::vector<ops::ExpertLayerParams> block_params(int64_t first, int64_t count) const;
  Tensor run_hidden(const Tensor& x, int64_t first, int64_t count, bool fused, Generator& gen) const;

  std::vector<std::shared_ptr<nn::MLP>> mlps_;
  std::vector<std::vector<Layer>> hidden_;  // [mlp][layer]
  std::vector<Layer> output_;               // [mlp] (weight undefined without output layer)
  std::string name_;
  ops::Activation act_;
  double dropout_;
  int64_t output_dim_;
};

}  // namespace rechub::models
