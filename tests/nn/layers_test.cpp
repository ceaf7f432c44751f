// Layers without a PyTorch process: initialisation ranges, BatchNorm modes and errors, Dropout,
// activations by name, MLP structure and names, initialisers.
#include <gtest/gtest.h>

#include <cmath>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/nn/activation.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/dropout.h"
#include "rechub/nn/init.h"
#include "rechub/nn/linear.h"
#include "rechub/nn/mlp.h"
#include "support/test_util.h"

namespace rechub::nn {
namespace {

using testing::error_of;

TEST(Linear, DefaultInitIsUniformInPlusMinusOneOverSqrtFanIn) {
  Generator g(3);
  Linear l(50, 40, true, &g);
  const double bound = 1.0 / std::sqrt(50.0);
  for (const Tensor& t : {l.weight(), l.bias()}) {
    double lo = 1e9, hi = -1e9;
    for (float v : t.to_vector<float>()) lo = std::min<double>(lo, v), hi = std::max<double>(hi, v);
    EXPECT_GE(lo, -bound);
    EXPECT_LE(hi, bound);
    EXPECT_LT(lo, -0.8 * bound);  // spans the range
    EXPECT_GT(hi, 0.8 * bound);
  }
  EXPECT_EQ(l.weight().shape(), (Shape{40, 50}));
  Linear nb(3, 2, false);
  EXPECT_FALSE(nb.bias().defined());
  EXPECT_EQ(nb.named_parameters().size(), 1u);
  // Same generator seed, same weights.
  Generator g1(9), g2(9);
  EXPECT_EQ(Linear(4, 3, true, &g1).weight().to_vector<float>(), Linear(4, 3, true, &g2).weight().to_vector<float>());
}

TEST(Linear, ForwardIsXWTransposedPlusBias) {
  Linear l(3, 2);
  Tensor x = from_vector(std::vector<float>{1, 2, 3, -1, 0, 4}, {2, 3});
  const auto y = l.forward(x).to_vector<float>();
  const auto w = l.weight().to_vector<float>(), b = l.bias().to_vector<float>();
  const auto xv = x.to_vector<float>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      float ref = b[j];
      for (int k = 0; k < 3; ++k) ref += xv[i * 3 + k] * w[j * 3 + k];
      EXPECT_NEAR(y[i * 2 + j], ref, 1e-6);
    }
}

TEST(BatchNorm1d, TrainUpdatesRunningStatsEvalUsesThem) {
  BatchNorm1d bn(2, 1e-5, 0.5);
  Tensor x = from_vector(std::vector<float>{1, 10, 3, 20, 5, 30}, {3, 2});
  Tensor y = bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked(), 1);
  // mean (3, 20), biased var (8/3, 200/3), unbiased (4, 100)
  EXPECT_NEAR(bn.running_mean().to_vector<float>()[0], 1.5, 1e-6);
  EXPECT_NEAR(bn.running_mean().to_vector<float>()[1], 10.0, 1e-5);
  EXPECT_NEAR(bn.running_var().to_vector<float>()[0], 0.5 + 0.5 * 4.0, 1e-5);
  EXPECT_NEAR(bn.running_var().to_vector<float>()[1], 0.5 + 0.5 * 100.0, 1e-4);
  EXPECT_NEAR(y.to_vector<float>()[0], (1 - 3) / std::sqrt(8.0 / 3 + 1e-5), 1e-5);
  bn.eval();
  Tensor ye = bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked(), 1);
  EXPECT_NEAR(ye.to_vector<float>()[0], (1 - 1.5) / std::sqrt(2.5 + 1e-5), 1e-5);
  // A batch of one: an error in training (like PyTorch), fine in eval.
  EXPECT_NO_THROW(bn.forward(ones({1, 2})));
  bn.train();
  const std::string msg = error_of([&] { bn.forward(ones({1, 2})); });
  EXPECT_NE(msg.find("more than 1 value per channel"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { bn.forward(ones({4, 3})); }).find("expected input [N, 2]"), std::string::npos);
}

TEST(Dropout, IdentityInEvalInvertedScalingInTraining) {
  Dropout d(0.25, 42);
  Tensor x = ones({200, 50});
  const auto y = d.forward(x).to_vector<float>();
  int64_t zeros_n = 0;
  for (float v : y) {
    if (v == 0.0f)
      ++zeros_n;
    else
      EXPECT_FLOAT_EQ(v, 1.0f / 0.75f);
  }
  EXPECT_NEAR(static_cast<double>(zeros_n) / y.size(), 0.25, 0.02);
  d.eval();
  EXPECT_TRUE(d.forward(x).same(x));
  // Same seed, same mask.
  Dropout a(0.5, 7), b(0.5, 7);
  EXPECT_EQ(a.forward(x).to_vector<float>(), b.forward(x).to_vector<float>());
  EXPECT_THROW(Dropout(1.5), Error);
  // Gradient is the mask.
  Dropout c(0.5, 3);
  Tensor xr = ones({4, 4}, {.requires_grad = true});
  Tensor yc = c.forward(xr);
  backward(ops::sum(yc));
  EXPECT_EQ(xr.grad().to_vector<float>(), yc.to_vector<float>());
}

