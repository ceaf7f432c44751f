#pragma once
// One place that turns a model name and the command line's sizes into a model: what the `rechub`
// command, the examples and the trainer tests use.
//
//   auto m = trainer::build_model("mmoe", features, {"ctr", "ctcvr"}, {}, {.expert_units = {64, 32}});
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/mtl/defaults.h"
#include "rechub/mtl/models/model.h"

namespace rechub::trainer {

struct ModelSizes {
  // Every default is the model configs' (rechub/mtl/defaults.h).
  int64_t embed_dim = 0;  // > 0: every sparse feature's embedding width (0: the schema's, defaults::embed_dim)
  std::vector<int64_t> hidden_units = defaults::hidden_units;  // shared_bottom's bottom, aitm's per-task bottom
  std::vector<int64_t> esmm_hidden_units{};  // esmm: an MLP shared by both towers (empty: none, as in the paper)
  std::vector<int64_t> expert_units = defaults::expert_units;  // mmoe, omoe, ple
  int64_t num_experts = defaults::num_experts;                 // mmoe/omoe; ple: per task and level
  int64_t num_shared_experts = defaults::num_shared_experts;   // ple
  int64_t num_layers = defaults::num_layers;                   // ple
  std::vector<int64_t> tower_units = defaults::tower_units;
  std::vector<std::vector<int64_t>> tower_units_per_task{};  // one list per task, in task order (empty: tower_units)
  double dropout = defaults::dropout;
  uint64_t seed = defaults::seed;
  double embedding_init_std = defaults::embedding_init_std;  // N(0, std^2) for every embedding row
  // Row-shard the embedding arenas over these ranks (the configs' embedding_shards; null: not sharded).
  std::shared_ptr<dist::Communicator> embedding_shards{};
};

// kind: shared_bottom | esmm | mmoe | omoe | ple | aitm. ESMM needs exactly two binary tasks
// (click, then click-and-convert). Throws rechub::Error on an unknown kind or a bad size.
std::shared_ptr<models::MultiTaskModel> build_model(const std::string& kind, const models::Features& features,
                                                    const std::vector<std::string>& task_names,
                                                    const std::vector<data::TaskType>& task_types,
                                                    const ModelSizes& sizes);

}  // namespace rechub::trainer
