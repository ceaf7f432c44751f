// The fused expert block and gate mix: f64 finite-difference gradient checks, and the fused ops
// against their compositions from basic ops (outputs, every gradient, BatchNorm running stats).
#include <gtest/gtest.h>

#include <cmath>

#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/kernels/cpu/isa.h"
#include "support/gradcheck.h"

namespace rechub {
namespace {
using testing::gradcheck;
using testing::max_rel_diff;
using V = std::vector<Tensor>;

struct BlockSpec {
  int64_t B = 5, in = 4, E = 3;
  std::vector<int64_t> dims = {6, 3};
  bool bias = true, bn = true, training = true;
  ops::Activation act = ops::Activation::relu;
  double dropout = 0.0;
};

std::string spec_name(const BlockSpec& s) {
  std::ostringstream os;
  os << "B" << s.B << "_in" << s.in << "_E" << s.E << "_L" << s.dims.size() << (s.bias ? "_bias" : "")
     << (s.bn ? (s.training ? "_bntrain" : "_bneval") : "") << "_" << ops::activation_name(s.act)
     << (s.dropout > 0 ? "_dropout" : "");
  return os.str();
}

// Leaves: x, then per layer W[E], b[E] (if bias), gamma[E], beta[E] (if bn).
struct Block {
  std::vector<Tensor> leaves;
  std::vector<Tensor> running;  // per layer: mean[E], var[E]
};

Block make_block(const BlockSpec& s, DType dt, uint64_t seed) {
  Generator g(seed);
  Block b;
  auto leaf = [&](const Shape& sh, double lo, double hi) {
    return uniform(sh, lo, hi, {.dtype = dt, .requires_grad = true}, &g);
  };
  b.leaves.push_back(leaf({s.B, s.in}, -1, 1));
  int64_t hin = s.in;
  for (int64_t h : s.dims) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(hin));
    for (int64_t e = 0; e < s.E; ++e) b.leaves.push_back(leaf({h, hin}, -bound, bound));
    if (s.bias)
      for (int64_t e = 0; e < s.E; ++e) b.leaves.push_back(leaf({h}, -bound, bound));
    if (s.bn) {
      for (int64_t e = 0; e < s.E; ++e) b.leaves.push_back(leaf({h}, 0.5, 1.5));
      for (int64_t e = 0; e < s.E; ++e) b.leaves.push_back(leaf({h}, -0.5, 0.5));
      for (int64_t e = 0; e < s.E; ++e) b.running.push_back(uniform({h}, -0.3, 0.3, {.dtype = dt}, &g));
      for (int64_t e = 0; e < s.E; ++e) b.running.push_back(uniform({h}, 0.5, 2.0, {.dtype = dt}, &g));
    }
    hin = h;
  }
  return b;
}

std::vector<ops::ExpertLayerParams> layers_of(const BlockSpec& s, const V& leaves, const V& running) {
  std::vector<ops::ExpertLayerParams> layers;
  size_t p = 1, r = 0;
  for (size_t k = 0; k < s.dims.size(); ++k) {
    ops::ExpertLayerParams L;
    for (int64_t e = 0; e < s.E; ++e) L.weight.push_back(leaves[p++]);
    if (s.bias)
      for (int64_t e = 0; e < s.E; ++e) L.bias.push_back(leaves[p++]);
    if (s.bn) {
      for (int64_t e = 0; e < s.E; ++e) L.bn_weight.push_back(leaves[p++]);
      for (int64_t e = 0; e < s.E; ++e) L.bn_bias.push_back(leaves[p++]);
      for (int64_t e = 0; e < s.E; ++e) L.running_mean.push_back(running[r++]);
      for (int64_t e = 0; e < s.E; ++e) L.running_var.push_back(running[r++]);
    }
    layers.push_back(L);
  }
  return layers;
}

