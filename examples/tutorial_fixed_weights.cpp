// Tutorial: fixed task weights — the loss is Σ w_i L_i (here click 1.0, purchase 0.5).
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data();
  const auto& schema = data.preprocessor->schema();
  auto model = std::make_shared<models::SharedBottom>(
      models::SharedBottomConfig{.features = models::features_from_schema(schema),
                                 .hidden_units = {64, 32},
                                 .task_hidden_units = {16},
                                 .task_names = schema.task_names()});
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3}, .n_epochs = 2, .task_weights = {1.0, 0.5}});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  std::printf("SharedBottom with weights 1.0 / 0.5, test metrics:\n");
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
