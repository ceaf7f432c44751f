// Every model's whole training step on cuda:0 against the same step on the CPU (the reference):
// the same weights (copied before the move), the same inputs and dropout masks (drawn on the host
// from the same generators), forward in training mode (BatchNorm batch statistics and running
// updates), per-task losses, backward, and Adam with a row-sparse embedding gradient (lazy rows).
// After two steps the losses, the predictions and every parameter and buffer must agree.
//
// Tolerance: 1e-4 relative (with a 1e-5 absolute floor for values near zero). The two paths
// differ only in float32 summation order (cuBLAS vs Eigen GEMMs, tree vs sequential reductions),
// a few ulps (~1e-7 relative) per op, compounded over ~20 ops and two updates. Adam's eps is 1e-3
// here, not 1e-8: with a tiny eps an element whose gradient is ~1e-9 moves by +-lr depending on the
// sign of that round-off, which compares nothing; with eps = 1e-3 such elements move by ~lr*1e-6.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/models/model.h"
#include "rechub/nn/optim.h"

namespace rechub::models {
namespace {

constexpr double kRel = 1e-4, kAbs = 1e-5;

Features features() {
  Features f;
  f.sparse = {{.name = "a", .vocab_size = 40, .embed_dim = 8},
              {.name = "b", .vocab_size = 9, .embed_dim = 8},
              {.name = "c", .vocab_size = 0, .embed_dim = 0, .shared_with = "a"}};
  f.dense = {{.name = "x"}, {.name = "y"}};
  return f;
}

std::vector<std::pair<std::string, nlohmann::json>> all_models() {
  const nlohmann::json f = features_to_json(features());
  const nlohmann::json common = {{"features", f}, {"embedding_init_std", 0.1}, {"dropout", 0.1}};
  auto with = [&](nlohmann::json j) {
    for (auto& [k, v] : common.items()) j[k] = v;
    return j;
  };
  return {
      {"shared_bottom", with({{"hidden_units", {16}}, {"task_hidden_units", {8}}, {"num_tasks", 2}})},
      {"esmm", with({{"tower_units", {16, 8}}})},
      {"mmoe", with({{"expert_units", {16, 8}}, {"num_experts", 3}, {"num_tasks", 2}, {"tower_units", {8}}})},
      {"omoe", with({{"expert_units", {16}}, {"num_experts", 2}, {"num_tasks", 2}, {"tower_units", {8}}})},
      {"ple", with({{"expert_units", {16, 8}},
                    {"num_experts", 2},
                    {"num_layers", 2},
                    {"num_shared_experts", 1},
                    {"num_tasks", 2},
                    {"tower_units", {8}}})},
      {"aitm", with({{"hidden_units", {16}}, {"tower_units", {8}}, {"num_tasks", 2}})},
  };
}

struct Inputs {
  Tensor sparse, dense, labels;
};
Inputs inputs(int64_t B, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < B; ++b) {
    ids.push_back(static_cast<int64_t>(g.randint(40)));
    ids.push_back(static_cast<int64_t>(g.randint(9)));
    ids.push_back(static_cast<int64_t>(g.randint(40)));
  }
  return {from_vector(ids, {B, 3}), uniform({B, 2}, -1, 1, {}, &g), bernoulli({B, 2}, 0.4, {}, &g)};
}

struct StepResult {
  std::vector<double> losses;
  std::vector<float> predictions;
};

StepResult step(MultiTaskModel& m, nn::Optimizer& opt, const Inputs& in) {
  m.train();
  const ModelOutput out = m.forward(in.sparse, in.dense);  // CPU inputs follow the model's device
  const auto losses = m.loss(out, in.labels);
  StepResult r;
  for (const Tensor& l : losses) r.losses.push_back(l.item());
  r.predictions = out.prediction_matrix().to_vector<float>();
  opt.zero_grad();
  Tensor total = losses[0];
  for (size_t t = 1; t < losses.size(); ++t) total = total + losses[t];
  backward(total);
  opt.step();
  return r;
}

void expect_close(const std::vector<double>& cpu, const std::vector<double>& gpu, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double d = std::abs(cpu[i] - gpu[i]), tol = kRel * std::abs(cpu[i]) + kAbs;
    if (!(d <= tol)) {
      if (bad == 0) ADD_FAILURE() << what << "[" << i << "]: cpu " << cpu[i] << " cuda " << gpu[i];
      ++bad;
    }
    worst = std::max(worst, d);
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " elements differ (max abs diff " << worst
                     << ")";
}
template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

TEST(CudaModelStep, EveryModelTrainsLikeTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount found none (or no CUDA backend)";
  const Inputs in1 = inputs(64, 11), in2 = inputs(64, 12);
  for (const auto& [kind, cfg] : all_models()) {
    SCOPED_TRACE(kind);
    auto cpu = make_model(kind, cfg);
    auto gpu = make_model(kind, cfg);
    {  // the same weights, copied explicitly (not relying on the seeds alone)
      NoGradGuard ng;
      for (const auto& [n, t] : cpu->named_parameters()) gpu->parameter(n).copy_(t);
      for (const auto& [n, t] : cpu->named_buffers()) gpu->buffer(n).copy_(t);
    }
    const Tensor arena_before = gpu->parameter("embedding.arena_d8");
    gpu->to(Device::cuda(0));
    ASSERT_EQ(gpu->device(), Device::cuda(0));
    EXPECT_TRUE(gpu->parameter("embedding.arena_d8").same(arena_before)) << "to() changed the tensor's identity";
    for (const auto& [n, t] : gpu->named_parameters()) ASSERT_TRUE(t.device().is_cuda()) << n;
    for (const auto& [n, t] : gpu->named_buffers()) ASSERT_TRUE(t.device().is_cuda()) << n;

    const nn::AdamOptions ao{.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-3};
    nn::Adam oc({{.params = cpu->parameters(), .lr = 1e-2, .weight_decay = 0}}, ao);
    nn::Adam og({{.params = gpu->parameters(), .lr = 1e-2, .weight_decay = 0}}, ao);
    for (const Inputs* in : {&in1, &in2}) {
      const StepResult rc = step(*cpu, oc, *in);
      const StepResult rg = step(*gpu, og, *in);
      expect_close(rc.losses, rg.losses, kind + " losses");
      expect_close(as_double(rc.predictions), as_double(rg.predictions), kind + " predictions");
    }
    // The embedding's gradient was row-sparse on both (lazy Adam on the touched rows only).
    for (const auto& [n, t] : cpu->named_parameters())
      expect_close(t.to_vector<double>(), gpu->parameter(n).to_vector<double>(), kind + " parameter " + n);
    for (const auto& [n, t] : cpu->named_buffers())
      expect_close(t.to_vector<double>(), gpu->buffer(n).to_vector<double>(), kind + " buffer " + n);
    // Optimizer state: exported as CPU copies, equal to the CPU run's.
    const nn::ParamNames nc = nn::param_names(*cpu), ng = nn::param_names(*gpu);
    const auto sc = oc.state_tensors(&nc), sg = og.state_tensors(&ng);
    ASSERT_EQ(sc.size(), sg.size());
    for (size_t i = 0; i < sc.size(); ++i) {
      EXPECT_TRUE(sg[i].second.device().is_cpu()) << sg[i].first;
      expect_close(sc[i].second.to_vector<double>(), sg[i].second.to_vector<double>(), kind + " state " + sc[i].first);
    }
  }
}

TEST(CudaModelStep, OptimizerStateLoadsOntoTheDevice) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount found none (or no CUDA backend)";
  const auto cfg = all_models()[2].second;  // mmoe
  auto cpu = make_model("mmoe", cfg);
  nn::AdamW oc({{.params = cpu->parameters(), .lr = 1e-2, .weight_decay = 1e-2}});
  step(*cpu, oc, inputs(32, 5));
  auto gpu = make_model("mmoe", cfg);
  {
    NoGradGuard ng;
    for (const auto& [n, t] : cpu->named_parameters()) gpu->parameter(n).copy_(t);
    for (const auto& [n, t] : cpu->named_buffers()) gpu->buffer(n).copy_(t);
  }
  gpu->to(Device::cuda(0));
  nn::AdamW og({{.params = gpu->parameters(), .lr = 1e-2, .weight_decay = 1e-2}});
  const nn::ParamNames nc = nn::param_names(*cpu), ng = nn::param_names(*gpu);
  og.load_state(oc.state_tensors(&nc), oc.config_json(&nc), &ng);
  for (const auto& [n, t] : gpu->named_parameters()) {
    const auto* st = og.state(t);
    ASSERT_NE(st, nullptr) << n;
    for (const auto& [k, s] : st->tensors) EXPECT_TRUE(s.device().is_cuda()) << n << "." << k;
  }
  const Inputs in = inputs(32, 6);
  const StepResult rc = step(*cpu, oc, in), rg = step(*gpu, og, in);
  expect_close(rc.losses, rg.losses, "losses after loading the state");
  for (const auto& [n, t] : cpu->named_parameters())
    expect_close(t.to_vector<double>(), gpu->parameter(n).to_vector<double>(), "parameter " + n);
}

}  // namespace
}  // namespace rechub::models