ops::ExpertsOptions options_of(const BlockSpec& s, Generator* gen = nullptr) {
  return {.activation = s.act, .training = s.training, .dropout = s.dropout, .generator = gen};
}

std::vector<BlockSpec> grad_specs() {
  std::vector<BlockSpec> v;
  for (int64_t L = 1; L <= 3; ++L) {
    std::vector<int64_t> dims = L == 1   ? std::vector<int64_t>{5}
                                : L == 2 ? std::vector<int64_t>{6, 3}
                                         : std::vector<int64_t>{5, 4, 3};
    for (int64_t E : {1, 3})
      for (int mode = 0; mode < 3; ++mode) {  // 0: BN train, 1: BN eval, 2: no BN
        BlockSpec s{.B = 5, .in = 4, .E = E, .dims = dims};
        s.bn = mode < 2;
        s.training = mode != 1;
        v.push_back(s);
      }
  }
  for (ops::Activation a :
       {ops::Activation::sigmoid, ops::Activation::tanh, ops::Activation::leaky_relu, ops::Activation::identity})
    v.push_back(BlockSpec{.B = 7, .in = 3, .E = 2, .dims = {4, 3}, .act = a});
  v.push_back(BlockSpec{.B = 2, .in = 3, .E = 2, .dims = {4}, .bias = false});
  v.push_back(BlockSpec{.B = 3, .in = 5, .E = 2, .dims = {4, 2}, .bias = false, .bn = false});
  return v;
}

TEST(ExpertsForward, GradientsMatchFiniteDifferencesF64) {
  for (const BlockSpec& s : grad_specs()) {
    SCOPED_TRACE(spec_name(s));
    Block b = make_block(s, DType::f64, 11);
    auto f = [&](const V& xs) { return ops::experts_forward(xs[0], layers_of(s, xs, b.running), options_of(s)); };
    EXPECT_TRUE(gradcheck(f, b.leaves, 1e-6, 1e-6));
  }
}

TEST(ExpertsForward, DropoutGradientsMatchFiniteDifferencesF64) {
  // The same mask every evaluation: reseed the generator before each call.
  BlockSpec s{.B = 6, .in = 3, .E = 2, .dims = {5, 4}, .act = ops::Activation::sigmoid, .dropout = 0.4};
  Block b = make_block(s, DType::f64, 5);
  Generator gen;
  auto f = [&](const V& xs) {
    gen.manual_seed(99);
    return ops::experts_forward(xs[0], layers_of(s, xs, b.running), options_of(s, &gen));
  };
  EXPECT_TRUE(gradcheck(f, b.leaves, 1e-6, 1e-6));
}

// Output, all gradients and running stats of the fused op against the unfused composition.
void expect_fused_matches_unfused(const BlockSpec& s, DType dt, double tol) {
  Block b1 = make_block(s, dt, 21), b2 = make_block(s, dt, 21);
  Generator g1(3), g2(3);
  Tensor y1 = ops::experts_forward(b1.leaves[0], layers_of(s, b1.leaves, b1.running), options_of(s, &g1));
  Tensor y2 = ops::experts_forward_unfused(b2.leaves[0], layers_of(s, b2.leaves, b2.running), options_of(s, &g2));
  ASSERT_EQ(y1.shape(), y2.shape());
  EXPECT_LE(max_rel_diff(y1, y2), tol) << "outputs";
  // Output weights of a batch-mean loss (1/B), so gradients are O(1) as in training.
  Generator wg(4);
  Tensor w = randn(y1.shape(), {.dtype = dt}, &wg) * (1.0 / static_cast<double>(s.B));
  auto g1s = grad({y1}, b1.leaves, {w});
  auto g2s = grad({y2}, b2.leaves, {w});
  for (size_t i = 0; i < g1s.size(); ++i) EXPECT_LE(max_rel_diff(g1s[i], g2s[i]), tol) << "gradient of leaf " << i;
  for (size_t i = 0; i < b1.running.size(); ++i)
    EXPECT_LE(max_rel_diff(b1.running[i], b2.running[i]), tol) << "running stat " << i;
}

