#include "rechub/mtl/models/esmm.h"

#include <algorithm>
#include <limits>

#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/mtl/models/config_io.h"

namespace rechub::models {

// Every field of ESMMConfig, once: to_json and the JSON reader both walk this list.
template <class C, class V>
void esmm_fields(C& c, V& v) {
  detail::common_fields(c, v);
  v("hidden_units", c.hidden_units);
  v("tower_units", c.tower_units);
  v("tower_units_per_task", c.tower_units_per_task);
  v("embedding_dim", c.embedding_dim);
  v("activation", c.activation);
}

nlohmann::json to_json(const ESMMConfig& c) {
  return detail::write_config(c, esmm_fields<const ESMMConfig, detail::ConfigWriter>);
}

ESMMConfig esmm_config_from_json(const nlohmann::json& j) {
  return detail::read_config<ESMMConfig>(j, "esmm", esmm_fields<ESMMConfig, detail::ConfigReader>);
}

ESMM::ESMM(const ESMMConfig& c) : config_(c) {
  RECHUB_CHECK(c.embedding_dim >= 0,
               "ESMM: embedding_dim must be >= 0 (0: each feature's embed_dim), got " << c.embedding_dim);
  init_common("ESMM", c.features, 2, {TaskType::binary, TaskType::binary}, c.task_names, {"ctr", "ctcvr"},
              c.embedding_init_std, c.seed, c.sparse_embeddings, c.embedding_shards, c.embedding_dim);
  ops::activation_from_name(c.activation, "ESMM.activation");
  fused_ = c.fused;
  Generator init(c.seed);
  int64_t in = input_dim();
  if (!c.hidden_units.empty()) {
    bottom_ = std::make_unique<MLPList>(*this, "bottom_mlp", 1, in, c.hidden_units, c.activation, c.dropout, false,
                                        &init, false);
    in = c.hidden_units.back();
  }
  // Per-task widths are in task order: [0] the CTR task's tower, [1] the CTCVR task's (its CVR tower).
  const auto units = tower_units_of_tasks(c.tower_units, c.tower_units_per_task, 2, "ESMM");
  tower_cvr_ = std::make_unique<MLPList>(*this, "tower_cvr", std::vector<std::vector<int64_t>>{units[1]}, in,
                                         c.activation, c.dropout, true, &init, false);
  tower_ctr_ = std::make_unique<MLPList>(*this, "tower_ctr", std::vector<std::vector<int64_t>>{units[0]}, in,
                                         c.activation, c.dropout, true, &init, false);
}

ModelOutput ESMM::forward(const Tensor& sparse, const Tensor& dense) {
  Tensor x = embed_inputs(sparse, dense);
  if (bottom_) x = bottom_->forward_block(x, 0, 1, fused_, dropout_generator());
  const Tensor cvr_logit = tower_cvr_->forward_one(0, x, fused_, dropout_generator());
  const Tensor ctr_logit = tower_ctr_->forward_one(0, x, fused_, dropout_generator());
  const Tensor pcvr = ops::sigmoid(cvr_logit), pctr = ops::sigmoid(ctr_logit);
  ModelOutput out;
  out.logits = {ctr_logit, Tensor()};
  out.predictions = {pctr, pctr * pcvr};
  out.extras["cvr"] = pcvr.detach();
  out.extras["cvr_logit"] = cvr_logit.detach();
  return out;
}

Tensor weighted_bce_on_probs(const Tensor& p, const Tensor& y, double pos_weight) {
  if (pos_weight == 1.0) return ops::binary_cross_entropy(p, y);
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor lp = ops::clamp(ops::log(p), -100.0, inf), lq = ops::clamp(ops::log(1.0 - p), -100.0, inf);
  return -ops::mean(y * lp * pos_weight + (1.0 - y) * lq);
}

std::vector<Tensor> ESMM::loss(const ModelOutput& out, const Tensor& labels, const LossOptions& o) const {
  RECHUB_CHECK(out.predictions.size() == 2, "ESMM: the output has " << out.predictions.size() << " tasks, expected 2");
  RECHUB_CHECK(o.weights.empty() || o.weights.size() == 2, "ESMM: " << o.weights.size() << " loss weights for 2 tasks");
  RECHUB_CHECK(o.pos_weights.empty() || o.pos_weights.size() == 2,
               "ESMM: " << o.pos_weights.size() << " pos_weights for 2 tasks");
  std::vector<Tensor> y = label_columns(labels, out.predictions[0].size(0));
  std::vector<Tensor> losses;
  for (int t = 0; t < 2; ++t) {
    const double pw = o.pos_weights.empty() ? 1.0 : o.pos_weights[t];
    Tensor l;
    if (o.masks && (*o.masks)[static_cast<size_t>(t)].mask.defined()) {
      // The mean over the labelled rows (models::LossOptions::masks); 0 for a batch without any.
      const LabelMask& m = (*o.masks)[static_cast<size_t>(t)];
      const double inf = std::numeric_limits<double>::infinity();
      const Tensor& p = out.predictions[t];
      const Tensor lp = ops::clamp(ops::log(p), -100.0, inf), lq = ops::clamp(ops::log(1.0 - p), -100.0, inf);
      const Tensor per_row = -(m.labels * lp * pw + (1.0 - m.labels) * lq);
      l = ops::sum(ops::mul(per_row, m.mask)) * (1.0 / static_cast<double>(std::max<int64_t>(1, m.labelled)));
    } else {
      l = weighted_bce_on_probs(out.predictions[t], y[t], pw);
    }
    if (!o.weights.empty() && o.weights[t] != 1.0) l = l * o.weights[t];
    losses.push_back(l);
  }
  return losses;
}

nlohmann::json ESMM::config_json() const {
  nlohmann::json j = to_json(config_);
  j["fused"] = fused_;
  return j;
}

int64_t ESMM::task_of(const std::string& name) const {
  if (detail::starts_with(name, "tower_ctr.")) return 0;
  if (detail::starts_with(name, "tower_cvr.")) return 1;
  return -1;
}

std::vector<Tensor> ESMM::last_shared_parameters() const {
  if (bottom_) return bottom_->last_layer_parameters(0);
  return features().sparse.empty() ? std::vector<Tensor>{} : embedding().arenas();
}

}  // namespace rechub::models
