#include "rechub/mtl/models/model.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "rechub/core/ops.h"

namespace rechub::models {

Features features_from_schema(const data::Schema& schema) { return {schema.sparse, schema.dense}; }

std::vector<std::vector<int64_t>> tower_units_of_tasks(const std::vector<int64_t>& all,
                                                       const std::vector<std::vector<int64_t>>& per_task,
                                                       int64_t num_tasks, const std::string& what) {
  if (per_task.empty()) return std::vector<std::vector<int64_t>>(static_cast<size_t>(num_tasks), all);
  RECHUB_CHECK(static_cast<int64_t>(per_task.size()) == num_tasks,
               what << ": " << per_task.size() << " tower shapes for " << num_tasks << " tasks (one list per task)");
  for (size_t t = 0; t < per_task.size(); ++t)
    for (int64_t u : per_task[t])
      RECHUB_CHECK(u > 0, what << ": task " << t << "'s tower widths must be > 0, got " << u);
  return per_task;
}

nlohmann::json features_to_json(const Features& f) {
  nlohmann::json sparse = nlohmann::json::array(), dense = nlohmann::json::array();
  for (const auto& s : f.sparse)
    sparse.push_back(
        {{"name", s.name}, {"vocab_size", s.vocab_size}, {"embed_dim", s.embed_dim}, {"shared_with", s.shared_with}});
  for (const auto& d : f.dense) dense.push_back(d.name);
  return {{"sparse", sparse}, {"dense", dense}};
}

Features features_from_json(const nlohmann::json& j, const std::string& origin) {
  RECHUB_CHECK(j.is_object(), origin << ": 'features' must be an object with 'sparse' and 'dense' lists");
  Features f;
  try {
    if (j.contains("sparse"))
      for (const auto& s : j.at("sparse"))
        f.sparse.push_back({.name = s.at("name").get<std::string>(),
                            .vocab_size = s.value("vocab_size", int64_t{0}),
                            .embed_dim = s.value("embed_dim", int64_t{16}),
                            .shared_with = s.value("shared_with", std::string())});
    if (j.contains("dense"))
      for (const auto& d : j.at("dense"))
        f.dense.push_back({.name = d.is_string() ? d.get<std::string>() : d.at("name").get<std::string>()});
  } catch (const nlohmann::json::exception& e) {
    RECHUB_FAIL(origin << ": bad 'features': " << e.what());
  }
  return f;
}

Tensor ModelOutput::prediction_matrix() const {
  NoGradGuard ng;
  std::vector<Tensor> cols;
  for (const Tensor& p : predictions) cols.push_back(p.detach());
  RECHUB_CHECK(!cols.empty(), "ModelOutput: no predictions");
  return cols.size() == 1 ? cols[0].clone() : ops::concat(cols, 1);
}

void MultiTaskModel::init_common(const std::string& kind, const Features& features, int64_t num_tasks,
                                 const std::vector<TaskType>& task_types, const std::vector<std::string>& task_names,
                                 const std::vector<std::string>& default_names, double embedding_init_std,
                                 uint64_t seed, bool sparse_embeddings,
                                 std::shared_ptr<dist::Communicator> embedding_shards, int64_t embedding_dim_override) {
  kind_ = kind;
  features_ = features;
  RECHUB_CHECK(!features.sparse.empty() || !features.dense.empty(),
               kind << ": no features: give at least one sparse or dense feature in .features");
  // num_tasks = -1 (the configs' default): as many as task_types or task_names list, else 2.
  if (num_tasks < 0)
    num_tasks = !task_types.empty()   ? static_cast<int64_t>(task_types.size())
                : !task_names.empty() ? static_cast<int64_t>(task_names.size())
                                      : 2;
  RECHUB_CHECK(num_tasks >= 1, kind << ": num_tasks must be at least 1, got " << num_tasks);
  RECHUB_CHECK(task_types.empty() || static_cast<int64_t>(task_types.size()) == num_tasks,
               kind << ": " << task_types.size() << " task_types for num_tasks = " << num_tasks);
  RECHUB_CHECK(task_names.empty() || static_cast<int64_t>(task_names.size()) == num_tasks,
               kind << ": " << task_names.size() << " task_names for num_tasks = " << num_tasks);
  task_types_ = task_types.empty() ? std::vector<TaskType>(num_tasks, TaskType::binary) : task_types;
  if (!task_names.empty()) {
    task_names_ = task_names;
  } else if (static_cast<int64_t>(default_names.size()) == num_tasks) {
    task_names_ = default_names;
  } else {
    for (int64_t t = 0; t < num_tasks; ++t) task_names_.push_back("task" + std::to_string(t));
  }
  std::set<std::string> seen;
  for (const std::string& n : task_names_)
    RECHUB_CHECK(!n.empty() && seen.insert(n).second,
                 kind << ": task names must be non-empty and distinct ('" << n << "')");
  std::set<std::string> names;
  for (const auto& s : features.sparse) {
    RECHUB_CHECK(!s.name.empty(), kind << ": a sparse feature has an empty name");
    RECHUB_CHECK(names.insert(s.name).second, kind << ": feature '" << s.name << "' is listed twice");
    if (s.shared_with.empty()) {
      RECHUB_CHECK(s.vocab_size > 0, kind << ": sparse feature '" << s.name << "' has vocab_size " << s.vocab_size
                                          << " (fit the preprocessor first, or set it)");
      RECHUB_CHECK(embedding_dim_override > 0 || s.embed_dim > 0,
                   kind << ": sparse feature '" << s.name << "' has embed_dim " << s.embed_dim);
    }
  }
  for (const auto& d : features.dense) {
    RECHUB_CHECK(!d.name.empty(), kind << ": a dense feature has an empty name");
    RECHUB_CHECK(names.insert(d.name).second, kind << ": feature '" << d.name << "' is listed twice");
  }
  int64_t emb_dim = 0;
  if (!features.sparse.empty()) {
    std::vector<nn::EmbeddingSpec> specs;
    for (const auto& s : features.sparse) {
      if (s.shared_with.empty())
        specs.push_back({s.name, s.vocab_size, embedding_dim_override > 0 ? embedding_dim_override : s.embed_dim, ""});
      else
        specs.push_back({s.name, 0, 0, s.shared_with});
    }
    embedding_ = register_module("embedding", std::make_shared<nn::EmbeddingCollection>(
                                                  specs, nn::EmbeddingOptions{.init_std = embedding_init_std,
                                                                              .seed = seed,
                                                                              .sparse = sparse_embeddings,
                                                                              .shards = std::move(embedding_shards)}));
    emb_dim = embedding_->output_dim();
  }
  input_dim_ = emb_dim + static_cast<int64_t>(features.dense.size());
  dropout_gen_.manual_seed(seed ^ 0xd50u);
}

Tensor MultiTaskModel::embed_inputs(const Tensor& sparse, const Tensor& dense) const {
  const int64_t n_sparse = static_cast<int64_t>(features_.sparse.size());
  const int64_t n_dense = static_cast<int64_t>(features_.dense.size());
  int64_t B = -1;
  Tensor emb;
  if (n_sparse > 0) {
    RECHUB_CHECK(sparse.defined() && sparse.dim() == 2 && sparse.size(1) == n_sparse,
                 kind_ << ": expected sparse ids [batch, " << n_sparse << "], got "
                       << (sparse.defined() ? shape_str(sparse.shape()) : std::string("none")));
    B = sparse.size(0);
    emb = embedding_->forward(sparse);
  }
  if (n_dense == 0) {
    RECHUB_CHECK(
        !dense.defined() || dense.numel() == 0 || (dense.dim() == 2 && dense.size(1) == 0),
        kind_ << ": the model has no dense features but dense values " << shape_str(dense.shape()) << " were given");
    return emb;
  }
  RECHUB_CHECK(dense.defined() && dense.dim() == 2 && dense.size(1) == n_dense && (B < 0 || dense.size(0) == B),
               kind_ << ": expected dense values [" << (B < 0 ? std::string("batch") : std::to_string(B)) << ", "
                     << n_dense << "], got " << (dense.defined() ? shape_str(dense.shape()) : std::string("none")));
  RECHUB_CHECK(dense.dtype() == DType::f32, kind_ << ": dense values must be f32, got " << dtype_name(dense.dtype()));
  // Inputs on the host follow the model to its device (the trainer uploads its batches ahead).
  const Device dev = emb.defined() ? emb.device() : device();
  const Tensor d = dense.device() == dev ? dense : dense.to(dev);
  if (!emb.defined()) return d;
  return ops::concat({emb, d}, 1);
}

std::vector<Tensor> MultiTaskModel::label_columns(const Tensor& labels, int64_t batch) const {
  const int64_t T = num_tasks();
  RECHUB_CHECK(labels.defined() && labels.dim() == 2 && labels.size(0) == batch && labels.size(1) == T,
               kind_ << ": expected labels [" << batch << ", " << T
                     << "] (one column per task: " << nlohmann::json(task_names_).dump() << "), got "
                     << (labels.defined() ? shape_str(labels.shape()) : std::string("none")));
  Tensor l = labels.dtype() == DType::f32 ? labels : labels.to(DType::f32);
  const Device dev = device();
  if (l.device() != dev) l = l.to(dev);  // labels on the host follow the model
  std::vector<Tensor> cols;
  if (T == 1) return {l};
  NoGradGuard ng;
  for (int64_t t = 0; t < T; ++t) cols.push_back(ops::slice(l, 1, t, t + 1));
  return cols;
}

std::vector<LabelMask> mask_missing_labels(const Tensor& labels, Device device) {
  RECHUB_CHECK(labels.defined() && labels.dim() == 2, "mask_missing_labels: expected labels [batch, tasks], got "
                                                          << (labels.defined() ? shape_str(labels.shape()) : "none"));
  NoGradGuard ng;
  Tensor h = labels.device().is_cpu() ? labels : labels.to(Device::cpu());
  if (h.dtype() != DType::f32) h = h.to(DType::f32);
  const int64_t B = h.size(0), T = h.size(1);
  const float* p = h.data<float>();
  std::vector<LabelMask> out(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> y(static_cast<size_t>(B)), m(static_cast<size_t>(B));
    int64_t n = 0;
    for (int64_t i = 0; i < B; ++i) {
      const float v = p[i * T + t];
      const bool has = !std::isnan(v);
      y[static_cast<size_t>(i)] = has ? v : 0.0f;
      m[static_cast<size_t>(i)] = has ? 1.0f : 0.0f;
      n += has ? 1 : 0;
    }
    LabelMask& lm = out[static_cast<size_t>(t)];
    lm.labelled = n;
    lm.labels = from_vector(y, {B, 1}).to(device);
    if (n < B) lm.mask = from_vector(m, {B, 1}).to(device);
  }
  return out;
}

// Σ mask·ℓ / max(1, labelled): the mean over the labelled rows, 0 for a batch without any.
Tensor masked_mean(const Tensor& elementwise, const LabelMask& m) {
  return ops::sum(ops::mul(elementwise, m.mask)) * (1.0 / static_cast<double>(std::max<int64_t>(1, m.labelled)));
}

std::vector<Tensor> MultiTaskModel::loss(const ModelOutput& out, const Tensor& labels, const LossOptions& o) const {
  const int64_t T = num_tasks();
  RECHUB_CHECK(static_cast<int64_t>(out.predictions.size()) == T,
               kind_ << ": the output has " << out.predictions.size() << " tasks, the model " << T);
  RECHUB_CHECK(o.weights.empty() || static_cast<int64_t>(o.weights.size()) == T,
               kind_ << ": " << o.weights.size() << " loss weights for " << T << " tasks");
  RECHUB_CHECK(o.pos_weights.empty() || static_cast<int64_t>(o.pos_weights.size()) == T,
               kind_ << ": " << o.pos_weights.size() << " pos_weights for " << T << " tasks");
  std::vector<Tensor> y = label_columns(labels, out.predictions[0].size(0));
  RECHUB_CHECK(!o.masks || static_cast<int64_t>(o.masks->size()) == T,
               kind_ << ": " << o.masks->size() << " label masks for " << T << " tasks");
  std::vector<Tensor> losses;
  for (int64_t t = 0; t < T; ++t) {
    Tensor l;
    const LabelMask* m = o.masks && (*o.masks)[t].mask.defined() ? &(*o.masks)[t] : nullptr;
    const double pw = o.pos_weights.empty() ? 1.0 : o.pos_weights[t];
    if (m && task_types_[t] == TaskType::binary)
      l = masked_mean(ops::bce_with_logits(out.logits[t], m->labels,
                                           {.weight = {}, .pos_weight = pw, .reduction = ops::Reduction::none}),
                      *m);
    else if (m)
      l = masked_mean(ops::mse_loss(out.predictions[t], m->labels, ops::Reduction::none), *m);
    else if (task_types_[t] == TaskType::binary)
      l = ops::bce_with_logits(out.logits[t], y[t], {.weight = {}, .pos_weight = pw});
    else
      l = ops::mse_loss(out.predictions[t], y[t]);
    if (!o.weights.empty() && o.weights[t] != 1.0) l = l * o.weights[t];
    losses.push_back(l);
  }
  return losses;
}

Tensor MultiTaskModel::predict(int64_t t, const Tensor& logit) const {
  return task_types_.at(t) == TaskType::binary ? ops::sigmoid(logit) : logit;
}

ModelOutput MultiTaskModel::outputs_from_logits(const std::vector<Tensor>& logits) const {
  ModelOutput out;
  for (size_t t = 0; t < logits.size(); ++t) {
    out.logits.push_back(logits[t]);
    out.predictions.push_back(predict(static_cast<int64_t>(t), logits[t]));
  }
  return out;
}

SharedTaskLayers shared_task_layers(const MultiTaskModel& model) {
  SharedTaskLayers s;
  const int64_t T = model.num_tasks();
  s.task.resize(T);
  s.task_names.resize(T);
  for (const auto& [name, p] : model.named_parameters()) {
    const int64_t t = model.task_of(name);
    RECHUB_CHECK(t >= -1 && t < T,
                 "shared_task_layers: " << model.kind() << " assigned '" << name << "' to task " << t);
    if (t < 0) {
      s.shared.push_back(p);
      s.shared_names.push_back(name);
    } else {
      s.task[t].push_back(p);
      s.task_names[t].push_back(name);
    }
  }
  return s;
}

}  // namespace rechub::models