std::vector<BlockSpec> parity_specs() {
  std::vector<BlockSpec> v = grad_specs();
  v.push_back(BlockSpec{.B = 33, .in = 19, .E = 4, .dims = {40, 17}, .dropout = 0.3});
  v.push_back(BlockSpec{.B = 129, .in = 24, .E = 8, .dims = {64, 32}});
  v.push_back(BlockSpec{.B = 129, .in = 24, .E = 8, .dims = {64, 32}, .training = false});
  return v;
}

TEST(ExpertsForward, FusedMatchesUnfusedF32) {
  for (const BlockSpec& s : parity_specs()) {
    SCOPED_TRACE(spec_name(s));
    expect_fused_matches_unfused(s, DType::f32, 1e-5);
  }
}

TEST(ExpertsForward, FusedMatchesUnfusedF64) {
  for (const BlockSpec& s : parity_specs()) {
    SCOPED_TRACE(spec_name(s));
    expect_fused_matches_unfused(s, DType::f64, 1e-10);
  }
}

TEST(ExpertsForward, RunningStatsFollowPyTorchMomentumRule) {
  // One expert, one layer, identity weights: the running stats after one step are
  // 0.9 * old + 0.1 * batch mean (of z + b) and 0.9 * old + 0.1 * unbiased batch variance.
  const int64_t B = 4;
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 10, -1, 0, 4, 2}, {B, 2});
  Tensor w = from_vector(std::vector<double>{1, 0, 0, 1}, {2, 2});
  Tensor bias = from_vector(std::vector<double>{0.5, -1}, {2});
  Tensor gamma = ones({2}, {.dtype = DType::f64}), beta = zeros({2}, {.dtype = DType::f64});
  Tensor rm = zeros({2}, {.dtype = DType::f64}), rv = ones({2}, {.dtype = DType::f64});
  ops::experts_forward(x, {{.weight = {w},
                            .bias = {bias},
                            .bn_weight = {gamma},
                            .bn_bias = {beta},
                            .running_mean = {rm},
                            .running_var = {rv}}});
  const double m0 = (1 + 3 - 1 + 4) / 4.0 + 0.5, m1 = (2 + 10 + 0 + 2) / 4.0 - 1;
  double v0 = 0, v1 = 0;
  for (double a : {1.0, 3.0, -1.0, 4.0}) v0 += (a + 0.5 - m0) * (a + 0.5 - m0) / 3;
  for (double a : {2.0, 10.0, 0.0, 2.0}) v1 += (a - 1 - m1) * (a - 1 - m1) / 3;
  auto rmv = rm.to_vector<double>(), rvv = rv.to_vector<double>();
  EXPECT_NEAR(rmv[0], 0.1 * m0, 1e-12);
  EXPECT_NEAR(rmv[1], 0.1 * m1, 1e-12);
  EXPECT_NEAR(rvv[0], 0.9 + 0.1 * v0, 1e-12);
  EXPECT_NEAR(rvv[1], 0.9 + 0.1 * v1, 1e-12);
}

