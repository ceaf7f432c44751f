// Tutorial: task-specific learning rates — each task's own layers (shared_task_layers) train in
// their own optimizer group with their own rate; shared layers use the base rate.
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data();
  const auto& schema = data.preprocessor->schema();
  const auto tasks = schema.task_names();  // click, purchase
  auto model = std::make_shared<models::MMoE>(models::MMoEConfig{.features = models::features_from_schema(schema),
                                                                 .expert_units = {32, 16},
                                                                 .num_experts = 4,
                                                                 .task_names = tasks,
                                                                 .tower_units = {16}});
  trainer::MTLTrainer t(
      model,
      {.optimizer_params = {.lr = 2e-3}, .n_epochs = 2, .task_specific_lr = {{tasks[0], 2e-3}, {tasks[1], 1e-3}}});
  for (size_t g = 0; g < t.optimizer().num_groups(); ++g)
    std::printf("group %-16s lr %g, %zu tensors\n", t.optimizer().group(g).name.c_str(), t.optimizer().group(g).lr,
                t.optimizer().group(g).params.size());
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
