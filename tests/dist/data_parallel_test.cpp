// Data-parallel training under mpirun: N ranks of batch B train exactly as one process of batch
// N·B (the reference: the same code in this process without the data-parallel hooks, on the
// concatenated global batches). Run as `mpirun -np 2 rechub_dist_tests` (ctest does); as a plain
// process (world 1) the same comparisons hold trivially and still run.
//
// Compared after several Adam steps: every task's loss at every step, every parameter and buffer
// (BatchNorm running statistics), and the task weights of the balancer: within 1e-5 relative
// (float sums taken in a different order).
#include "rechub/nn/data_parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/dist/communicator.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/ops.h"
#include "rechub/core/ops_nn.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/trainer/balance.h"
#include "rechub/nn/optim.h"
#include "support/dist_env.h"

namespace rechub {
namespace {

using models::Features;

constexpr int64_t kVocabA = 23, kVocabB = 7;

nlohmann::json features_json() {
  Features f;
  f.sparse = {{.name = "a", .vocab_size = kVocabA, .embed_dim = 4},
              {.name = "b", .vocab_size = kVocabB, .embed_dim = 4}};
  f.dense = {{.name = "x"}, {.name = "y"}};
  return models::features_to_json(f);
}

nlohmann::json model_config(const std::string& kind) {
  const nlohmann::json f = features_json();
  if (kind == "ple")
    return {{"features", f},           {"expert_units", {8, 6}}, {"num_experts", 2},  {"num_layers", 2},
            {"num_shared_experts", 1}, {"num_tasks", 2},         {"tower_units", {4}}};
  return {{"features", f}, {"expert_units", {8, 6}}, {"num_experts", 3}, {"num_tasks", 2}, {"tower_units", {5}}};
}

// Global batch k is rows [k·G, (k+1)·G) of a fixed data set (the same on every rank).
struct Data {
  Tensor sparse, dense, labels;
};
Data make_data(int64_t rows) {
  Generator g(42);
  std::vector<int64_t> ids;
  for (int64_t r = 0; r < rows; ++r) {
    ids.push_back(static_cast<int64_t>(g.randint(kVocabA)));
    ids.push_back(static_cast<int64_t>(g.randint(kVocabB)));
  }
  Data d;
  d.sparse = from_vector(ids, {rows, 2});
  d.dense = uniform({rows, 2}, -1, 1, {}, &g);
  d.labels = bernoulli({rows, 2}, 0.4, {}, &g);
  return d;
}
data::Batch rows_of(const Data& d, int64_t from, int64_t n) {
  data::Batch b;
  b.sparse = ops::narrow(d.sparse, 0, from, n).clone();
  b.dense = ops::narrow(d.dense, 0, from, n).clone();
  b.labels = ops::narrow(d.labels, 0, from, n).clone();
  return b;
}

struct TrainRun {
  std::vector<std::vector<double>> losses;  // [step][task]
  std::vector<std::pair<std::string, Tensor>> state;
  std::vector<double> weights;
  int64_t reductions = 0;
};

// Trains `steps` Adam steps, as MTLTrainer does (forward, per-task losses, the balancer sets the
// gradients, one optimizer step). With `dp`, this rank trains on its share of each global batch.
TrainRun train(const std::string& kind, const std::string& strategy, const Data& d, int64_t steps, int64_t global_batch,
               dist::Communicator* world) {
  auto model = models::make_model(kind, model_config(kind));
  model->train();
  const auto layers = models::shared_task_layers(*model);
  trainer::BalanceParams bp;
  std::vector<Tensor> shared_set(layers.shared.begin(), layers.shared.end());
  for (const Tensor& p : model->parameters()) {
    bool shared = false;
    for (const Tensor& s : shared_set) shared = shared || s.impl() == p.impl();
    bp.params.push_back(p);
    bp.shared.push_back(shared);
  }
  bp.last_shared = model->last_shared_parameters();
  nn::Adam opt({nn::ParamGroup{.params = model->parameters(), .lr = 1e-2}});
  auto balancer = trainer::make_balancer(2, {.strategy = strategy, .task_types = model->task_types()});
  std::unique_ptr<nn::DataParallel> dp;
  std::shared_ptr<dist::Communicator> shared_world;
  if (world) {
    shared_world = std::shared_ptr<dist::Communicator>(world, [](dist::Communicator*) {});
    dp = std::make_unique<nn::DataParallel>(shared_world, model->named_parameters(), /*bucket_elements=*/64);
  }
  const int64_t N = world ? world->size() : 1, r = world ? world->rank() : 0;
  const int64_t B = global_batch / N;
  TrainRun run;
  for (int64_t k = 0; k < steps; ++k) {
    const data::Batch b = rows_of(d, k * global_batch + r * B, B);
    const auto out = model->forward(b);
    std::vector<Tensor> losses = model->loss(out, b.labels, {});
    if (dp) losses = dp->global_losses(losses, B);
    std::vector<double> lv;
    for (const Tensor& l : losses) lv.push_back(l.item());
    run.losses.push_back(lv);
    opt.zero_grad();
    balancer->backward(losses, bp);
    opt.step();
  }
  for (auto& [n, t] : model->named_parameters()) run.state.emplace_back(n, t.clone());
  for (auto& [n, t] : model->named_buffers()) run.state.emplace_back(n, t.clone());
  run.weights = balancer->weights();
  if (dp) run.reductions = dp->stats().calls;
  return run;
}

// ‖a − b‖ / max(‖b‖, tiny), per tensor.
double rel_diff(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) num += (va[i] - vb[i]) * (va[i] - vb[i]), den += vb[i] * vb[i];
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
}

void expect_same(const TrainRun& dp, const TrainRun& one) {
  ASSERT_EQ(dp.losses.size(), one.losses.size());
  for (size_t k = 0; k < one.losses.size(); ++k)
    for (size_t t = 0; t < one.losses[k].size(); ++t)
      EXPECT_NEAR(dp.losses[k][t], one.losses[k][t], 1e-5 * std::abs(one.losses[k][t]))
          << "step " << k << " task " << t;
  ASSERT_EQ(dp.state.size(), one.state.size());
  for (size_t i = 0; i < one.state.size(); ++i) {
    ASSERT_EQ(dp.state[i].first, one.state[i].first);
    EXPECT_LE(rel_diff(dp.state[i].second, one.state[i].second), 1e-5) << one.state[i].first;
  }
  ASSERT_EQ(dp.weights.size(), one.weights.size());
  for (size_t t = 0; t < one.weights.size(); ++t)
    EXPECT_NEAR(dp.weights[t], one.weights[t], 1e-5 * std::abs(one.weights[t]));
}

struct Case {
  std::string kind, strategy;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.kind << "/" << c.strategy; }
class DataParallelEqualsOneProcess : public ::testing::TestWithParam<Case> {};

TEST_P(DataParallelEqualsOneProcess, LossesParametersAndTaskWeightsAfterSixSteps) {
  dist::Communicator& world = test::world();
  const int64_t steps = 6, per_rank = 16, G = per_rank * world.size();
  const Data d = make_data(steps * G);
  const TrainRun one = train(GetParam().kind, GetParam().strategy, d, steps, G, nullptr);
  const TrainRun dp = train(GetParam().kind, GetParam().strategy, d, steps, G, &world);
  expect_same(dp, one);
  if (world.size() > 1) {
    EXPECT_GT(dp.reductions, 0);
  }
  // The reference really differs from training on this rank's rows alone (the test can fail).
  if (world.size() > 1) {
    const TrainRun alone = train(GetParam().kind, GetParam().strategy, d, steps, per_rank, nullptr);
    EXPECT_GT(std::abs(alone.losses.back()[0] - one.losses.back()[0]), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, DataParallelEqualsOneProcess,
                         ::testing::Values(Case{"mmoe", "fixed"}, Case{"mmoe", "gradnorm"}, Case{"ple", "fixed"},
                                           Case{"mmoe", "metabalance"}, Case{"mmoe", "pcgrad"}, Case{"mmoe", "uwl"}),
                         [](const auto& info) { return info.param.kind + "_" + info.param.strategy; });

TEST(DataParallelBatchNorm, GlobalStatisticsMatchTheConcatenatedBatch) {
  dist::Communicator& world = test::world();
  const int64_t B = 5, C = 3, N = world.size();
  Generator g(7);
  const Tensor all = uniform({B * N, C}, -2, 3, {.dtype = DType::f64}, &g);
  Tensor w = from_vector(std::vector<double>{1.5, -0.5, 2.0}, {C}, {.dtype = DType::f64, .requires_grad = true});
  Tensor bias = zeros({C}, {.dtype = DType::f64, .requires_grad = true});
  // The reference: one batch of B·N rows, no group.
  Tensor x1 = all.clone();
  x1.requires_grad_();
  Tensor y1 = ops::batch_norm(x1, w, bias, Tensor(), Tensor(), true, 0.1, 1e-5);
  const Tensor up = uniform({B * N, C}, -1, 1, {.dtype = DType::f64}, &g);
  backward(ops::sum(ops::mul(y1, up)));
  // This rank's rows, with the group: y and dx are the same rows of the reference's.
  Tensor x2 = ops::narrow(all, 0, world.rank() * B, B).clone();
  x2.requires_grad_();
  Tensor y2;
  {
    dist::BatchStatsGroupScope scope(&world);
    y2 = ops::batch_norm(x2, w.detach(), bias.detach(), Tensor(), Tensor(), true, 0.1, 1e-5);
    backward(ops::sum(ops::mul(y2, ops::narrow(up, 0, world.rank() * B, B).clone())));
  }
  EXPECT_LE(rel_diff(y2, ops::narrow(y1, 0, world.rank() * B, B)), 1e-12);
  EXPECT_LE(rel_diff(x2.grad(), ops::narrow(x1.grad(), 0, world.rank() * B, B)), 1e-12);
}

TEST(Communicator, CollectivesMoveWhatTheySay) {
  dist::Communicator& w = test::world();
  const int64_t N = w.size(), r = w.rank();
  std::vector<double> v = {static_cast<double>(r + 1), 2.0};
  w.allreduce(v.data(), 2);
  EXPECT_EQ(v[0], static_cast<double>(N * (N + 1) / 2));
  EXPECT_EQ(v[1], 2.0 * static_cast<double>(N));
  EXPECT_EQ(w.allreduce_one<int64_t>(r, dist::ReduceOp::max), N - 1);
  // allgatherv: rank r sends r+1 copies of r.
  std::vector<int64_t> counts;
  const auto got = w.allgatherv(std::vector<float>(static_cast<size_t>(r + 1), static_cast<float>(r)), &counts);
  size_t at = 0;
  for (int64_t q = 0; q < N; ++q) {
    EXPECT_EQ(counts[static_cast<size_t>(q)], q + 1);
    for (int64_t k = 0; k <= q; ++k) EXPECT_EQ(got[at++], static_cast<float>(q));
  }
  // alltoallv: rank r sends q+1 values 100·r+q to rank q.
  std::vector<int64_t> send, sc;
  for (int64_t q = 0; q < N; ++q) {
    sc.push_back(q + 1);
    for (int64_t k = 0; k <= q; ++k) send.push_back(100 * r + q);
  }
  std::vector<int64_t> rc;
  const auto recv = w.alltoallv(send, sc, &rc);
  at = 0;
  for (int64_t q = 0; q < N; ++q) {
    EXPECT_EQ(rc[static_cast<size_t>(q)], r + 1);
    for (int64_t k = 0; k <= r; ++k) EXPECT_EQ(recv[at++], 100 * q + r);
  }
  std::vector<float> b = {static_cast<float>(r), 7.f};
  w.broadcast(b.data(), 2, 0);
  EXPECT_EQ(b[0], 0.f);
}

}  // namespace
}  // namespace rechub