TEST(ExpertsForward, AdjacentFirstLayerWeightsAreUsedInPlace) {
  // Weights carved out of one buffer (the zero-copy path) give the same result as separate ones.
  BlockSpec s{.B = 9, .in = 5, .E = 3, .dims = {4, 2}};
  Block b = make_block(s, DType::f64, 8);
  Tensor stacked = empty({3 * 4, 5}, {.dtype = DType::f64});
  V leaves = b.leaves;
  for (int64_t e = 0; e < 3; ++e) {
    Tensor view = make_view(stacked, e * 20, {4, 5});
    view.copy_(b.leaves[1 + e]);
    view.requires_grad_(true);
    leaves[1 + e] = view;
  }
  V running2;
  for (const Tensor& t : b.running) running2.push_back(t.clone());
  Tensor y1 = ops::experts_forward(b.leaves[0], layers_of(s, b.leaves, b.running));
  Tensor y2 = ops::experts_forward(leaves[0], layers_of(s, leaves, running2));
  EXPECT_LE(max_rel_diff(y1, y2), 1e-14);
  Tensor w = ones(y1.shape(), {.dtype = DType::f64});
  auto g1 = grad({y1}, {b.leaves[1], b.leaves[2]}, {w});
  auto g2 = grad({y2}, {leaves[1], leaves[2]}, {w});
  EXPECT_LE(max_rel_diff(g1[0], g2[0]), 1e-14);
  EXPECT_LE(max_rel_diff(g1[1], g2[1]), 1e-14);
}

TEST(ExpertsForward, InferenceReusesItsStackedWeightsUntilOneChanges) {
  // Eval mode without autograd in a ConstantWeightsScope keeps the stacked copy of separate expert
  // weights between calls;
  // any in-place change of a weight, bias or BatchNorm tensor (copy_, an optimizer step) must show
  // in the next call, as the unfused reference computes it, and a result already handed out must
  // not change.
  BlockSpec s{.B = 4, .in = 5, .E = 3, .dims = {4, 2}, .training = false};
  Block b = make_block(s, DType::f32, 21);
  NoGradGuard ng;
  const ops::ConstantWeightsScope constant;
  auto run = [&] { return ops::experts_forward(b.leaves[0], layers_of(s, b.leaves, b.running), options_of(s)); };
  auto reference = [&] {
    return ops::experts_forward_unfused(b.leaves[0], layers_of(s, b.leaves, b.running), options_of(s));
  };
  const Tensor y0 = run();
  const std::vector<float> y0_values = y0.to_vector<float>();
  EXPECT_LE(max_rel_diff(y0, reference()), 1e-5);
  EXPECT_EQ(run().to_vector<float>(), y0_values);  // a second call: the cached stack, the same bits
  // Change a first-layer weight, a second-layer weight, a bias and a running variance in place.
  for (size_t i : {size_t{2}, size_t{1 + 3 + 3 + 3 + 3 + 1}, size_t{1 + 3 + 1}}) {
    Tensor t = b.leaves[i];
    t.copy_(ops::mul(t, full(t.shape(), 1.5f)));
    EXPECT_LE(max_rel_diff(run(), reference()), 1e-5) << "leaf " << i << " changed in place";
  }
  Tensor rv = b.running[3];
  rv.copy_(ops::mul(rv, full(rv.shape(), 2.0f)));
  const Tensor y1 = run();
  EXPECT_LE(max_rel_diff(y1, reference()), 1e-5) << "running_var changed in place";
  EXPECT_NE(y1.to_vector<float>(), y0_values);
  EXPECT_EQ(y0.to_vector<float>(), y0_values) << "an earlier result changed";
}