TEST(Activation, ByNameAndUnknownNameListsValidOnes) {
  Tensor x = from_vector(std::vector<float>{-2, -0.5f, 0.5f, 2}, {2, 2});
  EXPECT_EQ(make_activation("relu")->forward(x).to_vector<float>(), (std::vector<float>{0, 0, 0.5f, 2}));
  EXPECT_EQ(make_activation("ReLU")->type_name(), "ReLU");
  EXPECT_EQ(make_activation("identity")->forward(x).to_vector<float>(), x.to_vector<float>());
  EXPECT_NEAR(make_activation("sigmoid")->forward(x).to_vector<float>()[3], 1 / (1 + std::exp(-2.0)), 1e-6);
  EXPECT_NEAR(make_activation("leaky_relu")->forward(x).to_vector<float>()[0], -0.02, 1e-7);
  auto sm = make_activation("softmax")->forward(x).to_vector<float>();
  EXPECT_NEAR(sm[0] + sm[1], 1.0, 1e-6);
  auto prelu = make_activation("prelu");
  ASSERT_EQ(prelu->named_parameters().size(), 1u);
  EXPECT_EQ(prelu->named_parameters()[0].first, "weight");
  EXPECT_FLOAT_EQ(prelu->named_parameters()[0].second.to_vector<float>()[0], 0.25f);
  EXPECT_NEAR(prelu->forward(x).to_vector<float>()[0], -0.5, 1e-7);
  const std::string msg = error_of([] { make_activation("gelu2"); });
  EXPECT_NE(msg.find("unknown activation 'gelu2'"), std::string::npos) << msg;
  for (const char* n : {"relu", "sigmoid", "tanh", "prelu", "dice", "softmax", "leaky_relu", "identity"})
    EXPECT_NE(msg.find(n), std::string::npos) << n;
  EXPECT_THROW(make_activation("dice"), Error);  // needs the feature count
}

TEST(Dice, AlphaZeroGivesSigmoidGateAndRunningStatsMove) {
  Dice d(3);
  Generator g(5);
  Tensor x = randn({64, 3}, {}, &g);
  const auto y = d.forward(x).to_vector<float>();
  const auto xv = x.to_vector<float>();
  // alpha = 0: f(s) = s * sigmoid(normalised s), so f(s) has the sign of s and |f| <= |s|.
  for (size_t i = 0; i < y.size(); ++i) {
    EXPECT_LE(std::abs(y[i]), std::abs(xv[i]) + 1e-6);
    EXPECT_GE(y[i] * xv[i], 0.0f);
  }
  EXPECT_EQ(d.named_buffers().size(), 2u);
  EXPECT_NE(d.named_buffers()[0].second.to_vector<float>()[0], 0.0f);
  EXPECT_EQ(d.named_parameters()[0].first, "alpha");
}

TEST(MLP, TorchRechubLayoutAndNames) {
  MLP m({.input_dim = 5, .dims = {8, 4}, .activation = "prelu", .dropout = 0.1});
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias", "mlp.2.weight",
                                             "mlp.4.weight", "mlp.4.bias", "mlp.5.weight", "mlp.5.bias", "mlp.6.weight",
                                             "mlp.8.weight", "mlp.8.bias"}));
  EXPECT_EQ(m.named_buffers()[0].first, "mlp.1.running_mean");
  EXPECT_EQ(m.named_buffers()[2].first, "mlp.1.num_batches_tracked");
  EXPECT_EQ(m.parameter("mlp.8.weight").shape(), (Shape{1, 4}));
  EXPECT_EQ(m.output_dim(), 1);
  EXPECT_EQ(m.forward(ones({3, 5})).shape(), (Shape{3, 1}));
  MLP nobn({.input_dim = 5, .dims = {8}, .batch_norm = false, .output_layer = false});
  EXPECT_EQ(nobn.output_dim(), 8);
  EXPECT_EQ(nobn.named_parameters().size(), 2u);
  EXPECT_EQ(nobn.layers().size(), 3u);  // Linear, ReLU, Dropout
  EXPECT_THROW(MLP({.input_dim = 5, .dims = {8}, .activation = "nope"}), Error);
  EXPECT_THROW(MLP({.input_dim = 0, .dims = {8}}), Error);
}

TEST(Init, RangesAndMoments) {
  Generator g(1);
  Tensor w = empty({200, 300});
  init::xavier_uniform_(w, 1.0, &g);
  const double a = std::sqrt(6.0 / 500.0);
  double s2 = 0;
  for (float v : w.to_vector<float>()) {
    EXPECT_LE(std::abs(v), a);
    s2 += v * v;
  }
  EXPECT_NEAR(s2 / w.numel(), a * a / 3, 0.05 * a * a / 3);
  init::kaiming_normal_(w, 0.0, init::FanMode::fan_in, "relu", &g);
  s2 = 0;
  for (float v : w.to_vector<float>()) s2 += v * v;
  EXPECT_NEAR(s2 / w.numel(), 2.0 / 300, 0.05 * 2.0 / 300);
  init::xavier_normal_(w, 1.0, &g);
  init::kaiming_uniform_(w, 0.0, init::FanMode::fan_out, "relu", &g);
  for (float v : w.to_vector<float>()) EXPECT_LE(std::abs(v), std::sqrt(6.0 / 200));
  init::constant_(w, 0.5);
  EXPECT_EQ(w.to_vector<float>()[17], 0.5f);
  const uint64_t v0 = w.version();
  init::normal_(w, 1.0, 0.01, &g);
  EXPECT_GT(w.version(), v0);
  Tensor v1 = empty({3});
  EXPECT_THROW(init::xavier_uniform_(v1, 1.0), Error);
  EXPECT_THROW(init::calculate_gain("swish"), Error);
}

}  // namespace
}  // namespace rechub::nn
