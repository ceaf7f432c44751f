#pragma once
// ESMM (Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating
// Post-Click Conversion Rate", SIGIR 2018): CTR and CVR towers over shared embeddings,
//   pCTR = sigmoid(tower_ctr(x)),  pCVR = sigmoid(tower_cvr(x)),  pCTCVR = pCTR * pCVR,
// trained on the entire impression space with two losses: BCE(pCTR, click) and
// BCE(pCTCVR, click AND purchase). pCVR gets no direct loss (it is never fitted on the biased
// clicked subset); it is read from extras["cvr"].
//
// Tasks: "ctr" (prediction pCTR, logit the CTR tower's) and "ctcvr" (prediction pCTCVR; no logit,
// ModelOutput::logits[1] is undefined). Labels [B, 2] = (click, purchase).
// Names (torch-rechub's): "tower_cvr.mlp.<k>.*", "tower_ctr.mlp.<k>.*", and with hidden_units a
// shared "bottom_mlp.mlp.<k>.*" (not in the paper; empty by default).
// Shared: embedding (and bottom_mlp); task ctr: tower_ctr; task ctcvr: tower_cvr.
// last_shared_parameters(): the last Linear of bottom_mlp when there is one, else the embedding
// arenas (the only shared layer of the paper's ESMM).
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/models/mlp_list.h"
#include "rechub/mtl/models/model.h"

namespace rechub::models {

struct ESMMConfig {
  Features features{};                  // user and item features (all embedded and concatenated)
  std::vector<int64_t> hidden_units{};  // optional shared MLP before the towers
  std::vector<int64_t> tower_units = defaults::tower_units;
  // One tower per task with its own hidden widths, in task order (torch-rechub's tower_params_list);
  // empty: tower_units for every task.
  std::vector<std::vector<int64_t>> tower_units_per_task{};
  int64_t embedding_dim = 0;              // > 0: the width of every sparse feature's embedding (overrides embed_dim)
  std::vector<std::string> task_names{};  // empty: ctr, ctcvr
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
nlohmann::json to_json(const ESMMConfig& c);
ESMMConfig esmm_config_from_json(const nlohmann::json& j);

class ESMM : public MultiTaskModel {
 public:
  explicit ESMM(const ESMMConfig& config);
  ModelOutput forward(const Tensor& sparse, const Tensor& dense) override;
  using MultiTaskModel::forward;
  // BCE on probabilities (clamped like PyTorch) of pCTR vs click and pCTCVR vs purchase.
  std::vector<Tensor> loss(const ModelOutput& out, const Tensor& labels, const LossOptions& opts = {}) const override;
  std::string kind() const override { return "esmm"; }
  nlohmann::json config_json() const override;
  int64_t task_of(const std::string& name) const override;
  std::vector<Tensor> last_shared_parameters() const override;
  const ESMMConfig& config() const { return config_; }

 private:
  ESMMConfig config_;
  std::unique_ptr<MLPList> bottom_, tower_cvr_, tower_ctr_;
};

// BCE on probabilities with a positive-term weight: -(w y log p + (1 - y) log(1 - p)), logs
// clamped at -100 as PyTorch does; the batch mean.
Tensor weighted_bce_on_probs(const Tensor& p, const Tensor& y, double pos_weight);

}  // namespace rechub::models