TEST(ExpertsForward, InferenceConstantsGiveTheSameBitsAndARowAloneMatchesItsBatch) {
  // In a ConstantWeightsScope the expert layers multiply by weights kept transposed (read in place by
  // the GEMM; a single row takes its few-rows path) with BatchNorm folded once: every element is the
  // same sum in the same order as without the scope, and a row scored alone (one request) has the
  // bits it has in a batch. Eigen's GEMM (RECHUB_CPU=generic) blocks by the shape, so there the
  // results agree only within rounding.
  const bool exact = kernels::cpu::active_isa() != kernels::cpu::Isa::generic;
  for (bool bn : {true, false}) {
    // 8 experts of [40, 24] on 37 inputs: partial column panels in both layers, 296 columns in the first.
    BlockSpec s{.B = 37, .in = 37, .E = 8, .dims = {40, 24}, .bias = true, .bn = bn, .training = false};
    Block b = make_block(s, DType::f32, 5);
    NoGradGuard ng;
    auto run = [&](const Tensor& x) {
      return ops::experts_forward(x, layers_of(s, b.leaves, b.running), options_of(s)).to_vector<float>();
    };
    const std::vector<float> plain = run(b.leaves[0]);
    const ops::ConstantWeightsScope constant;
    const std::vector<float> kept = run(b.leaves[0]);
    const int64_t width = s.E * s.dims.back();
    ASSERT_EQ(kept.size(), static_cast<size_t>(s.B * width));
    for (size_t i = 0; i < kept.size(); ++i) {
      if (exact)
        ASSERT_EQ(kept[i], plain[i]) << "bn " << bn << " element " << i;
      else
        ASSERT_NEAR(kept[i], plain[i], 1e-5 * (1 + std::abs(plain[i])));
    }
    for (int64_t r : {0, 1, 17, 36})
      for (int64_t rows : {1, 3}) {
        if (r + rows > s.B) continue;
        const std::vector<float> part = run(ops::narrow(b.leaves[0].detach(), 0, r, rows));
        for (int64_t i = 0; i < rows * width; ++i) {
          const float want = plain[static_cast<size_t>(r * width + i)];
          if (exact)
            ASSERT_EQ(part[static_cast<size_t>(i)], want) << "bn " << bn << " rows " << r << ".." << r + rows;
          else
            ASSERT_NEAR(part[static_cast<size_t>(i)], want, 1e-5 * (1 + std::abs(want)));
        }
      }
  }
}

// ---- gate_mix ----

struct GateSpec {
  int64_t B = 5, in = 4, h = 3;
  std::vector<int64_t> groups = {2, 1};  // experts per block
  bool bias = true;
};

V make_gate(const GateSpec& s, DType dt, uint64_t seed) {
  Generator g(seed);
  int64_t E = 0;
  for (int64_t n : s.groups) E += n;
  V v;
  v.push_back(uniform({s.B, s.in}, -1, 1, {.dtype = dt, .requires_grad = true}, &g));
  v.push_back(uniform({E, s.in}, -1, 1, {.dtype = dt, .requires_grad = true}, &g));
  v.push_back(s.bias ? uniform({E}, -1, 1, {.dtype = dt, .requires_grad = true}, &g) : Tensor());
  for (int64_t n : s.groups) v.push_back(uniform({s.B, n * s.h}, -1, 1, {.dtype = dt, .requires_grad = true}, &g));
  return v;
}

std::vector<GateSpec> gate_specs() {
  return {{.B = 5, .in = 4, .h = 3, .groups = {2, 1}},
          {.B = 1, .in = 2, .h = 1, .groups = {1}},
          {.B = 7, .in = 3, .h = 5, .groups = {3}},
          {.B = 4, .in = 6, .h = 2, .groups = {1, 2, 2}, .bias = false},
          {.B = 33, .in = 17, .h = 19, .groups = {4, 4}}};
}

TEST(GateMix, GradientsMatchFiniteDifferencesF64) {
  for (const GateSpec& s : gate_specs()) {
    SCOPED_TRACE("B" + std::to_string(s.B) + " groups " + std::to_string(s.groups.size()));
    V v = make_gate(s, DType::f64, 13);
    V leaves;
    for (const Tensor& t : v)
      if (t.defined()) leaves.push_back(t);
    auto f = [&](const V& xs) {
      const size_t p = s.bias ? 3 : 2;
      V ex(xs.begin() + p, xs.end());
      return ops::gate_mix(xs[0], xs[1], s.bias ? xs[2] : Tensor(), ex, s.h).mixed;
    };
    EXPECT_TRUE(gradcheck(f, leaves, 1e-6, 1e-6));
  }
}

