#include "rechub/mtl/models/mlp_list.h"

#include <algorithm>

#include "rechub/core/ops.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/linear.h"

namespace rechub::models {

MLPList::MLPList(nn::Module& parent, const std::string& name, int64_t count, int64_t input_dim,
                 const std::vector<int64_t>& dims, const std::string& activation, double dropout, bool output_layer,
                 Generator* init, bool as_list)
    : MLPList(parent, name, std::vector<std::vector<int64_t>>(static_cast<size_t>(std::max<int64_t>(count, 0)), dims),
              input_dim, activation, dropout, output_layer, init, as_list) {}

MLPList::MLPList(nn::Module& parent, const std::string& name, const std::vector<std::vector<int64_t>>& dims_of,
                 int64_t input_dim, const std::string& activation, double dropout, bool output_layer, Generator* init,
                 bool as_list)
    : name_(name), act_(ops::activation_from_name(activation, name + " activation")), dropout_(dropout) {
  const auto count = static_cast<int64_t>(dims_of.size());
  RECHUB_CHECK(count >= 1, name << ": needs at least one MLP, got " << count);
  RECHUB_CHECK(as_list || count == 1, name << ": only a list can hold " << count << " MLPs");
  RECHUB_CHECK(dropout >= 0.0 && dropout < 1.0, name << ": dropout must be in [0, 1), got " << dropout);
  std::shared_ptr<nn::Module> list = as_list ? parent.register_module(name, std::make_shared<nn::Module>()) : nullptr;
  for (int64_t i = 0; i < count; ++i) {
    const std::vector<int64_t>& dims = dims_of[static_cast<size_t>(i)];
    auto m = std::make_shared<nn::MLP>(nn::MLPOptions{.input_dim = input_dim,
                                                      .dims = dims,
                                                      .activation = activation,
                                                      .dropout = dropout,
                                                      .batch_norm = true,
                                                      .output_layer = output_layer,
                                                      .generator = init});
    if (as_list)
      list->register_module(std::to_string(i), m);
    else
      parent.register_module(name, m);
    mlps_.push_back(m);
    // Layout of nn::MLP with batch_norm: Linear, BatchNorm1d, activation, Dropout per hidden
    // layer, then the output Linear.
    nn::Sequential& seq = m->layers();
    std::vector<Layer> hidden;
    for (size_t k = 0; k < dims.size(); ++k) {
      auto lin = std::dynamic_pointer_cast<nn::Linear>(seq[4 * k]);
      auto bn = std::dynamic_pointer_cast<nn::BatchNorm1d>(seq[4 * k + 1]);
      RECHUB_CHECK(lin && bn, "MLPList: unexpected nn::MLP layout (Linear, BatchNorm1d, activation, Dropout)");
      hidden.push_back({lin->weight(), lin->bias(), bn->weight(), bn->bias(), bn->running_mean(), bn->running_var(),
                        m->buffer("mlp." + std::to_string(4 * k + 1) + ".num_batches_tracked")});
    }
    hidden_.push_back(hidden);
    Layer out;
    if (output_layer) {
      auto lin = std::dynamic_pointer_cast<nn::Linear>(seq[4 * dims.size()]);
      RECHUB_CHECK(lin, "MLPList: unexpected nn::MLP layout (no output Linear)");
      out.weight = lin->weight();
      out.bias = lin->bias();
    }
    output_.push_back(out);
  }
  output_dim_ = mlps_[0]->output_dim();
  for (const auto& m : mlps_)
    RECHUB_CHECK(m->output_dim() == output_dim_,
                 name << ": the MLPs' outputs differ in width (" << output_dim_ << " vs " << m->output_dim() << ")");
}

std::vector<ops::ExpertLayerParams> MLPList::block_params(int64_t first, int64_t count) const {
  std::vector<ops::ExpertLayerParams> layers(hidden_[first].size());
  for (size_t k = 0; k < layers.size(); ++k)
    for (int64_t e = first; e < first + count; ++e) {
      const Layer& L = hidden_[e][k];
      layers[k].weight.push_back(L.weight);
      layers[k].bias.push_back(L.bias);
      layers[k].bn_weight.push_back(L.gamma);
      layers[k].bn_bias.push_back(L.beta);
      layers[k].running_mean.push_back(L.running_mean);
      layers[k].running_var.push_back(L.running_var);
    }
  return layers;
}

Tensor MLPList::run_hidden(const Tensor& x, int64_t first, int64_t count, bool fused, Generator& gen) const {
  RECHUB_CHECK(first >= 0 && count >= 1 && first + count <= size(),
               name_ << ": MLPs [" << first << ", " << first + count << ") out of " << size());
  for (int64_t e = first + 1; e < first + count; ++e) {
    bool same = hidden_[e].size() == hidden_[first].size();
    for (size_t k = 0; same && k < hidden_[e].size(); ++k)
      same = hidden_[e][k].weight.shape() == hidden_[first][k].weight.shape();
    RECHUB_CHECK(same, name_ << ": MLPs " << first << " and " << e << " differ in shape and cannot run as one block");
  }
  if (hidden_[first].empty()) return x;
  const ops::ExpertsOptions o{.activation = act_, .training = is_training(), .dropout = dropout_, .generator = &gen};
  std::vector<ops::ExpertLayerParams> layers = block_params(first, count);
  Tensor y = fused ? ops::experts_forward(x, layers, o) : ops::experts_forward_unfused(x, layers, o);
  if (is_training()) {
    for (int64_t e = first; e < first + count; ++e)
      for (const Layer& L : hidden_[e]) {
        Tensor nb = L.num_batches;
        nn::increment_counter(nb);
      }
  }
  return y;
}

Tensor MLPList::forward_block(const Tensor& x, int64_t first, int64_t count, bool fused, Generator& gen) const {
  RECHUB_CHECK(!output_[first].weight.defined(), name_ << ": forward_block needs MLPs without output layer");
  return run_hidden(x, first, count, fused, gen);
}

Tensor MLPList::forward_one(int64_t i, const Tensor& x, bool fused, Generator& gen) const {
  Tensor h = run_hidden(x, i, 1, fused, gen);
  const Layer& out = output_.at(i);
  return out.weight.defined() ? ops::linear(h, out.weight, out.bias) : h;
}

std::vector<Tensor> MLPList::last_layer_parameters(int64_t i) const {
  const Layer& L = output_.at(i).weight.defined() ? output_.at(i) : hidden_.at(i).back();
  return {L.weight, L.bias};
}

}  // namespace rechub::models
