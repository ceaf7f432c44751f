#include "rechub/mtl/models/aitm.h"

#include <cmath>

#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/mtl/models/config_io.h"

namespace rechub::models {

// Every field of AITMConfig, once: to_json and the JSON reader both walk this list.
template <class C, class V>
void aitm_fields(C& c, V& v) {
  detail::common_fields(c, v);
  v("hidden_units", c.hidden_units);
  v("tower_units", c.tower_units);
  v("tower_units_per_task", c.tower_units_per_task);
  v("num_tasks", c.num_tasks);
  v("task_types", c.task_types);
  v("activation", c.activation);
  v("calibrator_weight", c.calibrator_weight);
}

nlohmann::json to_json(const AITMConfig& c) {
  return detail::write_config(c, aitm_fields<const AITMConfig, detail::ConfigWriter>);
}

AITMConfig aitm_config_from_json(const nlohmann::json& j) {
  return detail::read_config<AITMConfig>(j, "aitm", aitm_fields<AITMConfig, detail::ConfigReader>);
}

AITM::AITM(const AITMConfig& c) : config_(c) {
  init_common("AITM", c.features, c.num_tasks, c.task_types, c.task_names, {}, c.embedding_init_std, c.seed,
              c.sparse_embeddings, c.embedding_shards);
  for (TaskType t : task_types())
    RECHUB_CHECK(t == TaskType::binary, "AITM: every task must be binary (a conversion funnel), got a regression task");
  RECHUB_CHECK(!c.hidden_units.empty(), "AITM: hidden_units is empty (each task's bottom needs a layer)");
  RECHUB_CHECK(c.calibrator_weight >= 0.0, "AITM: calibrator_weight must be >= 0, got " << c.calibrator_weight);
  ops::activation_from_name(c.activation, "AITM.activation");
  fused_ = c.fused;
  Generator init(c.seed);
  const int64_t T = num_tasks(), d = c.hidden_units.back();
  bottoms_ = std::make_unique<MLPList>(*this, "bottoms", T, input_dim(), c.hidden_units, c.activation, c.dropout, false,
                                       &init);
  towers_ =
      std::make_unique<MLPList>(*this, "towers", tower_units_of_tasks(c.tower_units, c.tower_units_per_task, T, "AITM"),
                                d, c.activation, c.dropout, true, &init);
  if (T > 1) {
    // torch-rechub's info gate: MLP(d, dims=[d], output_layer=False) with its defaults (relu, no dropout).
    info_ =
        std::make_unique<MLPList>(*this, "info_gates", T - 1, d, std::vector<int64_t>{d}, "relu", 0.0, false, &init);
    auto list = register_module("aits", std::make_shared<nn::Module>());
    for (int64_t t = 1; t < T; ++t) {
      auto m = list->register_module(std::to_string(t - 1), std::make_shared<nn::Module>());
      Attention a;
      a.q = m->register_module("q_layer", std::make_shared<nn::Linear>(d, d, false, &init));
      a.k = m->register_module("k_layer", std::make_shared<nn::Linear>(d, d, false, &init));
      a.v = m->register_module("v_layer", std::make_shared<nn::Linear>(d, d, false, &init));
      aits_.push_back(a);
    }
  }
}

// Self-attention over the two vectors u_0 = own, u_1 = info: one Linear each for Q, K, V over
// both (stacked along the batch), scores <Q u_i, K u_i> / sqrt(d), softmax over i.
Tensor AITM::attend(const Attention& a, const Tensor& own, const Tensor& info) const {
  const int64_t B = own.size(0), d = own.size(1);
  const Tensor u = ops::concat({own, info}, 0);
  const Tensor q = a.q->forward(u), k = a.k->forward(u), v = a.v->forward(u);
  const Tensor s = ops::sum(q * k, 1, true) * (1.0 / std::sqrt(static_cast<double>(d)));
  const Tensor w = ops::softmax(ops::concat({ops::narrow(s, 0, 0, B), ops::narrow(s, 0, B, B)}, 1), 1);
  return ops::slice(w, 1, 0, 1) * ops::narrow(v, 0, 0, B) + ops::slice(w, 1, 1, 2) * ops::narrow(v, 0, B, B);
}

ModelOutput AITM::forward(const Tensor& sparse, const Tensor& dense) {
  const Tensor x = embed_inputs(sparse, dense);
  const int64_t T = num_tasks();
  std::vector<Tensor> z(T), logits;
  for (int64_t t = 0; t < T; ++t) z[t] = bottoms_->forward_block(x, t, 1, fused_, dropout_generator());
  for (int64_t t = 1; t < T; ++t) {
    const Tensor info = info_->forward_block(z[t - 1], t - 1, 1, fused_, dropout_generator());
    z[t] = attend(aits_[t - 1], z[t], info);
  }
  for (int64_t t = 0; t < T; ++t) logits.push_back(towers_->forward_one(t, z[t], fused_, dropout_generator()));
  return outputs_from_logits(logits);
}

std::vector<Tensor> AITM::loss(const ModelOutput& out, const Tensor& labels, const LossOptions& o) const {
  std::vector<Tensor> losses = MultiTaskModel::loss(out, labels, o);
  if (config_.calibrator_weight > 0.0)
    for (int64_t t = 1; t < num_tasks(); ++t)
      losses[t] =
          losses[t] + ops::sum(ops::relu(out.predictions[t] - out.predictions[t - 1])) * config_.calibrator_weight;
  return losses;
}

nlohmann::json AITM::config_json() const {
  nlohmann::json j = to_json(config_);
  j["fused"] = fused_;
  return j;
}

int64_t AITM::task_of(const std::string& name) const {
  for (const char* p : {"bottoms.", "towers."}) {
    const int64_t t = detail::index_after(name, p);
    if (t >= 0) return t;
  }
  for (const char* p : {"info_gates.", "aits."}) {
    const int64_t t = detail::index_after(name, p);
    if (t >= 0) return t + 1;
  }
  return -1;
}

std::vector<Tensor> AITM::last_shared_parameters() const {
  return features().sparse.empty() ? std::vector<Tensor>{} : embedding().arenas();
}

}  // namespace rechub::models
