// Optimizers without a PyTorch process: row-sparse updates touch only the batch's rows (bit for
// bit elsewhere, moments included), sparse and dense updates agree on the touched rows where the
// math says so, parameter groups and learning rates, versions, clip_grad_norm, schedules, state
// export/import and the errors.
#include "rechub/nn/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/lr_scheduler.h"

namespace rechub::nn {
namespace {

std::vector<uint32_t> bits(const Tensor& t) {
  const auto v = t.to_vector<float>();
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

// Rows of a [V, D] tensor as bit patterns.
std::vector<uint32_t> row_bits(const std::vector<uint32_t>& b, int64_t row, int64_t d) {
  return std::vector<uint32_t>(b.begin() + row * d, b.begin() + (row + 1) * d);
}

class SparseUpdate : public ::testing::TestWithParam<std::string> {};

TEST_P(SparseUpdate, TouchesOnlyTheRowsInTheBatch) {
  const std::string kind = GetParam();
  EmbeddingCollection e({{"a", 50, 8, ""}, {"b", 30, 8, ""}}, {.init_std = 0.1, .seed = 2});
  std::unique_ptr<Optimizer> opt;
  std::vector<ParamGroup> groups = {{e.parameters(), 0.05, 0.01}};
  if (kind == "adam") opt = std::make_unique<Adam>(groups);
  if (kind == "adamw") opt = std::make_unique<AdamW>(groups);
  if (kind == "adagrad") opt = std::make_unique<Adagrad>(groups);
  if (kind == "sgd") opt = std::make_unique<SGD>(groups, SGDOptions{.momentum = 0.9});
  Tensor arena = e.arenas()[0];
  Generator g(1);
  // A first step on some rows, so moments exist everywhere they were touched.
  Tensor ids1 = from_vector(std::vector<int64_t>{1, 2, 3, 2, 1, 29}, {3, 2});
  backward(ops::sum(ops::mul(e.forward(ids1), randn({3, 16}, {}, &g))));
  opt->step();
  opt->zero_grad();
  const auto p0 = bits(arena);
  std::map<std::string, std::vector<uint32_t>> s0;
  for (auto& [k, t] : opt->state(arena)->tensors) s0[k] = bits(t);
  const int64_t step0 = opt->state(arena)->step;
  // Second batch: a rows {4, 1}, b rows {0, 5} -> arena rows {4, 1, 50, 55}.
  Tensor ids2 = from_vector(std::vector<int64_t>{4, 0, 1, 5, 4, 5}, {3, 2});
  backward(ops::sum(ops::mul(e.forward(ids2), randn({3, 16}, {}, &g))));
  ASSERT_TRUE(arena.grad().is_sparse());
  const uint64_t v0 = arena.version();
  opt->step();
  EXPECT_GT(arena.version(), v0);
  const auto p1 = bits(arena);
  const std::set<int64_t> touched = {1, 4, 50, 55};
  for (int64_t r = 0; r < 80; ++r) {
    if (touched.count(r))
      EXPECT_NE(row_bits(p1, r, 8), row_bits(p0, r, 8)) << kind << " row " << r << " should move";
    else
      EXPECT_EQ(row_bits(p1, r, 8), row_bits(p0, r, 8)) << kind << " row " << r << " must not move";
    for (auto& [k, t] : opt->state(arena)->tensors) {
      const auto now = bits(t);
      if (!touched.count(r)) {
        EXPECT_EQ(row_bits(now, r, 8), row_bits(s0[k], r, 8)) << kind << " " << k << " row " << r;
      }
    }
  }
  if (kind != "sgd") {
    EXPECT_EQ(opt->state(arena)->step, step0 + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, SparseUpdate, ::testing::Values("adam", "adamw", "adagrad", "sgd"));

TEST(Optimizer, SparseAndDenseAgreeForAdagradAndPlainSgd) {
  // Where untouched rows would not move anyway (zero gradient leaves Adagrad and momentum-free SGD
  // rows unchanged), the row-sparse update must equal the dense one.
  for (const std::string kind : {"adagrad", "sgd"}) {
    Generator g(7);
    Tensor a = randn({10, 3}, {.requires_grad = true}, &g);
    Tensor b = a.detach().clone().requires_grad_(true);
    Tensor idx = from_vector(std::vector<int64_t>{2, 7, 2}, {3}), val = randn({3, 3}, {}, &g);
    std::unique_ptr<Optimizer> oa, ob;
    if (kind == "adagrad") {
      oa = std::make_unique<Adagrad>(std::vector<ParamGroup>{{{a}, 0.1}});
      ob = std::make_unique<Adagrad>(std::vector<ParamGroup>{{{b}, 0.1}});
    } else {
      oa = std::make_unique<SGD>(std::vector<ParamGroup>{{{a}, 0.1}});
      ob = std::make_unique<SGD>(std::vector<ParamGroup>{{{b}, 0.1}});
    }
    for (int s = 0; s < 2; ++s) {
      Tensor sp = Tensor::sparse_rows(idx, val, {10, 3});
      a.set_grad(sp);
      b.set_grad(sp.to_dense());
      oa->step();
      ob->step();
    }
    const auto av = a.to_vector<float>(), bv = b.to_vector<float>();
    for (size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(av[i], bv[i], 1e-6) << kind;
  }
}

TEST(Optimizer, GroupsLearningRatesAndSkippedParameters) {
  Tensor w = ones({2}, {.requires_grad = true}), b = ones({2}, {.requires_grad = true});
  w.set_name("w");
  b.set_name("b");
  SGD opt({{{w}, 0.1, 0, "shared"}, {{b}, 0.5, 0, "task0"}});
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_EQ(opt.group(1).name, "task0");
  w.set_grad(ones({2}));
  opt.step();  // b has no gradient: untouched
  EXPECT_FLOAT_EQ(w.to_vector<float>()[0], 0.9f);
  EXPECT_FLOAT_EQ(b.to_vector<float>()[0], 1.0f);
  opt.set_lr(0, 0.2);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.2);
  b.set_grad(ones({2}));
  opt.step();
  EXPECT_FLOAT_EQ(w.to_vector<float>()[0], 0.7f);
  EXPECT_FLOAT_EQ(b.to_vector<float>()[0], 0.5f);
  opt.zero_grad();
  EXPECT_FALSE(w.grad().defined());
  EXPECT_THROW(opt.lr(2), Error);
  EXPECT_THROW(opt.set_lr(0, -1.0), Error);
}

TEST(Optimizer, ConstructionErrors) {
  Tensor w = ones({2}, {.requires_grad = true});
  EXPECT_THROW(SGD(std::vector<ParamGroup>{}), Error);
  EXPECT_THROW(SGD({{{w}, 0.1}, {{w}, 0.1}}), Error);  // same tensor twice
  EXPECT_THROW(SGD({{{ones({2})}, 0.1}}), Error);      // does not require grad
  EXPECT_THROW(SGD({{{w}, -0.1}}), Error);
  EXPECT_THROW(SGD({{{w}, 0.1}}, {.momentum = 0, .nesterov = true}), Error);
  EXPECT_THROW(Adam({{{w}, 0.1}}, {.beta1 = 1.0}), Error);
  EXPECT_THROW(Adagrad({{{w}, 0.1}}, {.lr_decay = -1}), Error);
}

TEST(Optimizer, StateExportImportRoundTripAndErrors) {
  Tensor w = ones({3, 2}, {.requires_grad = true}), b = zeros({2}, {.requires_grad = true});
  w.set_name("layer.weight");
  b.set_name("layer.bias");
  Adam a({{{w, b}, 0.01, 0.1, "all"}});
  Generator g(3);
  for (int s = 0; s < 2; ++s) {
    w.set_grad(randn({3, 2}, {}, &g));
    b.set_grad(randn({2}, {}, &g));
    a.step();
  }
  const auto state = a.state_tensors();
  const auto cfg = a.config_json();
  ASSERT_EQ(state.size(), 6u);  // exp_avg, exp_avg_sq, step for each
  EXPECT_EQ(cfg["kind"], "adam");
  EXPECT_EQ(cfg["groups"][0]["params"][1], "layer.bias");

  Tensor w2 = ones({3, 2}, {.requires_grad = true}), b2 = zeros({2}, {.requires_grad = true});
  w2.set_name("layer.weight");
  b2.set_name("layer.bias");
  Adam a2({{{w2, b2}, 0.5, 0.0, "all"}});
  a2.load_state(state, cfg);
  EXPECT_DOUBLE_EQ(a2.lr(0), 0.01);
  EXPECT_DOUBLE_EQ(a2.group(0).weight_decay, 0.1);
  EXPECT_EQ(a2.state(w2)->step, 2);
  EXPECT_EQ(bits(a2.state(w2)->tensors.at("exp_avg_sq")), bits(a.state(w)->tensors.at("exp_avg_sq")));
  // The same next step from the same state gives the same weights.
  {
    NoGradGuard ng;
    w2.copy_(w);
    b2.copy_(b);
  }
  Tensor gw = randn({3, 2}, {}, &g), gb = randn({2}, {}, &g);
  w.set_grad(gw), b.set_grad(gb), w2.set_grad(gw), b2.set_grad(gb);
  a.step();
  a2.step();
  EXPECT_EQ(bits(w), bits(w2));

  // Wrong kind, wrong shape, unknown key, partial state: all listed, nothing changed.
  SGD sgd({{{w2, b2}, 0.1}}, {.momentum = 0.9});
  auto bad = state;
  bad[0].second = zeros({5});
  bad.emplace_back("layer.weight.velocity", zeros({3, 2}));
  bad.erase(bad.begin() + 1);
  try {
    a2.load_state(bad, cfg);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("does not match the parameter's [3, 2]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'velocity' is not a state of a adam optimizer"), std::string::npos) << msg;
    EXPECT_NE(msg.find("is missing"), std::string::npos) << msg;
  }
  EXPECT_EQ(a2.state(w2)->step, 3);
  EXPECT_THROW(sgd.load_state(state, cfg), Error);
}

TEST(ClipGradNorm, MatchesTheGlobalNormAndScalesDenseAndSparse) {
  Tensor a = zeros({2, 2}, {.requires_grad = true}), t = zeros({10, 2}, {.requires_grad = true});
  a.set_grad(from_vector(std::vector<float>{3, 0, 0, 0}, {2, 2}));
  // Row 4 appears twice: coalesced before the norm, (1 + 1, 0) and (0, 4) -> norm^2 = 4 + 16.
  t.set_grad(Tensor::sparse_rows(from_vector(std::vector<int64_t>{4, 4, 1}, {3}),
                                 from_vector(std::vector<float>{1, 0, 1, 0, 0, 4}, {3, 2}), {10, 2}));
  const double n = clip_grad_norm({a, t}, 1.0);
  EXPECT_NEAR(n, std::sqrt(9.0 + 4.0 + 16.0), 1e-6);
  const double coef = 1.0 / (n + 1e-6);
  EXPECT_NEAR(a.grad().to_vector<float>()[0], 3 * coef, 1e-6);
  const auto td = t.grad().to_vector<float>();
  EXPECT_NEAR(td[4 * 2], 2 * coef, 1e-6);
  EXPECT_NEAR(td[1 * 2 + 1], 4 * coef, 1e-6);
  // Below the limit: unchanged.
  EXPECT_NEAR(clip_grad_norm({a}, 100.0), 3 * coef, 1e-6);
  EXPECT_NEAR(a.grad().to_vector<float>()[0], 3 * coef, 1e-6);
  EXPECT_NEAR(clip_grad_norm({a, t}, 10.0, INFINITY), 4 * coef, 1e-6);
}

TEST(LRSchedule, ClosedFormsAndPerGroupBases) {
  Tensor w = zeros({1}, {.requires_grad = true}), b = zeros({1}, {.requires_grad = true});
  SGD opt({{{w}, 0.1}, {{b}, 0.01}});
  LRScheduler s(opt, warmup_cosine(2, 6, 0.0, 0.0));
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.0);
  s.step();
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.05);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.005);
  s.step();
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.1);
  s.set_step(4);
  EXPECT_NEAR(opt.lr(0), 0.05, 1e-15);  // cos(pi/2)
  s.set_step(6);
  EXPECT_NEAR(opt.lr(1), 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(StepSchedule(2, 0.5).lr(1.0, 5), 0.25);
  EXPECT_DOUBLE_EQ(ExponentialSchedule(0.5).lr(1.0, 3), 0.125);
  EXPECT_THROW(CosineSchedule(0), Error);
  EXPECT_THROW(warmup_cosine(5, 5), Error);
}

}  // namespace
}  // namespace rechub::nn
