// MTLTrainer with a communicator (TrainerOptions::communicator) under mpirun: N ranks, each with a
// loader over its rank_rows share and batch B, end as one MTLTrainer on the same rows with batch
// N·B (the reference runs in this process on the rows in the order that makes its batches the
// union of the ranks' batches; no shuffling). Compared: every epoch's training loss and task
// weights, and every parameter and buffer, within 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "rechub/core/rng.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/row_range.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/trainer/trainer.h"
#include "support/dist_env.h"

namespace rechub {
namespace {

data::Schema schema() {
  data::Schema s;
  s.sparse = {{.name = "a", .vocab_size = 19, .embed_dim = 4}, {.name = "b", .vocab_size = 5, .embed_dim = 4}};
  s.dense = {{.name = "x"}};
  s.labels = {{.task = "click", .column = "click"}, {.task = "buy", .column = "buy"}};
  return s;
}

std::shared_ptr<data::Dataset> make_rows(int64_t R) {
  auto d = std::make_shared<data::Dataset>(schema(), R);
  Generator g(11);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t a = static_cast<int64_t>(g.randint(19)), b = static_cast<int64_t>(g.randint(5));
    const double x = g.uniform() * 2 - 1;
    d->sparse_data()[r * 2] = a;
    d->sparse_data()[r * 2 + 1] = b;
    d->dense_data()[r] = static_cast<float>(x);
    const double p = 1 / (1 + std::exp(-(x + (a % 3 == 0 ? 1.0 : -0.5))));
    d->label_data()[r * 2] = g.uniform() < p ? 1.f : 0.f;
    d->label_data()[r * 2 + 1] = g.uniform() < p * 0.5 ? 1.f : 0.f;
  }
  return d;
}

std::shared_ptr<models::MMoE> make_model() {
  return std::make_shared<models::MMoE>(models::MMoEConfig{.features = models::features_from_schema(schema()),
                                                           .expert_units = {8, 6},
                                                           .num_experts = 3,
                                                           .task_names = {"click", "buy"},
                                                           .tower_units = {4},
                                                           // Pinned (the configs' default seed changed to 1 with
                                                           // rechub/mtl/defaults.h): Adam turns the float rounding
                                                           // of a near-zero gradient into a step of about lr, so the
                                                           // 1e-5 bound holds for this draw and not for every draw.
                                                           .seed = 0x5eed});
}

trainer::TrainerOptions options(const std::string& strategy) {
  return {.optimizer_params = {.lr = 1e-2},
          .n_epochs = 3,
          .task_weights_strategy = strategy,
          .task_specific_lr = {{"buy", 5e-3}},
          .progress = false};
}

class TrainerDataParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainerDataParallel, RanksOfBatchBEqualOneProcessOfBatchNB) {
  dist::Communicator& world = test::world();
  const int64_t N = world.size(), B = 16, steps = 5, R = N * B * steps;
  const auto rows = make_rows(R);
  // The reference's order: global batch k = rank 0's batch k, then rank 1's, ...
  std::vector<int64_t> order;
  for (int64_t k = 0; k < steps; ++k)
    for (int64_t q = 0; q < N; ++q)
      for (int64_t i = 0; i < B; ++i) order.push_back(q * (R / N) + k * B + i);
  auto reference_rows = std::make_shared<data::Dataset>(rows->subset(order));

  auto one = make_model();
  trainer::MTLTrainer t1(one, options(GetParam()));
  data::DataLoader l1(reference_rows, {.batch_size = N * B, .shuffle = false, .prefetch = 0});
  t1.fit(l1);

  auto many = make_model();
  auto opts = options(GetParam());
  opts.communicator = std::shared_ptr<dist::Communicator>(&world, [](dist::Communicator*) {});
  trainer::MTLTrainer tn(many, opts);
  data::DataLoader ln(data::rank_rows(rows, world.rank(), static_cast<int>(N)),
                      {.batch_size = B, .shuffle = false, .prefetch = 0});
  tn.fit(ln);

  ASSERT_EQ(tn.history().size(), t1.history().size());
  for (size_t e = 0; e < t1.history().size(); ++e) {
    for (size_t t = 0; t < 2; ++t) {
      const double a = tn.history()[e].train_loss[t], b = t1.history()[e].train_loss[t];
      EXPECT_NEAR(a, b, 1e-5 * std::abs(b)) << "epoch " << e << " task " << t;
      const double wa = tn.history()[e].weights[t], wb = t1.history()[e].weights[t];
      EXPECT_NEAR(wa, wb, 1e-5 * std::abs(wb)) << "weights, epoch " << e << " task " << t;
    }
  }
  auto state = [](models::MultiTaskModel& m) {
    auto s = m.named_parameters();
    for (auto& b : m.named_buffers()) s.push_back(b);
    return s;
  };
  const auto sa = state(*many), sb = state(*one);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    const auto va = sa[i].second.to_vector<double>(), vb = sb[i].second.to_vector<double>();
    double num = 0, den = 0;
    for (size_t k = 0; k < va.size(); ++k) num += (va[k] - vb[k]) * (va[k] - vb[k]), den += vb[k] * vb[k];
    EXPECT_LE(std::sqrt(num), 1e-5 * std::max(std::sqrt(den), 1e-12)) << sa[i].first;
  }
}

INSTANTIATE_TEST_SUITE_P(Strategies, TrainerDataParallel, ::testing::Values("fixed", "dwa", "gradnorm"));

}  // namespace
}  // namespace rechub
