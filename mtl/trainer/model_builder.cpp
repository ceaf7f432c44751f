#include "rechub/mtl/trainer/model_builder.h"

#include "rechub/core/error.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"

namespace rechub::trainer {

std::shared_ptr<models::MultiTaskModel> build_model(const std::string& kind, const models::Features& features_in,
                                                    const std::vector<std::string>& names,
                                                    const std::vector<data::TaskType>& types_in, const ModelSizes& s) {
  RECHUB_CHECK(!names.empty(), "build_model: no tasks");
  std::vector<data::TaskType> types = types_in;
  if (types.empty()) types.assign(names.size(), data::TaskType::binary);
  RECHUB_CHECK(types.size() == names.size(),
               "build_model: " << types.size() << " task types for " << names.size() << " tasks");
  models::Features features = features_in;
  if (s.embed_dim > 0)
    for (auto& f : features.sparse) f.embed_dim = s.embed_dim;
  const int64_t T = static_cast<int64_t>(names.size());
  if (kind == "shared_bottom")
    return std::make_shared<models::SharedBottom>(
        models::SharedBottomConfig{.features = features,
                                   .hidden_units = s.hidden_units,
                                   .task_hidden_units = s.tower_units,
                                   .task_hidden_units_per_task = s.tower_units_per_task,
                                   .num_tasks = T,
                                   .task_types = types,
                                   .task_names = names,
                                   .dropout = s.dropout,
                                   .seed = s.seed,
                                   .embedding_init_std = s.embedding_init_std,
                                   .embedding_shards = s.embedding_shards});
  if (kind == "mmoe" || kind == "omoe") {
    models::MMoEConfig c{.features = features,
                         .expert_units = s.expert_units,
                         .num_experts = s.num_experts,
                         .num_tasks = T,
                         .task_types = types,
                         .task_names = names,
                         .tower_units = s.tower_units,
                         .tower_units_per_task = s.tower_units_per_task,
                         .dropout = s.dropout,
                         .seed = s.seed,
                         .embedding_init_std = s.embedding_init_std,
                         .embedding_shards = s.embedding_shards};
    if (kind == "omoe") return std::make_shared<models::OMoE>(c);
    return std::make_shared<models::MMoE>(c);
  }
  if (kind == "ple")
    return std::make_shared<models::PLE>(models::PLEConfig{.features = features,
                                                           .expert_units = s.expert_units,
                                                           .num_experts = s.num_experts,
                                                           .num_layers = s.num_layers,
                                                           .num_shared_experts = s.num_shared_experts,
                                                           .num_tasks = T,
                                                           .task_types = types,
                                                           .task_names = names,
                                                           .tower_units = s.tower_units,
                                                           .tower_units_per_task = s.tower_units_per_task,
                                                           .dropout = s.dropout,
                                                           .seed = s.seed,
                                                           .embedding_init_std = s.embedding_init_std,
                                                           .embedding_shards = s.embedding_shards});
  if (kind == "aitm")
    return std::make_shared<models::AITM>(models::AITMConfig{.features = features,
                                                             .hidden_units = s.hidden_units,
                                                             .tower_units = s.tower_units,
                                                             .tower_units_per_task = s.tower_units_per_task,
                                                             .num_tasks = T,
                                                             .task_types = types,
                                                             .task_names = names,
                                                             .dropout = s.dropout,
                                                             .seed = s.seed,
                                                             .embedding_init_std = s.embedding_init_std,
                                                             .embedding_shards = s.embedding_shards});
  if (kind == "esmm") {
    RECHUB_CHECK(T == 2 && types[0] == data::TaskType::binary && types[1] == data::TaskType::binary,
                 "esmm needs exactly two binary tasks (click, then click-and-purchase), got " << T);
    return std::make_shared<models::ESMM>(models::ESMMConfig{.features = features,
                                                             .hidden_units = s.esmm_hidden_units,
                                                             .tower_units = s.tower_units,
                                                             .tower_units_per_task = s.tower_units_per_task,
                                                             .task_names = names,
                                                             .dropout = s.dropout,
                                                             .seed = s.seed,
                                                             .embedding_init_std = s.embedding_init_std,
                                                             .embedding_shards = s.embedding_shards});
  }
  RECHUB_FAIL("unknown model '" << kind << "' (expected shared_bottom, esmm, mmoe, omoe, ple or aitm)");
}

}  // namespace rechub::trainer
