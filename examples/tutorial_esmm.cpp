// Tutorial: ESMM — CTR and CVR towers over shared embeddings; pCTCVR = pCTR · pCVR; the loss is
// on the entire space (click and click-and-purchase labels). Evaluation adds CVR on clicked rows.
#include <cstdio>

#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

int main() {
  auto data = data::ali_ccp_example_data();
  const auto& schema = data.preprocessor->schema();
  auto model = std::make_shared<models::ESMM>(models::ESMMConfig{.features = models::features_from_schema(schema),
                                                                 .tower_units = {32, 16},
                                                                 .embedding_dim = 8,
                                                                 .task_names = schema.task_names()});
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3}, .n_epochs = 2});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  t.fit(train);
  std::printf("ESMM test metrics (click = CTR, purchase = CTCVR, cvr = CVR on clicked rows):\n");
  std::fputs((metrics::evaluate_multi_task(*model, *data.test)).table().c_str(), stdout);
}
