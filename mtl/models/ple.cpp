#include "rechub/mtl/models/ple.h"

#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/mtl/models/config_io.h"

namespace rechub::models {

// Every field of PLEConfig, once: to_json and the JSON reader both walk this list.
template <class C, class V>
void ple_fields(C& c, V& v) {
  detail::common_fields(c, v);
  v("expert_units", c.expert_units);
  v("num_experts", c.num_experts);
  v("num_layers", c.num_layers);
  v("num_shared_experts", c.num_shared_experts);
  v("num_tasks", c.num_tasks);
  v("task_types", c.task_types);
  v("expert_activation", c.expert_activation);
  v("tower_units", c.tower_units);
  v("tower_units_per_task", c.tower_units_per_task);
  v("tower_activation", c.tower_activation);
}

nlohmann::json to_json(const PLEConfig& c) {
  return detail::write_config(c, ple_fields<const PLEConfig, detail::ConfigWriter>);
}

PLEConfig ple_config_from_json(const nlohmann::json& j) {
  return detail::read_config<PLEConfig>(j, "ple", ple_fields<PLEConfig, detail::ConfigReader>);
}

PLE::PLE(const PLEConfig& c) : config_(c) {
  init_common("PLE", c.features, c.num_tasks, c.task_types, c.task_names, {}, c.embedding_init_std, c.seed,
              c.sparse_embeddings, c.embedding_shards);
  RECHUB_CHECK(c.num_layers >= 1, "PLE: num_layers must be at least 1, got " << c.num_layers);
  RECHUB_CHECK(c.num_experts >= 1,
               "PLE: num_experts (task-specific experts per task) must be at least 1, got " << c.num_experts);
  RECHUB_CHECK(c.num_shared_experts >= 1, "PLE: num_shared_experts must be at least 1, got " << c.num_shared_experts);
  RECHUB_CHECK(!c.expert_units.empty(), "PLE: expert_units is empty (each expert needs at least one layer)");
  ops::activation_from_name(c.expert_activation, "PLE.expert_activation");
  ops::activation_from_name(c.tower_activation, "PLE.tower_activation");
  fused_ = c.fused;
  Generator init(c.seed);
  const int64_t T = num_tasks(), h = c.expert_units.back();
  auto cgc = register_module("cgc_layers", std::make_shared<nn::Module>());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto level = cgc->register_module(std::to_string(l), std::make_shared<nn::Module>());
    const int64_t in = l == 0 ? input_dim() : h;
    Level L;
    L.specific = std::make_unique<MLPList>(*level, "experts_specific", T * c.num_experts, in, c.expert_units,
                                           c.expert_activation, c.dropout, false, &init);
    L.shared = std::make_unique<MLPList>(*level, "experts_shared", c.num_shared_experts, in, c.expert_units,
                                         c.expert_activation, c.dropout, false, &init);
    auto gates = level->register_module("gates_specific", std::make_shared<nn::Module>());
    for (int64_t t = 0; t < T; ++t)
      L.task_gates.push_back(gates->register_module(
          std::to_string(t), std::make_shared<nn::Linear>(in, c.num_experts + c.num_shared_experts, true, &init)));
    if (l + 1 < c.num_layers)
      L.shared_gate = level->register_module(
          "gate_shared", std::make_shared<nn::Linear>(in, T * c.num_experts + c.num_shared_experts, true, &init));
    levels_.push_back(std::move(L));
  }
  towers_ =
      std::make_unique<MLPList>(*this, "towers", tower_units_of_tasks(c.tower_units, c.tower_units_per_task, T, "PLE"),
                                h, c.tower_activation, c.dropout, true, &init);
}

ModelOutput PLE::forward(const Tensor& sparse, const Tensor& dense) {
  const Tensor x = embed_inputs(sparse, dense);
  const int64_t T = num_tasks(), h = config_.expert_units.back(), ns = config_.num_experts;
  std::vector<Tensor> inputs(T + 1, x);
  std::map<std::string, Tensor> extras;
  for (size_t l = 0; l < levels_.size(); ++l) {
    const Level& L = levels_[l];
    std::vector<Tensor> specific(T);
    for (int64_t t = 0; t < T; ++t)
      specific[t] = L.specific->forward_block(inputs[t], t * ns, ns, fused_, dropout_generator());
    const Tensor shared =
        L.shared->forward_block(inputs[T], 0, config_.num_shared_experts, fused_, dropout_generator());
    auto mix = [&](const nn::Linear& g, const Tensor& in, const std::vector<Tensor>& groups) {
      return fused_ ? ops::gate_mix(in, g.weight(), g.bias(), groups, h)
                    : ops::gate_mix_unfused(in, g.weight(), g.bias(), groups, h);
    };
    std::vector<Tensor> outs;
    for (int64_t t = 0; t < T; ++t) {
      ops::GateMixOutput m = mix(*L.task_gates[t], inputs[t], {specific[t], shared});
      extras["gate." + std::to_string(l) + "." + task_names()[t]] = m.gates;
      outs.push_back(m.mixed);
    }
    if (L.shared_gate) {
      std::vector<Tensor> all = specific;
      all.push_back(shared);
      ops::GateMixOutput m = mix(*L.shared_gate, inputs[T], all);
      extras["gate." + std::to_string(l) + ".shared"] = m.gates;
      outs.push_back(m.mixed);
    }
    inputs = outs;
  }
  std::vector<Tensor> logits;
  for (int64_t t = 0; t < T; ++t) logits.push_back(towers_->forward_one(t, inputs[t], fused_, dropout_generator()));
  ModelOutput out = outputs_from_logits(logits);
  out.extras = std::move(extras);
  return out;
}

nlohmann::json PLE::config_json() const {
  nlohmann::json j = to_json(config_);
  j["fused"] = fused_;
  return j;
}

int64_t PLE::task_of(const std::string& name) const {
  int64_t t = detail::index_after(name, "towers.");
  if (t >= 0) return t;
  const int64_t l = detail::index_after(name, "cgc_layers.");
  if (l < 0) return -1;
  const std::string rest = name.substr(name.find('.', std::string("cgc_layers.").size()) + 1);
  t = detail::index_after(rest, "experts_specific.");
  if (t >= 0) return t / config_.num_experts;
  return detail::index_after(rest, "gates_specific.");
}

std::vector<Tensor> PLE::last_shared_parameters() const {
  std::vector<Tensor> out;
  const MLPList& shared = *levels_.back().shared;
  for (int64_t e = 0; e < shared.size(); ++e)
    for (const Tensor& p : shared.last_layer_parameters(e)) out.push_back(p);
  return out;
}

}  // namespace rechub::models
