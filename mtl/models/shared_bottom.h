#pragma once
// SharedBottom (Caruana, "Multitask Learning", 1997): one MLP over the embedded input shared by
// every task, then one tower per task.
//   z = bottom(x);  logit_t = tower_t(z);  y_t = sigmoid(logit_t) | logit_t
// Names (torch-rechub's): "bottom_mlp.mlp.<k>.*", "towers.<t>.mlp.<k>.*".
// Shared: embedding and bottom_mlp; task t: towers.<t>.
// last_shared_parameters(): the last Linear (weight, bias) of the bottom MLP.
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/models/mlp_list.h"
#include "rechub/mtl/models/model.h"

namespace rechub::models {

struct SharedBottomConfig {
  Features features{};
  std::vector<int64_t> hidden_units = defaults::hidden_units;      // the shared bottom MLP
  std::vector<int64_t> task_hidden_units = defaults::tower_units;  // hidden layers of each tower (then Linear(., 1))
  // One tower per task with its own hidden widths, in task order (torch-rechub's tower_params_list);
  // empty: task_hidden_units for every task.
  std::vector<std::vector<int64_t>> task_hidden_units_per_task{};
  int64_t num_tasks = -1;                 // -1: from task_types / task_names, else 2
  std::vector<TaskType> task_types{};     // empty: all binary
  std::vector<std::string> task_names{};  // empty: task0, task1, ...
  std::string activation = "relu";
  double dropout = defaults::dropout;
  bool fused = true;
  uint64_t seed = defaults::seed;
  double embedding_init_std = defaults::embedding_init_std;
  bool sparse_embeddings = true;
  // Row-shard the embedding arenas over these ranks (nn/embedding.h; size 1 or null: not sharded).
  // A runtime setting, not part of to_json: a sharded model's checkpoint loads unsharded.
  std::shared_ptr<dist::Communicator> embedding_shards{};
};
nlohmann::json to_json(const SharedBottomConfig& c);
SharedBottomConfig shared_bottom_config_from_json(const nlohmann::json& j);

class SharedBottom : public MultiTaskModel {
 public:
  explicit SharedBottom(const SharedBottomConfig& config);
  ModelOutput forward(const Tensor& sparse, const Tensor& dense) override;
  using MultiTaskModel::forward;
  std::string kind() const override { return "shared_bottom"; }
  nlohmann::json config_json() const override;
  int64_t task_of(const std::string& name) const override;
  std::vector<Tensor> last_shared_parameters() const override;
  const SharedBottomConfig& config() const { return config_; }

 private:
  SharedBottomConfig config_;
  std::unique_ptr<MLPList> bottom_, towers_;
};

}  // namespace rechub::models
