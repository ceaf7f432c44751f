// A product embedding rechub through the installed package, as a user would write it: only
// the umbrella <rechub/rechub.h> and the generated data of rechub::synth (nothing of rechub's source
// tree), one autograd check, then an MMoE trained for an epoch on generated click/purchase data and
// scored; the run fails unless the model learned.
#include <rechub/mtl/data/synth/synthetic.h>
#include <rechub/rechub.h>

#include <cmath>
#include <cstdio>
#include <memory>

int main() {
  using namespace rechub;
  Tensor w = from_vector(std::vector<float>{1.f, 2.f}, {2}, {.requires_grad = true});
  Tensor loss = ops::sum(w * w);
  backward(loss);
  const auto g = w.grad().to_vector<float>();
  if (g[0] != 2.f || g[1] != 4.f) return 1;
  std::printf("grad ok\n");

  auto data = data::ali_ccp_example_data(4000);
  const auto& schema = data.preprocessor->schema();
  auto model = std::make_shared<models::MMoE>(models::MMoEConfig{.features = models::features_from_schema(schema),
                                                                 .expert_units = {32},
                                                                 .num_experts = 2,
                                                                 .task_names = schema.task_names(),
                                                                 .tower_units = {16}});
  trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 3e-3}, .n_epochs = 2, .progress = false});
  data::DataLoader train(data.train, {.batch_size = 256, .seed = 1});
  t.fit(train);
  const auto r = metrics::evaluate_multi_task(*model, *data.test, {.quiet = true});
  std::fputs(r.table().c_str(), stdout);
  // The planted signal is strong: a trained model ranks clicks far better than chance.
  if (!(r.at("ctr").auc > 0.6)) return 2;
  std::printf("trained ok\n");
  return 0;
}
