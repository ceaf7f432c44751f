#pragma once
// PLE (Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model
// for Personalized Recommendations", RecSys 2020): num_layers levels of CGC (Customized Gate
// Control). At level l each task t has num_experts specific experts reading the task's input
// x_t^l, and num_shared_experts shared experts read the shared input x_s^l (at level 0 every input
// is the embedded x):
//   x_t^{l+1} = sum over [E_t, E_s] of softmax(W_t^l x_t^l + b_t^l) * expert outputs
//   x_s^{l+1} = sum over [E_1, ..., E_T, E_s] of softmax(W_s^l x_s^l + b_s^l) * expert outputs
// (the shared gate exists at every level but the last); logit_t = tower_t(x_t^L).
//
// Each group of experts (one task's, the shared ones) is one fused expert block; each gate with
// its weighted sum one ops::gate_mix over the groups it sees, without concatenating them.
// Names: "cgc_layers.<l>.experts_specific.<t*num_experts+i>.mlp.<k>.*",
// "cgc_layers.<l>.experts_shared.<i>.mlp.<k>.*", "towers.<t>.mlp.<k>.*" as in torch-rechub (but
// for the tower's output Linear, which torch-rechub's PLE towers lack);
// "cgc_layers.<l>.gates_specific.<t>.{weight,bias}", "cgc_layers.<l>.gate_shared.{weight,bias}",
// where torch-rechub's gate MLP names its Linear "mlp.0" and adds a BatchNorm (docs/STATE_DICT.md).
// Shared: embedding, shared experts, shared gates; task t: its specific experts, gates, tower.
// last_shared_parameters(): the last Linear of every shared expert of the last level.
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/models/mlp_list.h"
#include "rechub/mtl/models/model.h"
#include "rechub/nn/linear.h"

namespace rechub::models {

struct PLEConfig {
  Features features{};
  std::vector<int64_t> expert_units = defaults::expert_units;
  int64_t num_experts = defaults::num_experts;  // task-specific experts per task and level
  int64_t num_layers = defaults::num_layers;    // CGC levels
  int64_t num_shared_experts = defaults::num_shared_experts;
  int64_t num_tasks = -1;                 // -1: from task_types / task_names, else 2
  std::vector<TaskType> task_types{};     // empty: all binary
  std::vector<std::string> task_names{};  // empty: task0, task1, ...
  std::string expert_activation = "relu";
  std::vector<int64_t> tower_units = defaults::tower_units;
  // One tower per task with its own hidden widths, in task order (torch-rechub's tower_params_list);
  // empty: tower_units for every task.
  std::vector<std::vector<int64_t>> tower_units_per_task{};
  std::string tower_activation = "relu";
  double dropout = defaults::dropout;
  bool fused = true;
  uint64_t seed = defaults::seed;
  double embedding_init_std = defaults::embedding_init_std;
  bool sparse_embeddings = true;
  // Row-shard the embedding arenas over these ranks (nn/embedding.h; size 1 or null: not sharded).
  // A runtime setting, not part of to_json: a sharded model's checkpoint loads unsharded.
  std::shared_ptr<dist::Communicator> embedding_shards{};
};
nlohmann::json to_json(const PLEConfig& c);
PLEConfig ple_config_from_json(const nlohmann::json& j);

class PLE : public MultiTaskModel {
 public:
  explicit PLE(const PLEConfig& config);
  ModelOutput forward(const Tensor& sparse, const Tensor& dense) override;
  using MultiTaskModel::forward;
  std::string kind() const override { return "ple"; }
  nlohmann::json config_json() const override;
  int64_t task_of(const std::string& name) const override;
  std::vector<Tensor> last_shared_parameters() const override;
  const PLEConfig& config() const { return config_; }

 private:
  struct Level {
    std::unique_ptr<MLPList> specific, shared;
    std::vector<std::shared_ptr<nn::Linear>> task_gates;
    std::shared_ptr<nn::Linear> shared_gate;  // null at the last level
  };
  PLEConfig config_;
  std::vector<Level> levels_;
  std::unique_ptr<MLPList> towers_;
};

}  // namespace rechub::models
