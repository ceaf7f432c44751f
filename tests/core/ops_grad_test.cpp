// Every differentiable op against central finite differences in f64, on random inputs of
// several shapes, including sizes of 1 and sizes that are not multiples of the vector width.
#include <gtest/gtest.h>

#include "rechub/core/ops.h"
#include "support/gradcheck.h"

namespace rechub {
namespace {
using testing::gradcheck;
using testing::rand64;
using V = std::vector<Tensor>;

struct Case {
  std::string name;
  std::vector<Shape> shapes;
  testing::Fn f;
  double lo = -1.0, hi = 1.0;  // input range
};

std::vector<Case> cases() {
  std::vector<Case> c;
  const std::vector<std::pair<Shape, Shape>> bshapes = {{{3, 5}, {3, 5}}, {{3, 5}, {5}}, {{3, 5}, {3, 1}},
                                                        {{3, 5}, {}},     {{1}, {17}},   {{2, 3, 4}, {3, 1}},
                                                        {{1, 33}, {7, 1}}};
  for (auto& [a, b] : bshapes) {
    const std::string s = shape_str(a) + "x" + shape_str(b);
    c.push_back({"add" + s, {a, b}, [](const V& x) { return ops::add(x[0], x[1]); }});
    c.push_back({"sub" + s, {a, b}, [](const V& x) { return ops::sub(x[0], x[1]); }});
    c.push_back({"mul" + s, {a, b}, [](const V& x) { return ops::mul(x[0], x[1]); }});
    c.push_back({"div" + s, {a, b}, [](const V& x) { return ops::div(x[0], x[1]); }, 0.5, 2.0});
  }
  for (Shape s : {Shape{1}, Shape{17}, Shape{4, 33}}) {
    const std::string n = shape_str(s);
    c.push_back({"add_scalar" + n, {s}, [](const V& x) { return x[0] + 2.5; }});
    c.push_back({"mul_scalar" + n, {s}, [](const V& x) { return x[0] * -1.5; }});
    c.push_back({"rsub" + n, {s}, [](const V& x) { return 3.0 - x[0]; }});
    c.push_back({"rdiv" + n, {s}, [](const V& x) { return 3.0 / x[0]; }, 0.5, 2.0});
    c.push_back({"neg" + n, {s}, [](const V& x) { return ops::neg(x[0]); }});
    c.push_back({"exp" + n, {s}, [](const V& x) { return ops::exp(x[0]); }});
    c.push_back({"log" + n, {s}, [](const V& x) { return ops::log(x[0]); }, 0.2, 3.0});
    c.push_back({"sqrt" + n, {s}, [](const V& x) { return ops::sqrt(x[0]); }, 0.2, 3.0});
    c.push_back({"pow2.5" + n, {s}, [](const V& x) { return ops::pow(x[0], 2.5); }, 0.2, 3.0});
    c.push_back({"pow3" + n, {s}, [](const V& x) { return ops::pow(x[0], 3.0); }});
    c.push_back({"clamp" + n, {s}, [](const V& x) { return ops::clamp(x[0], -0.513, 0.497); }});
    c.push_back({"abs" + n, {s}, [](const V& x) { return ops::abs(x[0]); }});
    c.push_back({"relu" + n, {s}, [](const V& x) { return ops::relu(x[0]); }});
    c.push_back({"leaky_relu" + n, {s}, [](const V& x) { return ops::leaky_relu(x[0], 0.2); }});
    c.push_back({"sigmoid" + n, {s}, [](const V& x) { return ops::sigmoid(x[0]); }, -4.0, 4.0});
    c.push_back({"tanh" + n, {s}, [](const V& x) { return ops::tanh(x[0]); }, -2.0, 2.0});
    c.push_back({"sum" + n, {s}, [](const V& x) { return ops::sum(x[0]); }});
    c.push_back({"mean" + n, {s}, [](const V& x) { return ops::mean(x[0]); }});
    c.push_back({"max" + n, {s}, [](const V& x) { return ops::max(x[0]); }});
    c.push_back({"norm2" + n, {s}, [](const V& x) { return ops::norm(x[0], 2.0); }});
    c.push_back({"norm1" + n, {s}, [](const V& x) { return ops::norm(x[0], 1.0); }});
  }
  c.push_back({"prelu_scalar", {{5, 3}, {1}}, [](const V& x) { return ops::prelu(x[0], x[1]); }});
  c.push_back({"prelu_channel", {{5, 3}, {3}}, [](const V& x) { return ops::prelu(x[0], x[1]); }});
  c.push_back({"prelu_channel3d", {{2, 3, 4}, {3}}, [](const V& x) { return ops::prelu(x[0], x[1]); }});
  for (int64_t d : {0, 1, -1}) {
    const std::string n = std::to_string(d);
    c.push_back({"softmax" + n, {{4, 7}}, [d](const V& x) { return ops::softmax(x[0], d); }, -3, 3});
    c.push_back({"log_softmax" + n, {{4, 7}}, [d](const V& x) { return ops::log_softmax(x[0], d); }, -3, 3});
    c.push_back({"sum_dim" + n, {{4, 7}}, [d](const V& x) { return ops::sum(x[0], d); }});
    c.push_back({"sum_dim_keep" + n, {{4, 7}}, [d](const V& x) { return ops::sum(x[0], d, true); }});
    c.push_back({"mean_dim" + n, {{4, 7}}, [d](const V& x) { return ops::mean(x[0], d); }});
    c.push_back({"max_dim" + n, {{4, 7}}, [d](const V& x) { return ops::max(x[0], d); }});
  }
  c.push_back({"softmax3d_mid", {{2, 5, 3}}, [](const V& x) { return ops::softmax(x[0], 1); }, -3, 3});
  c.push_back({"softmax_1", {{3, 1}}, [](const V& x) { return ops::softmax(x[0], 1); }});
  c.push_back({"sum_dim3d", {{2, 5, 3}}, [](const V& x) { return ops::sum(x[0], 1); }});
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::string n = std::string(ta ? "T" : "N") + (tb ? "T" : "N");
      const int64_t M = 5, N = 3, K = 17;
      Shape sa = ta ? Shape{K, M} : Shape{M, K}, sb = tb ? Shape{N, K} : Shape{K, N};
      c.push_back({"matmul" + n, {sa, sb}, [ta, tb](const V& x) { return ops::matmul(x[0], x[1], ta, tb); }});
      Shape ba = {2, sa[0], sa[1]}, bb = {2, sb[0], sb[1]};
      c.push_back({"bmm" + n, {ba, bb}, [ta, tb](const V& x) { return ops::bmm(x[0], x[1], ta, tb); }});
    }
  c.push_back({"matmul_1x1", {{1, 1}, {1, 1}}, [](const V& x) { return ops::matmul(x[0], x[1]); }});
  c.push_back({"linear", {{6, 17}, {5, 17}, {5}}, [](const V& x) { return ops::linear(x[0], x[1], x[2]); }});
  c.push_back({"linear_nobias", {{1, 3}, {33, 3}}, [](const V& x) { return ops::linear(x[0], x[1]); }});
  c.push_back({"transpose", {{3, 5}}, [](const V& x) { return ops::transpose(x[0]); }});
  c.push_back({"reshape", {{3, 4}}, [](const V& x) {
                 return ops::reshape(x[0], {2, -1}) * ops::reshape(x[0], {2, 6});
               }});
  c.push_back(
      {"unsqueeze_squeeze", {{3, 4}}, [](const V& x) { return ops::squeeze(ops::unsqueeze(x[0], 1), 1) * 2.0; }});
  c.push_back({"concat0", {{2, 3}, {4, 3}}, [](const V& x) { return ops::concat({x[0], x[1]}, 0); }});
  c.push_back({"concat1", {{2, 3}, {2, 5}, {2, 1}}, [](const V& x) { return ops::concat({x[0], x[1], x[2]}, 1); }});
  c.push_back({"stack1", {{2, 3}, {2, 3}}, [](const V& x) { return ops::stack({x[0], x[1]}, 1); }});
  c.push_back({"split", {{7, 3}}, [](const V& x) {
                 auto p = ops::split(x[0], 3, 0);
                 return ops::concat({p[2] * 2.0, p[0], p[1] * 3.0}, 0);
               }});
  c.push_back({"narrow0", {{7, 3}}, [](const V& x) { return ops::narrow(x[0], 0, 2, 4); }});
  c.push_back({"narrow1", {{3, 7}}, [](const V& x) { return ops::narrow(x[0], 1, 2, 4); }});
  c.push_back({"slice", {{3, 7}}, [](const V& x) { return ops::slice(x[0], 1, 1, -1); }});
  c.push_back({"index_select", {{5, 3}}, [](const V& x) {
                 return ops::index_select(x[0], from_vector(std::vector<int64_t>{4, 0, 4, 2, 4}, {5}));
               }});
  c.push_back({"gather", {{4, 3}}, [](const V& x) {
                 return ops::gather(x[0], from_vector(std::vector<int64_t>{3, 0, 1, 3, 3, 2}, {2, 3}));
               }});
  c.push_back({"scatter_add", {{4, 3}, {5, 3}}, [](const V& x) {
                 return ops::scatter_add(x[0], from_vector(std::vector<int64_t>{1, 3, 1, 0, 1}, {5}), x[1]);
               }});
  c.push_back({"embedding_lookup", {{6, 4}}, [](const V& x) {
                 return ops::embedding_lookup(x[0], from_vector(std::vector<int64_t>{0, 5, 5, 2, 0, 0}, {3, 2}));
               }});
  c.push_back({"bce_with_logits", {{4, 3}}, [](const V& x) {
                 Tensor y = from_vector(std::vector<double>{1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1}, {4, 3});
                 return ops::bce_with_logits(x[0] * 4.0, y);
               }});
  c.push_back({"bce_with_logits_posweight", {{4, 3}, {3}}, [](const V& x) {
                 Tensor y = from_vector(std::vector<double>{1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1}, {4, 3});
                 return ops::bce_with_logits(x[0] * 4.0, y,
                                             {.weight = x[1], .pos_weight = 3.0, .reduction = ops::Reduction::sum});
               }});
  c.push_back({"binary_cross_entropy",
               {{5}},
               [](const V& x) {
                 Tensor y = from_vector(std::vector<double>{1, 0, 1, 0, 1}, {5});
                 return ops::binary_cross_entropy(x[0], y);
               },
               0.05,
               0.95});
  c.push_back({"mse_loss", {{3, 4}, {3, 4}}, [](const V& x) { return ops::mse_loss(x[0], x[1]); }});
  c.push_back({"diamond", {{3, 4}}, [](const V& x) {
                 Tensor h = ops::tanh(x[0]);
                 return ops::mul(ops::exp(h), ops::sigmoid(h)) + h;  // h used three times
               }});
  return c;
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class OpGrad : public ::testing::TestWithParam<Case> {};

TEST_P(OpGrad, MatchesFiniteDifferencesInF64) {
  const Case& c = GetParam();
  Generator g(1234);
  std::vector<Tensor> xs;
  for (const Shape& s : c.shapes) xs.push_back(rand64(s, g, c.lo, c.hi));
  EXPECT_TRUE(gradcheck(c.f, xs)) << c.name;
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpGrad, ::testing::ValuesIn(cases()), [](const auto& info) {
  std::string n = info.param.name;
  for (char& ch : n)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n + "_" + std::to_string(info.index);
});

}  // namespace
}  // namespace rechub
