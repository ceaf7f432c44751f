// Device placement that runs on any machine: Module::to(cpu) keeps every tensor's identity,
// moving to a missing CUDA device is a clear error, and a trained model's optimizer state
// round-trips through export/import (the path a checkpoint takes, CPU copies out and back).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/trainer/trainer.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/optim.h"

namespace rechub::models {
namespace {

nlohmann::json mmoe_config() {
  Features f;
  f.sparse = {{.name = "a", .vocab_size = 13, .embed_dim = 4}, {.name = "b", .vocab_size = 5, .embed_dim = 4}};
  f.dense = {{.name = "x"}};
  return {{"features", features_to_json(f)},
          {"expert_units", {8, 6}},
          {"num_experts", 3},
          {"num_tasks", 2},
          {"tower_units", {4}},
          {"embedding_init_std", 0.1}};
}

struct Inputs {
  Tensor sparse, dense, labels;
};
Inputs inputs(int64_t B, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < B; ++b) {
    ids.push_back(static_cast<int64_t>(g.randint(13)));
    ids.push_back(static_cast<int64_t>(g.randint(5)));
  }
  return {from_vector(ids, {B, 2}), uniform({B, 1}, 0, 1, {}, &g), bernoulli({B, 2}, 0.5, {}, &g)};
}

void train_step(MultiTaskModel& m, nn::Optimizer& opt, const Inputs& in) {
  const ModelOutput out = m.forward(in.sparse, in.dense);
  const auto losses = m.loss(out, in.labels);
  opt.zero_grad();
  backward(losses[0] + losses[1]);
  opt.step();
}

TEST(ModuleTo, CpuIsANoOpThatKeepsIdentityNamesAndRequiresGrad) {
  auto m = make_model("mmoe", mmoe_config());
  const auto params = m->named_parameters();
  const auto buffers = m->named_buffers();
  std::map<std::string, const void*> data;
  for (const auto& [n, t] : params) data[n] = t.raw_data();
  EXPECT_EQ(m->device(), Device::cpu());
  m->to(Device::cpu());
  EXPECT_EQ(m->device(), Device::cpu());
  const auto after = m->named_parameters();
  ASSERT_EQ(after.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(after[i].first, params[i].first);
    EXPECT_TRUE(after[i].second.same(params[i].second)) << params[i].first;
    EXPECT_EQ(after[i].second.raw_data(), data[params[i].first]) << params[i].first << ": data was copied";
    EXPECT_TRUE(after[i].second.requires_grad()) << params[i].first;
    EXPECT_EQ(after[i].second.name(), params[i].first);
  }
  const auto bafter = m->named_buffers();
  ASSERT_EQ(bafter.size(), buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) EXPECT_TRUE(bafter[i].second.same(buffers[i].second));
}

TEST(ModuleTo, MovingDataInPlaceKeepsHandlesHeldElsewhere) {
  // Tensor::move_to_ onto the same device keeps the storage; the handle identity is what to() relies on.
  Tensor t = from_vector(std::vector<float>{1, 2, 3}, {3});
  Tensor alias = t;
  t.move_to_(Device::cpu());
  EXPECT_TRUE(alias.same(t));
  EXPECT_EQ(alias.to_vector<float>(), (std::vector<float>{1, 2, 3}));
}

TEST(ModuleTo, MissingCudaDeviceIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is visible";
  auto m = make_model("mmoe", mmoe_config());
  try {
    m->to(Device::cuda(0));
    FAIL() << "to(cuda:0) without a CUDA device did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("no CUDA"), std::string::npos) << msg;
  }
  // Nothing moved.
  for (const auto& [n, t] : m->named_parameters()) EXPECT_TRUE(t.device().is_cpu()) << n;
  // The trainer reports the same, naming the device.
  try {
    trainer::MTLTrainer t(m, {.progress = false, .device = Device::cuda(0)});
    FAIL() << "a trainer on cuda:0 without a CUDA device did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot train on cuda:0"), std::string::npos) << e.what();
  }
}

TEST(OptimizerState, ModelStateRoundTripsThroughExportAndImport) {
  for (const char* kind : {"adam", "adamw", "sgd", "adagrad"}) {
    SCOPED_TRACE(kind);
    auto a = make_model("mmoe", mmoe_config());
    auto b = make_model("mmoe", mmoe_config());
    auto make_opt = [&](MultiTaskModel& m) -> std::unique_ptr<nn::Optimizer> {
      std::vector<nn::ParamGroup> g{{.params = m.parameters(), .lr = 1e-2, .weight_decay = 1e-3}};
      const std::string k = kind;
      if (k == "adam") return std::make_unique<nn::Adam>(std::move(g));
      if (k == "adamw") return std::make_unique<nn::AdamW>(std::move(g));
      if (k == "sgd") return std::make_unique<nn::SGD>(std::move(g), nn::SGDOptions{.momentum = 0.9});
      return std::make_unique<nn::Adagrad>(std::move(g));
    };
    auto oa = make_opt(*a);
    auto ob = make_opt(*b);
    const Inputs in1 = inputs(16, 1), in2 = inputs(16, 2);
    train_step(*a, *oa, in1);
    train_step(*a, *oa, in2);
    // b takes a's weights and optimizer state (CPU copies, as a checkpoint stores them).
    {
      NoGradGuard ng;
      for (const auto& [n, t] : a->named_parameters()) b->parameter(n).copy_(t);
      for (const auto& [n, t] : a->named_buffers()) b->buffer(n).copy_(t);
    }
    const nn::ParamNames na = nn::param_names(*a), nb = nn::param_names(*b);
    const auto state = oa->state_tensors(&na);
    ASSERT_FALSE(state.empty());
    for (const auto& [n, t] : state) EXPECT_TRUE(t.device().is_cpu()) << n;
    ob->load_state(state, oa->config_json(&na), &nb);
    const auto back = ob->state_tensors(&nb);
    ASSERT_EQ(back.size(), state.size());
    for (size_t i = 0; i < state.size(); ++i) {
      EXPECT_EQ(back[i].first, state[i].first);
      EXPECT_EQ(back[i].second.to_vector<double>(), state[i].second.to_vector<double>()) << state[i].first;
    }
    // The same next step from the same state: bit-identical parameters.
    const Inputs in3 = inputs(16, 3);
    train_step(*a, *oa, in3);
    train_step(*b, *ob, in3);
    for (const auto& [n, t] : a->named_parameters())
      EXPECT_EQ(t.to_vector<float>(), b->parameter(n).to_vector<float>()) << n;
  }
}

TEST(BatchNormCounter, IncrementsOnTheCpu) {
  nn::BatchNorm1d bn(3);
  Tensor x = uniform({4, 3}, -1, 1);
  bn.forward(x);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked(), 2);
}

}  // namespace
}  // namespace rechub::models
