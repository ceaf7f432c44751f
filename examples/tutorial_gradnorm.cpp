// Tutorial: GradNorm (Chen et al. 2018) — task weights learned so that each task's gradient norm
// on the last shared layer follows its relative training rate; weights sum to the task count.
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
                                                                 .tower_units = {16}});
  trainer::MTLTrainer t(
      model,
      {.optimizer_params = {.lr = 2e-3}, .n_epochs = 3, .task_weights_strategy = "gradnorm", .gradnorm_alpha = 1.5});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  for (const auto& rec : t.history())
    std::printf("epoch %lld: weights %.4f %.4f\n", static_cast<long long>(rec.epoch), rec.weights[0], rec.weights[1]);
  std::printf("GradNorm + MMoE test metrics:\n");
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
