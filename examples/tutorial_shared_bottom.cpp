// Tutorial: SharedBottom — one shared MLP over the embeddings, one tower per task.
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
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3, .weight_decay = 1e-6}, .n_epochs = 2});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  data::DataLoader val(data.val, {.batch_size = 4096, .shuffle = false});
  t.fit(train, &val);
  std::printf("SharedBottom test metrics:\n");
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
