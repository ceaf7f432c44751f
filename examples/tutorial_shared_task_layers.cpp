// Tutorial: shared and task layers — shared_task_layers(model) says which parameters every task
// shares (embeddings, experts) and which belong to one task (gates, towers).
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/mmoe.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data(2000);
  const auto& schema = data.preprocessor->schema();
  models::MMoE model({.features = models::features_from_schema(schema),
                      .expert_units = {32, 16},
                      .num_experts = 3,
                      .task_names = schema.task_names(),
                      .tower_units = {16}});
  const auto layers = models::shared_task_layers(model);
  std::printf("shared (%zu tensors):\n", layers.shared.size());
  for (size_t i = 0; i < layers.shared.size(); ++i)
    std::printf("  %-32s %s\n", layers.shared_names[i].c_str(), shape_str(layers.shared[i].shape()).c_str());
  for (size_t t = 0; t < layers.task.size(); ++t) {
    std::printf("task '%s' (%zu tensors):\n", model.task_names()[t].c_str(), layers.task[t].size());
    for (size_t i = 0; i < layers.task[t].size(); ++i)
      std::printf("  %-32s %s\n", layers.task_names[t][i].c_str(), shape_str(layers.task[t][i].shape()).c_str());
  }
}
