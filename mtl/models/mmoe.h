#pragma once
// MMoE (Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
// Mixture-of-Experts", KDD 2018) and OMoE (the same with One gate shared by all tasks).
//
//   x = [embeddings, dense];  f_e(x) = expert MLP e (Linear -> BatchNorm -> act -> Dropout per layer)
//   g_t(x) = softmax(W_t x + b_t)  (one gate per task; OMoE: one gate g for every task; always a
//            softmax: the mixture needs weights that sum to 1, so there is no gate activation to set)
//   h_t = sum_e g_t(x)_e f_e(x);  logit_t = tower_t(h_t);  y_t = sigmoid(logit_t) | logit_t
//
// The experts run as one fused expert block (ops::experts_forward) and each gate with its weighted
// sum as one ops::gate_mix. Names: "experts.<e>.mlp.<k>.*" and "towers.<t>.mlp.<k>.*" as in
// torch-rechub; "gates.<t>.weight", "gates.<t>.bias" (OMoE: "gate.weight", "gate.bias"), where
// torch-rechub's gate is an MLP (Linear "gates.<t>.mlp.0", BatchNorm "gates.<t>.mlp.1", softmax)
// and has no OMoE (docs/STATE_DICT.md).
// Shared: embedding, experts (and OMoE's gate); task t: gates.<t>, towers.<t>.
// last_shared_parameters(): the last Linear (weight, bias) of every expert.
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/models/mlp_list.h"
#include "rechub/mtl/models/model.h"
#include "rechub/nn/linear.h"

namespace rechub::models {

struct MMoEConfig {
  Features features{};
  std::vector<int64_t> expert_units = defaults::expert_units;
  int64_t num_experts = defaults::num_experts;
  int64_t num_tasks = -1;                 // -1: from task_types / task_names, else 2
  std::vector<TaskType> task_types{};     // empty: all binary
  std::vector<std::string> task_names{};  // empty: task0, task1, ...
  std::string expert_activation = "relu";
  std::vector<int64_t> tower_units = defaults::tower_units;
  // One tower per task with its own hidden widths, in task order (torch-rechub's tower_params_list);
  // empty: tower_units for every task.
  std::vector<std::vector<int64_t>> tower_units_per_task{};
  std::string tower_activation = "relu";
  double dropout = defaults::dropout;  // in experts and towers
  bool fused = true;                   // false: the same model through basic ops (the reference for the fused ops)
  uint64_t seed = defaults::seed;
  double embedding_init_std = defaults::embedding_init_std;
  bool sparse_embeddings = true;
  // Row-shard the embedding arenas over these ranks (nn/embedding.h; size 1 or null: not sharded).
  // A runtime setting, not part of to_json: a sharded model's checkpoint loads unsharded.
  std::shared_ptr<dist::Communicator> embedding_shards{};
};
using OMoEConfig = MMoEConfig;
nlohmann::json to_json(const MMoEConfig& c);
MMoEConfig mmoe_config_from_json(const nlohmann::json& j, const std::string& kind = "mmoe");

class MMoE : public MultiTaskModel {
 public:
  explicit MMoE(const MMoEConfig& config) : MMoE(config, false) {}
  ModelOutput forward(const Tensor& sparse, const Tensor& dense) override;
  using MultiTaskModel::forward;
  std::string kind() const override { return one_gate_ ? "omoe" : "mmoe"; }
  nlohmann::json config_json() const override;
  int64_t task_of(const std::string& name) const override;
  std::vector<Tensor> last_shared_parameters() const override;
  const MMoEConfig& config() const { return config_; }

 protected:
  MMoE(const MMoEConfig& config, bool one_gate);

 private:
  MMoEConfig config_;
  bool one_gate_;
  std::unique_ptr<MLPList> experts_, towers_;
  std::vector<std::shared_ptr<nn::Linear>> gates_;
};

class OMoE : public MMoE {
 public:
  explicit OMoE(const OMoEConfig& config) : MMoE(config, true) {}
};

}  // namespace rechub::models
