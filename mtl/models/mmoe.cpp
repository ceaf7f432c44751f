#include "rechub/mtl/models/mmoe.h"

#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/mtl/models/config_io.h"

namespace rechub::models {

// Every field of MMoEConfig, once: to_json and the JSON reader both walk this list.
template <class C, class V>
void mmoe_fields(C& c, V& v) {
  detail::common_fields(c, v);
  v("expert_units", c.expert_units);
  v("num_experts", c.num_experts);
  v("num_tasks", c.num_tasks);
  v("task_types", c.task_types);
  v("expert_activation", c.expert_activation);
  v("tower_units", c.tower_units);
  v("tower_units_per_task", c.tower_units_per_task);
  v("tower_activation", c.tower_activation);
}

nlohmann::json to_json(const MMoEConfig& c) {
  return detail::write_config(c, mmoe_fields<const MMoEConfig, detail::ConfigWriter>);
}

MMoEConfig mmoe_config_from_json(const nlohmann::json& j, const std::string& kind) {
  // Configs written before the field was dropped (checkpoints of rechub 0.1) carry
  // "gate_activation": "softmax", the only value it ever accepted. It is read and checked, not kept.
  if (j.is_object() && j.contains("gate_activation")) {
    const nlohmann::json& g = j.at("gate_activation");
    RECHUB_CHECK(g.is_string() && g.get<std::string>() == "softmax",
                 kind << " config: 'gate_activation' = " << g.dump() << " is not supported: the gate is a softmax");
    nlohmann::json rest = j;
    rest.erase("gate_activation");
    return detail::read_config<MMoEConfig>(rest, kind, mmoe_fields<MMoEConfig, detail::ConfigReader>);
  }
  return detail::read_config<MMoEConfig>(j, kind, mmoe_fields<MMoEConfig, detail::ConfigReader>);
}

MMoE::MMoE(const MMoEConfig& c, bool one_gate) : config_(c), one_gate_(one_gate) {
  const std::string k = one_gate ? "OMoE" : "MMoE";
  init_common(k, c.features, c.num_tasks, c.task_types, c.task_names, {}, c.embedding_init_std, c.seed,
              c.sparse_embeddings, c.embedding_shards);
  RECHUB_CHECK(c.num_experts >= 1, k << ": num_experts must be at least 1, got " << c.num_experts);
  RECHUB_CHECK(!c.expert_units.empty(), k << ": expert_units is empty (each expert needs at least one layer)");
  ops::activation_from_name(c.expert_activation, k + ".expert_activation");
  ops::activation_from_name(c.tower_activation, k + ".tower_activation");
  fused_ = c.fused;
  Generator init(c.seed);
  const int64_t T = num_tasks();
  experts_ = std::make_unique<MLPList>(*this, "experts", c.num_experts, input_dim(), c.expert_units,
                                       c.expert_activation, c.dropout, false, &init);
  if (one_gate) {
    gates_.push_back(register_module("gate", std::make_shared<nn::Linear>(input_dim(), c.num_experts, true, &init)));
  } else {
    auto list = register_module("gates", std::make_shared<nn::Module>());
    for (int64_t t = 0; t < T; ++t)
      gates_.push_back(list->register_module(std::to_string(t),
                                             std::make_shared<nn::Linear>(input_dim(), c.num_experts, true, &init)));
  }
  towers_ =
      std::make_unique<MLPList>(*this, "towers", tower_units_of_tasks(c.tower_units, c.tower_units_per_task, T, k),
                                c.expert_units.back(), c.tower_activation, c.dropout, true, &init);
}

ModelOutput MMoE::forward(const Tensor& sparse, const Tensor& dense) {
  const Tensor x = embed_inputs(sparse, dense);
  const int64_t h = config_.expert_units.back(), T = num_tasks();
  const Tensor experts = experts_->forward_block(x, 0, config_.num_experts, fused_, dropout_generator());
  std::vector<Tensor> logits;
  std::map<std::string, Tensor> extras;
  ops::GateMixOutput shared;
  for (int64_t t = 0; t < T; ++t) {
    const nn::Linear& g = *gates_[one_gate_ ? 0 : t];
    ops::GateMixOutput m;
    if (one_gate_ && t > 0) {
      m = shared;
    } else {
      m = fused_ ? ops::gate_mix(x, g.weight(), g.bias(), {experts}, h)
                 : ops::gate_mix_unfused(x, g.weight(), g.bias(), {experts}, h);
      shared = m;
      extras["gate." + (one_gate_ ? std::string("shared") : task_names()[t])] = m.gates;
    }
    logits.push_back(towers_->forward_one(t, m.mixed, fused_, dropout_generator()));
  }
  ModelOutput out = outputs_from_logits(logits);
  out.extras = std::move(extras);
  return out;
}

nlohmann::json MMoE::config_json() const {
  nlohmann::json j = to_json(config_);
  j["fused"] = fused_;
  return j;
}

int64_t MMoE::task_of(const std::string& name) const {
  if (!one_gate_) {
    const int64_t t = detail::index_after(name, "gates.");
    if (t >= 0) return t;
  }
  return detail::index_after(name, "towers.");
}

std::vector<Tensor> MMoE::last_shared_parameters() const {
  std::vector<Tensor> out;
  for (int64_t e = 0; e < experts_->size(); ++e)
    for (const Tensor& p : experts_->last_layer_parameters(e)) out.push_back(p);
  return out;
}

}  // namespace rechub::models
