#pragma once
// AITM (Xi et al., "Modeling the Sequential Dependence among Audience Multi-step Conversions with
// Multi-task Learning in Targeted Display Advertising", KDD 2021) for T binary tasks in funnel
// order (impression -> click -> conversion ...):
//   q_t = bottom_t(x)                                   (per-task MLP over the shared embeddings)
//   z_1 = q_1;  p_{t-1} = info_t(z_{t-1})               (learned transfer: Linear -> BN -> ReLU)
//   z_t = AIT([q_t, p_{t-1}]) = sum_i softmax_i(<Q u_i, K u_i> / sqrt(d)) V u_i,  u = (q_t, p_{t-1})
//   logit_t = tower_t(z_t);  y_t = sigmoid(logit_t)
// Loss per task: BCE; with calibrator_weight = a > 0 the paper's label constraint
// a * sum_batch max(y_t - y_{t-1}, 0) is added to task t's loss (t >= 1; the official code sums
// over the batch).
// Names (torch-rechub's): "bottoms.<t>.mlp.<k>.*", "towers.<t>.mlp.<k>.*",
// "info_gates.<t-1>.mlp.<k>.*", "aits.<t-1>.{q,k,v}_layer.weight".
// Shared: embedding; task t: bottoms.<t>, towers.<t> and the transfer into it (info_gates.<t-1>,
// aits.<t-1>). last_shared_parameters(): the embedding arenas (the only shared layer).
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/models/mlp_list.h"
#include "rechub/mtl/models/model.h"
#include "rechub/nn/linear.h"

namespace rechub::models {

struct AITMConfig {
  Features features{};
  std::vector<int64_t> hidden_units = defaults::hidden_units;  // each task's bottom MLP; its last width is d
  std::vector<int64_t> tower_units = defaults::tower_units;  // each task's tower after the transfer (then Linear(., 1))
  // One tower per task with its own hidden widths, in task order (torch-rechub's tower_params_list);
  // empty: tower_units for every task.
  std::vector<std::vector<int64_t>> tower_units_per_task{};
  int64_t num_tasks = -1;              // -1: from task_names / task_types, else 2
  std::vector<TaskType> task_types{};  // must all be binary
  std::vector<std::string> task_names{};
  std::string activation = "relu";
  double calibrator_weight = 0.0;  // the label-constraint weight (the paper uses 0.6); 0: off
  double dropout = defaults::dropout;
  bool fused = true;
  uint64_t seed = defaults::seed;
  double embedding_init_std = defaults::embedding_init_std;
  bool sparse_embeddings = true;
  // Row-shard the embedding arenas over these ranks (nn/embedding.h; size 1 or null: not sharded).
  // A runtime setting, not part of to_json: a sharded model's checkpoint loads unsharded.
  std::shared_ptr<dist::Communicator> embedding_shards{};
};
nlohmann::json to_json(const AITMConfig& c);
AITMConfig aitm_config_from_json(const nlohmann::json& j);

class AITM : public MultiTaskModel {
 public:
  explicit AITM(const AITMConfig& config);
  ModelOutput forward(const Tensor& sparse, const Tensor& dense) override;
  using MultiTaskModel::forward;
  std::vector<Tensor> loss(const ModelOutput& out, const Tensor& labels, const LossOptions& opts = {}) const override;
  std::string kind() const override { return "aitm"; }
  nlohmann::json config_json() const override;
  int64_t task_of(const std::string& name) const override;
  std::vector<Tensor> last_shared_parameters() const override;
  const AITMConfig& config() const { return config_; }

 private:
  struct Attention {
    std::shared_ptr<nn::Linear> q, k, v;
  };
  Tensor attend(const Attention& a, const Tensor& own, const Tensor& info) const;

  AITMConfig config_;
  std::unique_ptr<MLPList> bottoms_, towers_, info_;
  std::vector<Attention> aits_;
};

}  // namespace rechub::models
