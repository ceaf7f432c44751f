// Tutorial: MetaBalance (He et al. 2022) — per shared parameter, each auxiliary task's gradient is
// rescaled toward the main task's gradient norm (relax factor r, moving-average factor beta).
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data();
  const auto& schema = data.preprocessor->schema();
  auto model = std::make_shared<models::PLE>(models::PLEConfig{.features = models::features_from_schema(schema),
                                                               .expert_units = {32},
                                                               .num_experts = 2,
                                                               .num_layers = 1,
                                                               .num_shared_experts = 1,
                                                               .task_names = schema.task_names(),
                                                               .tower_units = {16}});
  // The main task is the purchase task (CTCVR); click is the auxiliary one.
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3},
                                .n_epochs = 2,
                                .task_weights_strategy = "metabalance",
                                .relax_factor = 0.7,
                                .beta = 0.9,
                                .main_task = schema.task_names()[1]});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  std::printf("MetaBalance + PLE test metrics:\n");
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
