#pragma once
// The multi-task model interface shared by SharedBottom, ESMM, MMoE, OMoE, PLE and AITM.
//
//   auto f = models::Features{.sparse = schema.sparse, .dense = schema.dense};
//   models::MMoE m({.features = f, .expert_units = {256, 128}, .num_experts = 8, .num_tasks = 2,
//                   .expert_activation = "relu", .tower_units = {64, 32}});
//   models::ModelOutput out = m.forward(batch.sparse, batch.dense);   // or m.forward(batch)
//   std::vector<Tensor> losses = m.loss(out, batch.labels);           // one scalar per task
//
// Inputs: sparse ids [B, n_sparse] (i32/i64, column f = features.sparse[f]) and dense values
// [B, n_dense] (f32; may be undefined or [B, 0] without dense features). Every model embeds the
// sparse features with one EmbeddingCollection (registered as "embedding") and concatenates the
// dense values after the embeddings, as torch-rechub's EmbeddingLayer does.
//
// Parameter names follow torch-rechub's modules (nn::MLP's "mlp.<k>" numbering), so most names
// are torch-rechub's state_dict keys. The differences: the embeddings (one arena per width,
// "embedding.arena_d16"; nn/embedding.h gives the per-feature rows), the gates of MMoE and PLE
// (a Linear here, "gates.<t>.weight"; torch-rechub's gate MLP adds a BatchNorm and names its
// Linear "gates.<t>.mlp.0"), OMoE's gate, ESMM's optional bottom and PLE's tower output layer.
// docs/STATE_DICT.md lists them; tests/mtl/models_state_dict_test.cpp checks the list against
// torch-rechub's modules.
//
// Under MPI every config's embedding_shards (a communicator) row-shards the arenas over the ranks
// (nn/embedding.h): each rank holds every N-th row, and the model must run forward and backward
// on every rank together (MTLTrainer with the same TrainerOptions::communicator does).
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/module.h"

namespace rechub::models {

using data::TaskType;

struct Features {
  std::vector<data::SparseFeature> sparse{};
  std::vector<data::DenseFeature> dense{};
};
Features features_from_schema(const data::Schema& schema);
// Each task's tower widths: per_task (one list per task, in task order; torch-rechub's
// tower_params_list) or, when it is empty, `all` for every task. Throws naming `what` when per_task
// has another length than num_tasks or holds an empty list.
std::vector<std::vector<int64_t>> tower_units_of_tasks(const std::vector<int64_t>& all,
                                                       const std::vector<std::vector<int64_t>>& per_task,
                                                       int64_t num_tasks, const std::string& what);
nlohmann::json features_to_json(const Features& f);
Features features_from_json(const nlohmann::json& j, const std::string& origin);

struct ModelOutput {
  std::vector<Tensor> logits{};       // per task [B, 1]; undefined where a task has no logit (ESMM's ctcvr)
  std::vector<Tensor> predictions{};  // per task [B, 1]: probability (binary) or value (regression)
  // Model-specific outputs without history: "cvr" (ESMM's pCVR), "gate.<name>" gate weights [B, E].
  std::map<std::string, Tensor> extras{};
  // The predictions side by side, [B, n_tasks], without history (metrics, serving).
  Tensor prediction_matrix() const;
};

// Missing labels (data::Label::missing_ok): a NaN label means "no label for this task on this
// row". Per task: the label column with NaN replaced by 0, the 0/1 mask of the labelled rows, and
// how many there are (mask undefined when every row is labelled).
struct LabelMask {
  Tensor labels{};  // [B, 1] f32 on the model's device
  Tensor mask{};    // [B, 1] f32, or undefined (every row labelled)
  int64_t labelled = 0;
};
// One scan of `labels` [B, T] (copied to the host when on a device) on `device`.
std::vector<LabelMask> mask_missing_labels(const Tensor& labels, Device device);

struct LossOptions {
  std::vector<double> weights{};      // per task factor on its loss (empty: all 1)
  std::vector<double> pos_weights{};  // per binary task: weight of the positive term (empty: all 1)
  // From mask_missing_labels of the same batch: each task's loss is then the mean over its
  // labelled rows, Σ mask·ℓ / max(1, labelled), so a batch without labels contributes exactly 0
  // (with a zero gradient). Null: every label is present (NaN labels would make the loss NaN).
  const std::vector<LabelMask>* masks = nullptr;
};

class MultiTaskModel : public nn::Module {
 public:
  // sparse [B, n_sparse] ids, dense [B, n_dense] (undefined allowed when the model has no dense
  // features). Training or evaluation behaviour follows is_training() (train() / eval()).
  virtual ModelOutput forward(const Tensor& sparse, const Tensor& dense) = 0;
  ModelOutput forward(const data::Batch& batch) { return forward(batch.sparse, batch.dense); }

