#include "rechub/mtl/models/shared_bottom.h"

#include "rechub/core/ops_fused.h"
#include "rechub/mtl/models/config_io.h"

namespace rechub::models {

// Every field of SharedBottomConfig, once: to_json and the JSON reader both walk this list.
template <class C, class V>
void shared_bottom_fields(C& c, V& v) {
  detail::common_fields(c, v);
  v("hidden_units", c.hidden_units);
  v("task_hidden_units", c.task_hidden_units);
  v("task_hidden_units_per_task", c.task_hidden_units_per_task);
  v("num_tasks", c.num_tasks);
  v("task_types", c.task_types);
  v("activation", c.activation);
}

nlohmann::json to_json(const SharedBottomConfig& c) {
  return detail::write_config(c, shared_bottom_fields<const SharedBottomConfig, detail::ConfigWriter>);
}

SharedBottomConfig shared_bottom_config_from_json(const nlohmann::json& j) {
  return detail::read_config<SharedBottomConfig>(j, "shared_bottom",
                                                 shared_bottom_fields<SharedBottomConfig, detail::ConfigReader>);
}

SharedBottom::SharedBottom(const SharedBottomConfig& c) : config_(c) {
  init_common("SharedBottom", c.features, c.num_tasks, c.task_types, c.task_names, {}, c.embedding_init_std, c.seed,
              c.sparse_embeddings, c.embedding_shards);
  RECHUB_CHECK(!c.hidden_units.empty(), "SharedBottom: hidden_units is empty (the shared bottom needs a layer)");
  ops::activation_from_name(c.activation, "SharedBottom.activation");
  fused_ = c.fused;
  Generator init(c.seed);
  bottom_ = std::make_unique<MLPList>(*this, "bottom_mlp", 1, input_dim(), c.hidden_units, c.activation, c.dropout,
                                      false, &init, false);
  towers_ = std::make_unique<MLPList>(
      *this, "towers",
      tower_units_of_tasks(c.task_hidden_units, c.task_hidden_units_per_task, num_tasks(), "SharedBottom"),
      c.hidden_units.back(), c.activation, c.dropout, true, &init);
}

ModelOutput SharedBottom::forward(const Tensor& sparse, const Tensor& dense) {
  const Tensor z = bottom_->forward_block(embed_inputs(sparse, dense), 0, 1, fused_, dropout_generator());
  std::vector<Tensor> logits;
  for (int64_t t = 0; t < num_tasks(); ++t) logits.push_back(towers_->forward_one(t, z, fused_, dropout_generator()));
  return outputs_from_logits(logits);
}

nlohmann::json SharedBottom::config_json() const {
  nlohmann::json j = to_json(config_);
  j["fused"] = fused_;
  return j;
}

int64_t SharedBottom::task_of(const std::string& name) const { return detail::index_after(name, "towers."); }

std::vector<Tensor> SharedBottom::last_shared_parameters() const { return bottom_->last_layer_parameters(0); }

}  // namespace rechub::models
