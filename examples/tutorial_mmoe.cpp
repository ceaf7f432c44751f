// Tutorial: MMoE — experts share the input; one softmax gate per task mixes them.
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data();
  const auto& schema = data.preprocessor->schema();
  auto model = std::make_shared<models::MMoE>(models::MMoEConfig{.features = models::features_from_schema(schema),
                                                                 .expert_units = {32, 16},
                                                                 .num_experts = 4,
                                                                 .task_names = schema.task_names(),
                                                                 .expert_activation = "relu",
                                                                 .tower_units = {16}});
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3}, .n_epochs = 2});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  std::printf("MMoE test metrics:\n");
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
