// Tutorial: early stopping, checkpoints and a learning-rate schedule — training stops when the
// validation AUC of a chosen task has not improved for `earlystop_patience` epochs, and the best
// epoch's weights are put back; out_dir gets checkpoint.safetensors (resumable), best.safetensors,
// model.safetensors, metrics.jsonl and report.svg.
#include <cstdio>
#include <filesystem>

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
  const auto out = std::filesystem::temp_directory_path() / "rechub_tutorial_early_stopping";
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 2e-3},
                                .n_epochs = 20,
                                .lr_schedule = "cosine",
                                .lr_warmup_steps = 20,
                                .earlystop_patience = 2,
                                .earlystop_task = "ctr",
                                .earlystop_metric = "auc",
                                .out_dir = out.string()});
  data::DataLoader train(data.train, {.batch_size = 512, .seed = 1});
  data::DataLoader val(data.val, {.batch_size = 4096, .shuffle = false});
  t.fit(train, &val);
  std::printf("trained %zu epochs; best epoch %lld (its weights are the model's now), files in %s\n",
              t.history().size(), static_cast<long long>(t.best_epoch()), out.c_str());
  std::fputs(metrics::evaluate_multi_task(*model, *data.test).table().c_str(), stdout);
  std::filesystem::remove_all(out);
}