void expect_gate_fused_matches_unfused(const GateSpec& s, DType dt, double tol) {
  V a = make_gate(s, dt, 17), b = make_gate(s, dt, 17);
  V ea(a.begin() + 3, a.end()), eb(b.begin() + 3, b.end());
  auto r1 = ops::gate_mix(a[0], a[1], a[2], ea, s.h);
  auto r2 = ops::gate_mix_unfused(b[0], b[1], b[2], eb, s.h);
  EXPECT_LE(max_rel_diff(r1.mixed, r2.mixed), tol);
  EXPECT_LE(max_rel_diff(r1.gates, r2.gates), tol);
  // Gates are a softmax: rows sum to one.
  const auto gv = r1.gates.to_vector<double>();
  const int64_t E = r1.gates.size(1);
  for (int64_t r = 0; r < s.B; ++r) {
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += gv[r * E + e];
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
  V la, lb;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].defined()) {
      la.push_back(a[i]);
      lb.push_back(b[i]);
    }
  Generator wg(4);
  Tensor w = randn(r1.mixed.shape(), {.dtype = dt}, &wg);
  auto g1 = grad({r1.mixed}, la, {w});
  auto g2 = grad({r2.mixed}, lb, {w});
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_LE(max_rel_diff(g1[i], g2[i]), tol) << "gradient of input " << i;
}

TEST(GateMix, FusedMatchesUnfused) {
  for (const GateSpec& s : gate_specs()) {
    expect_gate_fused_matches_unfused(s, DType::f32, 1e-5);
    expect_gate_fused_matches_unfused(s, DType::f64, 1e-10);
  }
}

TEST(GateMix, ExpertGradientsAccumulateOverSeveralGates) {
  // Two gates over the same experts (MMoE with two tasks): the expert gradient is the sum.
  GateSpec s{.B = 6, .in = 3, .h = 4, .groups = {3}};
  V a = make_gate(s, DType::f64, 1), b = make_gate(s, DType::f64, 2);
  auto f = [&](const V& xs) {
    Tensor m1 = ops::gate_mix(xs[0], xs[1], xs[2], {xs[3]}, s.h).mixed;
    Tensor m2 = ops::gate_mix(xs[0], xs[4], xs[5], {xs[3]}, s.h).mixed;
    return ops::concat({m1, m2}, 1);
  };
  EXPECT_TRUE(gradcheck(f, {a[0], a[1], a[2], a[3], b[1], b[2]}, 1e-6, 1e-6));
}

// ---- errors ----

TEST(ExpertsForward, BadInputsGiveClearErrors) {
  BlockSpec s;
  Block b = make_block(s, DType::f32, 1);
  auto layers = layers_of(s, b.leaves, b.running);
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { ops::experts_forward(b.leaves[0], {}); }, "no layers");
  auto none = layers;
  for (auto& L : none) L = {};
  expect_error([&] { ops::experts_forward(b.leaves[0], none); }, "no experts");
  auto bad = layers;
  bad[1].weight[2] = randn({3, 7});
  expect_error([&] { ops::experts_forward(b.leaves[0], bad); }, "expert 2 in layer 1");
  Tensor x1 = randn({1, s.in});
  expect_error([&] { ops::experts_forward(x1, layers); }, "more than 1 sample");
  expect_error([&] { ops::experts_forward(randn({5, 9}), layers); }, "expected [out, 9]");
  ops::ExpertsOptions o;
  o.dropout = 1.0;
  expect_error([&] { ops::experts_forward(b.leaves[0], layers, o); }, "dropout");
  expect_error([] { ops::activation_from_name("dice", "MMoE.expert_activation"); }, "MMoE.expert_activation");
  expect_error([&] { ops::gate_mix(randn({5, 4}), randn({3, 4}), Tensor(), {randn({5, 4})}, 2); }, "3 experts but 2");
  expect_error([&] { ops::gate_mix(randn({5, 4}), randn({3, 5}), Tensor(), {randn({5, 6})}, 2); }, "gate weight");
}

}  // namespace
}  // namespace rechub