  // Per-task losses (scalars, batch means), labels [B, n_tasks] in task order: binary tasks
  // BCE on the logits (numerically stable), regression tasks MSE. ESMM and AITM override it.
  virtual std::vector<Tensor> loss(const ModelOutput& out, const Tensor& labels, const LossOptions& opts = {}) const;

  virtual std::string kind() const = 0;  // "mmoe", "ple", ...
  virtual nlohmann::json config_json() const = 0;

  int64_t num_tasks() const { return static_cast<int64_t>(task_names_.size()); }
  const std::vector<std::string>& task_names() const { return task_names_; }
  const std::vector<TaskType>& task_types() const { return task_types_; }
  const Features& features() const { return features_; }
  const nn::EmbeddingCollection& embedding() const { return *embedding_; }
  // Whether the embedding arenas are row-sharded over several ranks (the configs' embedding_shards).
  bool embeddings_sharded() const { return embedding_ && embedding_->sharded(); }

  // Which task a parameter (by its dotted name) belongs to; -1 for shared parameters.
  virtual int64_t task_of(const std::string& parameter_name) const = 0;
  // The parameters of "the last shared layer", the W of GradNorm (see each model for its choice).
  virtual std::vector<Tensor> last_shared_parameters() const = 0;

  bool fused() const { return fused_; }
  void set_fused(bool on) { fused_ = on; }

  // Every dropout mask of the model (experts, towers, bottoms) is drawn from this generator, in
  // forward order (the nn::Dropout modules inside the nn::MLP containers are not used): a trainer
  // saves and restores its state for an exact resume. Seeded from the config's seed.
  Generator& dropout_generator() { return dropout_gen_; }

 protected:
  // Sets up features, tasks and the embedding. `kind` names the model in error messages.
  void init_common(const std::string& kind, const Features& features, int64_t num_tasks,
                   const std::vector<TaskType>& task_types, const std::vector<std::string>& task_names,
                   const std::vector<std::string>& default_names, double embedding_init_std, uint64_t seed,
                   bool sparse_embeddings, std::shared_ptr<dist::Communicator> embedding_shards,
                   int64_t embedding_dim_override = 0);
  // [B, sum of embed dims + n_dense]: the embeddings, then the dense values.
  Tensor embed_inputs(const Tensor& sparse, const Tensor& dense) const;
  int64_t input_dim() const { return input_dim_; }
  // Checks labels [B, n_tasks] and returns column t as [B, 1].
  std::vector<Tensor> label_columns(const Tensor& labels, int64_t batch) const;
  // sigmoid(logit) for a binary task t, the logit itself for regression.
  Tensor predict(int64_t t, const Tensor& logit) const;
  // Fills logits/predictions from per-task logits.
  ModelOutput outputs_from_logits(const std::vector<Tensor>& logits) const;

  bool fused_ = true;

 private:
  std::string kind_;
  Features features_;
  std::vector<std::string> task_names_;
  std::vector<TaskType> task_types_;
  std::shared_ptr<nn::EmbeddingCollection> embedding_;
  int64_t input_dim_ = 0;
  Generator dropout_gen_;
};

// The shared and the task-specific parameters (per-task learning rates, GradNorm, MetaBalance):
// embeddings, shared experts and shared gates are shared; towers, task gates and task-specific
// experts belong to their task.
struct SharedTaskLayers {
  std::vector<Tensor> shared{};
  std::vector<std::string> shared_names{};
  std::vector<std::vector<Tensor>> task{};  // [task][...]
  std::vector<std::vector<std::string>> task_names{};
};
SharedTaskLayers shared_task_layers(const MultiTaskModel& model);

// Rebuilds a model from kind() and config_json() (checkpoints). Unknown kinds and bad configs
// throw rechub::Error.
std::shared_ptr<MultiTaskModel> make_model(const std::string& kind, const nlohmann::json& config);
// "shared_bottom", "esmm", "mmoe", "omoe", "ple", "aitm".
std::vector<std::string> model_kinds();

}  // namespace rechub::models
