// Tutorial: evaluation — evaluate_multi_task gives per-task AUC and LogLoss (sklearn's
// definitions), GAUC with a group column, and the single metrics are plain functions.
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/metrics/metrics.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data(10000);
  const auto& schema = data.preprocessor->schema();
  auto model = std::make_shared<models::MMoE>(models::MMoEConfig{.features = models::features_from_schema(schema),
                                                                 .expert_units = {16},
                                                                 .num_experts = 2,
                                                                 .task_names = schema.task_names(),
                                                                 .tower_units = {8}});
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 3e-3}, .n_epochs = 1, .progress = false});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  // GAUC grouped by the first sparse field (standing in for a user id).
  const auto users = data.test->sparse_column(0);
  const auto r = metrics::evaluate_multi_task(*model, *data.test, {.groups = users});
  std::printf("%s\n", r.to_json().dump(2).c_str());
  // The metric functions on their own:
  std::printf("roc_auc = %.4f, log_loss = %.4f\n", metrics::roc_auc({0, 0, 1, 1}, {0.1, 0.4, 0.35, 0.8}),
              metrics::log_loss({0, 0, 1, 1}, {0.1, 0.4, 0.35, 0.8}));
}
