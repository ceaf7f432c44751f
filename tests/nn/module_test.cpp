// Module tree: hierarchical names in registration order, names written onto the tensors, buffers,
// train/eval propagation, parameter counts, zero_grad and the registration errors.
#include "rechub/nn/module.h"

#include <gtest/gtest.h>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/linear.h"
#include "rechub/nn/mlp.h"

namespace rechub::nn {
namespace {

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> n;
  for (auto& [k, t] : v) n.push_back(k);
  return n;
}

struct Tower : Module {
  std::shared_ptr<Linear> layer0, layer1;
  Tower() {
    layer0 = register_module("layer0", std::make_shared<Linear>(4, 3));
    layer1 = register_module("layer1", std::make_shared<Linear>(3, 1, false));
  }
};

struct TwoTowers : Module {
  Tensor scale;
  std::shared_ptr<Module> towers;
  TwoTowers() {
    scale = register_parameter("scale", ones({1}));
    auto t = std::make_shared<Module>();
    t->register_module("0", std::make_shared<Tower>());
    t->register_module("1", std::make_shared<Tower>());
    towers = register_module("towers", t);
    register_module("bn", std::make_shared<BatchNorm1d>(3));
  }
};

TEST(Module, NamesAreHierarchicalInRegistrationOrder) {
  TwoTowers m;
  EXPECT_EQ(names_of(m.named_parameters()),
            (std::vector<std::string>{"scale", "towers.0.layer0.weight", "towers.0.layer0.bias",
                                      "towers.0.layer1.weight", "towers.1.layer0.weight", "towers.1.layer0.bias",
                                      "towers.1.layer1.weight", "bn.weight", "bn.bias"}));
  EXPECT_EQ(names_of(m.named_buffers()),
            (std::vector<std::string>{"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}));
  // Tensor names carry the full path even though the towers were built before being attached.
  for (auto& [n, t] : m.named_parameters()) EXPECT_EQ(t.name(), n);
  for (auto& [n, t] : m.named_buffers()) EXPECT_EQ(t.name(), n);
  EXPECT_EQ(m.parameter("towers.1.layer0.weight").shape(), (Shape{3, 4}));
  EXPECT_EQ(names_of(std::vector<std::pair<std::string, Tensor>>{}).size(), 0u);
  auto children = m.named_children();
  ASSERT_EQ(children.size(), 2u);
  EXPECT_EQ(children[0].first, "towers");
  EXPECT_EQ(children[1].first, "bn");
  EXPECT_EQ(m.named_modules().size(), 2u + 2u + 4u);
  EXPECT_EQ(children[0].second->named_children()[1].second->path(), "towers.1");
}

TEST(Module, ParameterCountAndSharedTensorsCountedOnce) {
  TwoTowers m;
  EXPECT_EQ(m.parameter_count(), 1 + 2 * (4 * 3 + 3 + 3) + 3 + 3);
  Module shared;
  Tensor w = ones({2, 2});
  shared.register_parameter("a", w);
  shared.register_parameter("b", shared.named_parameters()[0].second);
  EXPECT_EQ(shared.named_parameters().size(), 1u);
  EXPECT_EQ(shared.parameter_count(), 4);
}

TEST(Module, TrainEvalPropagatesToEveryDescendant) {
  TwoTowers m;
  EXPECT_TRUE(m.is_training());
  m.eval();
  EXPECT_FALSE(m.is_training());
  for (auto& [n, c] : m.named_modules()) EXPECT_FALSE(c->is_training()) << n;
  m.train();
  for (auto& [n, c] : m.named_modules()) EXPECT_TRUE(c->is_training()) << n;
}

TEST(Module, ParametersRequireGradAndZeroGradDropsGradients) {
  TwoTowers m;
  for (auto& t : m.parameters()) EXPECT_TRUE(t.requires_grad());
  for (auto& [n, t] : m.named_buffers()) EXPECT_FALSE(t.requires_grad());
  auto tower = std::dynamic_pointer_cast<Tower>(m.towers->named_children()[0].second);
  Tensor y = tower->layer1->forward(tower->layer0->forward(ones({2, 4})));
  backward(ops::sum(y));
  EXPECT_TRUE(tower->layer0->weight().grad().defined());
  m.zero_grad();
  for (auto& t : m.parameters()) EXPECT_FALSE(t.grad().defined());
}

TEST(Module, RegistrationErrors) {
  Module m;
  m.register_parameter("w", ones({2}));
  EXPECT_THROW(m.register_parameter("w", ones({2})), Error);
  EXPECT_THROW(m.register_buffer("w", ones({2})), Error);
  EXPECT_THROW(m.register_parameter("a.b", ones({2})), Error);
  EXPECT_THROW(m.register_parameter("", ones({2})), Error);
  EXPECT_THROW(m.register_parameter("ids", zeros({2}, {.dtype = DType::i64})), Error);
  EXPECT_THROW(m.register_module("w", std::make_shared<Module>()), Error);
  EXPECT_THROW(m.parameter("nope"), Error);
}

TEST(Module, WrongInputWidthNamesTheLayer) {
  TwoTowers m;
  auto tower = std::dynamic_pointer_cast<Tower>(m.towers->named_children()[1].second);
  try {
    tower->layer0->forward(ones({5, 7}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Linear 'towers.1.layer0'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expected input [N, 4], got [5, 7]"), std::string::npos) << msg;
  }
  MLP mlp({.input_dim = 6, .dims = {4}});
  try {
    mlp.forward(ones({3, 5}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected input [N, 6], got [3, 5]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rechub::nn
