// One table-driven parity test of every op of the CUDA backend, in the spirit of ggml's
// test-backend-ops: each case names an op, its parameters and awkward input sizes (1, 3, 127,
// 4097, ...). For each case fresh random f32 inputs are drawn and the op runs forward and
// backward (the gradient of sum_i <out_i, w_i> for random w_i) three times from the same values:
//   1. on the CPU in f64: the reference;
//   2. on the CPU in f32: checked against the reference (this runs on every machine);
//   3. on the GPU in f32, with every fresh device allocation poisoned with NaN so an element a
//      kernel forgets to write fails the comparison: checked against the reference.
// The GPU part is skipped with a visible "no CUDA device: ..." where there is none.
//
// Tolerance: an element passes when |x - ref| <= tol * (|ref| + rms(ref)), tol = 1e-5 for fp32
// (the rms term keeps results near zero by cancellation from failing on rounding alone).
// The TF32 test uses tol = 5e-3 (10-bit mantissa inputs).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/core/ops_nn.h"
#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"
#ifdef RECHUB_WITH_CUDA
#include <cuda_runtime.h>

#include "rechub/kernels/cuda/runtime.h"
#endif

namespace rechub {
namespace {

enum class Init { normal, positive, probability, binary };

struct InputSpec {
  Shape shape;
  Init init = Init::normal;
  bool requires_grad = true;
  float scale = 1.0f;  // normal inputs are drawn from N(0, scale^2)
};

// Integer index tensors of a case: fixed values drawn when the table is built.
struct IndexSpec {
  std::vector<int64_t> values;
  Shape shape;
  DType dtype = DType::i64;
};

struct Ctx {
  Device device;
  const std::vector<IndexSpec>* indices;
  Tensor index(size_t i) const {
    const IndexSpec& s = (*indices)[i];
    return from_vector(s.values, s.shape).to(s.dtype).to(device);
  }
};

using RunFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&, const Ctx&)>;

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  RunFn run;
  std::vector<IndexSpec> indices = {};
  double tol = 1e-5;
};

std::ostream& operator<<(std::ostream& os, const OpCase& c) { return os << c.name; }

IndexSpec random_index(std::mt19937_64& rng, int64_t n, int64_t hi, Shape shape, DType dt = DType::i64) {
  std::uniform_int_distribution<int64_t> d(0, hi - 1);
  IndexSpec s{{}, std::move(shape), dt};
  for (int64_t i = 0; i < n; ++i) s.values.push_back(d(rng));
  return s;
}

// ---- fused ops: experts_forward, gate_mix, batch_norm ----

// One expert block: inputs x, then per layer E weights, E biases, E gammas, E betas (parameters)
// and E running means, E running variances (buffers, no gradient). Outputs: the block's output
// and, with BatchNorm in training, every running statistic after the call (updated in place).
struct ExpertsCase {
  int64_t B, in, E;
  std::vector<int64_t> widths;
  bool bias, bn, training;
  ops::Activation act;
  double dropout = 0.0;
  bool unfused = false;   // experts_forward_unfused (basic ops) instead of the fused op
  bool adjacent = false;  // each layer's per-expert tensors are views of one stacked input
};

std::string experts_name(const ExpertsCase& e) {
  std::ostringstream os;
  os << (e.unfused ? "experts_unfused" : "experts") << "_B" << e.B << "_in" << e.in << "_E" << e.E << "_h";
  for (int64_t h : e.widths) os << h << "-";
  os << ops::activation_name(e.act) << (e.bias ? "_bias" : "") << (e.bn ? "_bn" : "")
     << (e.training ? "_train" : "_eval");
  if (e.dropout > 0) os << "_drop" << e.dropout;
  if (e.adjacent) os << "_adjacent";
  return os.str();
}

OpCase experts_case(const ExpertsCase& ec) {
  std::vector<InputSpec> in{{{ec.B, ec.in}}};
  int64_t hp = ec.in;
  for (int64_t h : ec.widths) {
    const float ws = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(hp, 1)));
    // Adjacent: one [E*h, hp] weight (and [E*h] vectors) whose row blocks are the experts' tensors.
    const int64_t copies = ec.adjacent ? 1 : ec.E, rows = ec.adjacent ? ec.E * h : h;
    for (int64_t e = 0; e < copies; ++e) in.push_back({{rows, hp}, Init::normal, true, ws});
    if (ec.bias)
      for (int64_t e = 0; e < copies; ++e) in.push_back({{rows}, Init::normal, true, 0.5f});
    if (ec.bn) {
      for (int64_t e = 0; e < copies; ++e) in.push_back({{rows}, Init::positive});
      for (int64_t e = 0; e < copies; ++e) in.push_back({{rows}});
      for (int64_t e = 0; e < copies; ++e) in.push_back({{rows}, Init::normal, false});
      for (int64_t e = 0; e < copies; ++e) in.push_back({{rows}, Init::positive, false});
    }
    hp = h;
  }
  RunFn run = [ec](const std::vector<Tensor>& x, const Ctx&) {
    std::vector<ops::ExpertLayerParams> layers;
    std::vector<Tensor> stats;
    size_t at = 1;
    // The E per-expert tensors of one kind: the next E inputs, or views of the next one.
    auto take = [&](int64_t h) {
      std::vector<Tensor> v;
      if (ec.adjacent) {
        const Tensor& all = x[at++];
        for (int64_t e = 0; e < ec.E; ++e) v.push_back(ops::narrow(all, 0, e * h, h));  // views
      } else {
        for (int64_t e = 0; e < ec.E; ++e) v.push_back(x[at++]);
      }
      return v;
    };
    for (int64_t h : ec.widths) {
      ops::ExpertLayerParams P;
      P.weight = take(h);
      if (ec.bias) P.bias = take(h);
      if (ec.bn) {
        P.bn_weight = take(h);
        P.bn_bias = take(h);
        const size_t stats_at = at;
        P.running_mean = take(h);
        P.running_var = take(h);
        if (ec.training)
          for (size_t i = stats_at; i < at; ++i) stats.push_back(x[i]);
      }
      layers.push_back(P);
    }
    Generator gen(4242);
    ops::ExpertsOptions o{.activation = ec.act, .training = ec.training, .dropout = ec.dropout, .generator = &gen};
    std::vector<Tensor> out{ec.unfused ? ops::experts_forward_unfused(x[0], layers, o)
                                       : ops::experts_forward(x[0], layers, o)};
    out.insert(out.end(), stats.begin(), stats.end());
    return out;
  };
  return {experts_name(ec), in, run};
}

// gate_mix with the expert outputs in blocks of `counts` experts of width h.
OpCase gate_case(int64_t B, int64_t in, int64_t h, const std::vector<int64_t>& counts, bool bias,
                 bool unfused = false) {
  int64_t E = 0;
  for (int64_t c : counts) E += c;
  std::vector<InputSpec> ins{{{B, in}}, {{E, in}, Init::normal, true, 0.5f}};
  if (bias) ins.push_back({{E}});
  for (int64_t c : counts) ins.push_back({{B, c * h}});
  std::ostringstream name;
  name << (unfused ? "gate_mix_unfused" : "gate_mix") << "_B" << B << "_in" << in << "_h" << h << "_blocks";
  for (int64_t c : counts) name << c << "-";
  name << (bias ? "bias" : "nobias");
  RunFn run = [h, bias, unfused, n = counts.size()](const std::vector<Tensor>& x, const Ctx&) {
    const size_t first = bias ? 3 : 2;
    std::vector<Tensor> ex(x.begin() + static_cast<std::ptrdiff_t>(first),
                           x.begin() + static_cast<std::ptrdiff_t>(first + n));
    const Tensor b = bias ? x[2] : Tensor();
    ops::GateMixOutput r = unfused ? ops::gate_mix_unfused(x[0], x[1], b, ex, h) : ops::gate_mix(x[0], x[1], b, ex, h);
    return std::vector<Tensor>{r.mixed, r.gates};
  };
  return {name.str(), ins, run};
}

// batch_norm of x [N, C] or [N, C, L]; outputs y and the running statistics after the call.
OpCase batchnorm_case(const Shape& xs, bool training, bool affine, bool running) {
  const int64_t C = xs[1];
  std::vector<InputSpec> ins{{xs}};
  if (affine) {
    ins.push_back({{C}, Init::positive});
    ins.push_back({{C}});
  }
  if (running) {
    ins.push_back({{C}, Init::normal, false});
    ins.push_back({{C}, Init::positive, false});
  }
  const std::string name = "batch_norm" + shape_str(xs) + (training ? "_train" : "_eval") + (affine ? "_affine" : "") +
                           (running ? "_running" : "");
  RunFn run = [training, affine, running](const std::vector<Tensor>& x, const Ctx&) {
    const Tensor w = affine ? x[1] : Tensor(), b = affine ? x[2] : Tensor();
    const size_t r = affine ? 3 : 1;
    const Tensor rm = running ? x[r] : Tensor(), rv = running ? x[r + 1] : Tensor();
    std::vector<Tensor> out{ops::batch_norm(x[0], w, b, rm, rv, training, 0.1, 1e-5)};
    if (running) {
      out.push_back(rm);
      out.push_back(rv);
    }
    return out;
  };
  return {name, ins, run};
}

void add_fused_cases(std::vector<OpCase>& cs) {
  using A = ops::Activation;
  const std::vector<ExpertsCase> experts = {
      // E = 1, one layer, the smallest shapes.
      {3, 5, 1, {3}, true, false, true, A::relu},
      {1, 3, 1, {17}, true, true, false, A::leaky_relu},  // batch of 1: eval only
      {1, 17, 3, {3, 1}, false, false, false, A::tanh},
      // BatchNorm in training with dropout, 2 and 3 layers.
      {127, 17, 3, {17, 3}, true, true, true, A::relu, 0.3},
      {4097, 17, 8, {17, 3, 1}, false, true, true, A::tanh},
      {4097, 5, 3, {17, 17, 3}, true, true, true, A::sigmoid, 0.2},
      {127, 17, 8, {17}, true, true, true, A::leaky_relu, 0.2},
      // eval BatchNorm (running statistics), with and without bias.
      {127, 3, 3, {3, 17}, true, true, false, A::sigmoid},
      {127, 17, 1, {3, 17}, false, true, false, A::tanh},
      {3, 3, 8, {3, 1}, true, false, false, A::sigmoid},
      // no BatchNorm, dropout, identity.
      {3, 1, 8, {1, 3}, false, false, true, A::identity, 0.5},
      {4097, 3, 3, {3, 3, 3}, true, false, true, A::identity, 0.1},
      // stacked (adjacent) parameters: the GEMM weights, vectors and running statistics are views.
      {127, 17, 3, {17, 3}, true, true, true, A::tanh, 0.1, false, true},
      {127, 5, 8, {3, 3}, true, true, false, A::relu, 0.0, false, true},
      // the unfused composition on the same footing (dropout masks drawn the same way). (A bias
      // before BatchNorm in training has a gradient of exactly 0, which the composition only
      // reaches up to rounding: no bias there.)
      {127, 5, 3, {3, 17}, false, true, true, A::sigmoid, 0.3, true},
      {127, 5, 3, {3, 17}, true, false, true, A::relu, 0.3, true},
      {127, 5, 3, {3, 17}, true, true, false, A::tanh, 0.0, true},
  };
  for (const ExpertsCase& e : experts) cs.push_back(experts_case(e));
  // Each activation, BatchNorm in training, dropout.
  for (A a : {A::identity, A::relu, A::leaky_relu, A::sigmoid, A::tanh}) {
    cs.push_back(experts_case({127, 17, 3, {17}, true, true, true, a, 0.1}));
    cs.push_back(experts_case({3, 3, 3, {1, 3}, true, false, true, a, 0.0}));
  }

  cs.push_back(gate_case(1, 3, 1, {1}, true));
  cs.push_back(gate_case(127, 17, 17, {3}, true));
  cs.push_back(gate_case(4097, 5, 3, {8}, false));
  cs.push_back(gate_case(127, 17, 17, {2, 1, 3}, true));  // PLE: task experts then shared ones
  cs.push_back(gate_case(3, 3, 1, {1, 1}, false));
  cs.push_back(gate_case(127, 3, 3, {1, 1, 1, 1, 1, 1, 2, 1}, true));     // as many blocks as the kernel takes
  cs.push_back(gate_case(127, 3, 3, {1, 1, 1, 1, 1, 1, 1, 1, 1}, true));  // more: concatenated first
  cs.push_back(gate_case(127, 17, 3, {2, 1}, true, true));

  for (bool training : {true, false})
    for (const Shape& s : std::vector<Shape>{{127, 3}, {3, 17}, {4097, 1}, {5, 3, 7}, {2, 17, 33}}) {
      cs.push_back(batchnorm_case(s, training, true, true));
      if (training) cs.push_back(batchnorm_case(s, training, false, false));
    }
  cs.push_back(batchnorm_case({127, 5, 1}, false, false, true));
}

std::vector<OpCase> make_cases() {
  std::mt19937_64 rng(1234);
  std::vector<OpCase> cs;
  auto one = [](Tensor t) { return std::vector<Tensor>{t}; };
  const std::vector<Shape> elem_shapes = {{1}, {4097}, {3, 127}};
  // ---- binary with broadcasting ----
  struct Bin {
    const char* name;
    Tensor (*f)(const Tensor&, const Tensor&);
  };
  for (Bin b : {Bin{"add", &ops::add}, Bin{"sub", &ops::sub}, Bin{"mul", &ops::mul}, Bin{"div", &ops::div}}) {
    const Init ib = std::string(b.name) == "div" ? Init::positive : Init::normal;
    for (auto [sa, sb] : std::vector<std::pair<Shape, Shape>>{{{4097}, {4097}},
                                                              {{1}, {1}},
                                                              {{127, 3}, {127, 3}},
                                                              {{127, 3}, {3}},
                                                              {{3, 1}, {1, 127}},
                                                              {{5, 4, 3}, {4, 1}},
                                                              {{127, 33}, {1}}}) {
      auto f = b.f;
      cs.push_back({std::string(b.name) + shape_str(sa) + shape_str(sb),
                    {{sa}, {sb, ib}},
                    [f, one](const std::vector<Tensor>& x, const Ctx&) { return one(f(x[0], x[1])); }});
    }
  }
  // ---- unary maps ----
  struct Un {
    const char* name;
    Init init;
    std::function<Tensor(const Tensor&)> f;
  };
  const std::vector<Un> unary = {
      {"neg", Init::normal, [](const Tensor& a) { return ops::neg(a); }},
      {"exp", Init::normal, [](const Tensor& a) { return ops::exp(a); }},
      {"log", Init::positive, [](const Tensor& a) { return ops::log(a); }},
      {"sqrt", Init::positive, [](const Tensor& a) { return ops::sqrt(a); }},
      {"abs", Init::normal, [](const Tensor& a) { return ops::abs(a); }},
      {"relu", Init::normal, [](const Tensor& a) { return ops::relu(a); }},
      {"sigmoid", Init::normal, [](const Tensor& a) { return ops::sigmoid(a); }},
      {"tanh", Init::normal, [](const Tensor& a) { return ops::tanh(a); }},
      {"add_scalar", Init::normal, [](const Tensor& a) { return ops::add(a, 0.3); }},
      {"mul_scalar", Init::normal, [](const Tensor& a) { return ops::mul(a, -1.7); }},
      {"rsub", Init::normal, [](const Tensor& a) { return ops::rsub(2.0, a); }},
      {"rdiv", Init::positive, [](const Tensor& a) { return ops::rdiv(3.0, a); }},
      {"pow", Init::positive, [](const Tensor& a) { return ops::pow(a, 2.5); }},
      {"clamp", Init::normal, [](const Tensor& a) { return ops::clamp(a, -0.5, 0.7); }},
      {"leaky_relu", Init::normal, [](const Tensor& a) { return ops::leaky_relu(a, 0.1); }},
  };
  for (const Un& u : unary)
    for (const Shape& s : elem_shapes) {
      auto f = u.f;
      cs.push_back({std::string(u.name) + shape_str(s),
                    {{s, u.init}},
                    [f, one](const std::vector<Tensor>& x, const Ctx&) { return one(f(x[0])); }});
    }
  cs.push_back({"prelu[5,3,7]", {{{5, 3, 7}}, {{3}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::prelu(x[0], x[1]));
                }});
  // ---- reductions ----
  for (const Shape& s : std::vector<Shape>{{1}, {4097}, {127, 3}}) {
    cs.push_back(
        {"sum" + shape_str(s), {{s}}, [one](const std::vector<Tensor>& x, const Ctx&) { return one(ops::sum(x[0])); }});
    cs.push_back({"mean" + shape_str(s), {{s}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::mean(x[0]));
                  }});
    cs.push_back(
        {"max" + shape_str(s), {{s}}, [one](const std::vector<Tensor>& x, const Ctx&) { return one(ops::max(x[0])); }});
    cs.push_back({"norm2" + shape_str(s), {{s}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::norm(x[0], 2));
                  }});
    cs.push_back({"norm1" + shape_str(s), {{s}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::norm(x[0], 1));
                  }});
  }
  for (const Shape& s : std::vector<Shape>{{127, 3, 5}, {1, 4097}, {33, 1}})
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d)
      for (bool keep : {false, true}) {
        const std::string tag = shape_str(s) + "_dim" + std::to_string(d) + (keep ? "_keep" : "");
        cs.push_back({"sum" + tag, {{s}}, [one, d, keep](const std::vector<Tensor>& x, const Ctx&) {
                        return one(ops::sum(x[0], d, keep));
                      }});
        cs.push_back({"mean" + tag, {{s}}, [one, d, keep](const std::vector<Tensor>& x, const Ctx&) {
                        return one(ops::mean(x[0], d, keep));
                      }});
        cs.push_back({"max" + tag, {{s}}, [d, keep](const std::vector<Tensor>& x, const Ctx&) {
                        return std::vector<Tensor>{ops::max(x[0], d, keep), ops::argmax(x[0], d)};
                      }});
      }
  // ---- softmax ----
  for (auto [s, d] : std::vector<std::pair<Shape, int64_t>>{
           {{127, 4097}, -1}, {{3, 127}, 0}, {{4, 5, 6}, 1}, {{1, 1}, -1}, {{4097, 3}, 1}}) {
    const std::string tag = shape_str(s) + "_dim" + std::to_string(d);
    cs.push_back({"softmax" + tag, {{s}}, [one, d](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::softmax(x[0], d));
                  }});
    cs.push_back({"log_softmax" + tag, {{s}}, [one, d](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::log_softmax(x[0], d));
                  }});
  }
  // ---- losses ----
  for (const Shape& s : std::vector<Shape>{{1}, {4097}, {127, 3}}) {
    cs.push_back({"bce_with_logits" + shape_str(s),
                  {{s}, {s, Init::binary, false}},
                  [one](const std::vector<Tensor>& x, const Ctx&) { return one(ops::bce_with_logits(x[0], x[1])); }});
    cs.push_back({"bce_with_logits_pw_weight_sum" + shape_str(s),
                  {{s}, {s, Init::binary, false}, {s, Init::positive, false}},
                  [one](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::bce_with_logits(
                        x[0], x[1], {.weight = x[2], .pos_weight = 2.5, .reduction = ops::Reduction::sum}));
                  }});
    cs.push_back({"bce_none" + shape_str(s),
                  {{s, Init::probability}, {s, Init::binary, false}},
                  [one](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::binary_cross_entropy(x[0], x[1], ops::Reduction::none));
                  }});
    cs.push_back({"mse" + shape_str(s),
                  {{s}, {s, Init::normal, false}},
                  [one](const std::vector<Tensor>& x, const Ctx&) { return one(ops::mse_loss(x[0], x[1])); }});
  }
  // ---- linear algebra ----
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 127, 5}, {65, 4097, 3}, {127, 33, 129}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Shape sa = ta ? Shape{k, m} : Shape{m, k}, sb = tb ? Shape{n, k} : Shape{k, n};
        cs.push_back(
            {"matmul" + shape_str({m, k, n}) + (ta ? "_ta" : "") + (tb ? "_tb" : ""),
             {{sa}, {sb}},
             [one, ta, tb](const std::vector<Tensor>& x, const Ctx&) { return one(ops::matmul(x[0], x[1], ta, tb)); }});
      }
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t e = 3, m = 17, k = 33, n = 9;
      const Shape sa = ta ? Shape{e, k, m} : Shape{e, m, k}, sb = tb ? Shape{e, n, k} : Shape{e, k, n};
      cs.push_back(
          {std::string("bmm[3,17,33,9]") + (ta ? "_ta" : "") + (tb ? "_tb" : ""),
           {{sa}, {sb}},
           [one, ta, tb](const std::vector<Tensor>& x, const Ctx&) { return one(ops::bmm(x[0], x[1], ta, tb)); }});
    }
  for (auto [n, in, out] : std::vector<std::array<int64_t, 3>>{{1, 3, 1}, {127, 64, 33}, {4097, 13, 7}}) {
    cs.push_back({"linear" + shape_str({n, in, out}),
                  {{{n, in}}, {{out, in}}, {{out}}},
                  [one](const std::vector<Tensor>& x, const Ctx&) { return one(ops::linear(x[0], x[1], x[2])); }});
    cs.push_back({"linear_nobias" + shape_str({n, in, out}),
                  {{{n, in}}, {{out, in}}},
                  [one](const std::vector<Tensor>& x, const Ctx&) { return one(ops::linear(x[0], x[1])); }});
  }
  for (const Shape& s : std::vector<Shape>{{1, 1}, {127, 3}, {33, 65}})
    cs.push_back({"transpose" + shape_str(s), {{s}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                    return one(ops::transpose(x[0]));
                  }});
  // ---- shapes and indexing ----
  cs.push_back({"concat_dim0", {{{3, 5}}, {{1, 5}}, {{127, 5}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::concat({x[0], x[1], x[2]}, 0));
                }});
  cs.push_back({"concat_dim1", {{{7, 3}}, {{7, 1}}, {{7, 127}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::concat({x[0], x[1], x[2]}, 1));
                }});
  cs.push_back({"stack_dim1", {{{7, 3}}, {{7, 3}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::stack({x[0], x[1]}, 1));
                }});
  cs.push_back(
      {"split_dim1", {{{9, 131}}}, [](const std::vector<Tensor>& x, const Ctx&) { return ops::split(x[0], 64, 1); }});
  cs.push_back({"narrow_dim0_view", {{{127, 3}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::narrow(x[0], 0, 5, 100));
                }});
  cs.push_back({"narrow_dim1", {{{5, 127, 3}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::narrow(x[0], 1, 1, 126));
                }});
  cs.push_back({"reshape_squeeze", {{{3, 1, 127}}}, [one](const std::vector<Tensor>& x, const Ctx&) {
                  return one(ops::unsqueeze(ops::reshape(ops::squeeze(x[0], 1), {127, 3}), 0));
                }});
  cs.push_back({"index_select_dups",
                {{{127, 5}}},
                [one](const std::vector<Tensor>& x, const Ctx& c) { return one(ops::index_select(x[0], c.index(0))); },
                {random_index(rng, 4097, 127, {4097})}});
  cs.push_back({"index_select_i32",
                {{{3, 1}}},
                [one](const std::vector<Tensor>& x, const Ctx& c) { return one(ops::index_select(x[0], c.index(0))); },
                {random_index(rng, 7, 3, {7}, DType::i32)}});
  cs.push_back({"gather",
                {{{17, 5}}},
                [one](const std::vector<Tensor>& x, const Ctx& c) { return one(ops::gather(x[0], c.index(0))); },
                {random_index(rng, 127 * 4, 17, {127, 4})}});
  cs.push_back(
      {"scatter_add_dups",
       {{{17, 3}}, {{4097, 3}}},
       [one](const std::vector<Tensor>& x, const Ctx& c) { return one(ops::scatter_add(x[0], c.index(0), x[1])); },
       {random_index(rng, 4097, 17, {4097})}});
  for (auto [b, f, d, v, dt] :
       std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, DType>>{{127, 3, 16, 50, DType::i64},
                                                                          {1, 1, 1, 1, DType::i32},
                                                                          {4097, 2, 3, 5000, DType::i32},
                                                                          {33, 26, 8, 7, DType::i64}})
    cs.push_back(
        {"embedding" + shape_str({b, f, d, v}) + dtype_name(dt),
         {{{v, d}}},
         [one](const std::vector<Tensor>& x, const Ctx& c) { return one(ops::embedding_lookup(x[0], c.index(0))); },
         {random_index(rng, b * f, v, {b, f}, dt)}});
  add_fused_cases(cs);
  return cs;
}

// ---- running one case ----

struct Result {
  std::vector<Tensor> outputs;  // on the CPU, f64
  std::vector<Tensor> grads;    // per input (undefined where none), dense, on the CPU, f64
};

std::vector<std::vector<float>> draw_inputs(const OpCase& c, std::mt19937_64& rng) {
  std::vector<std::vector<float>> v;
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uni(0.f, 1.f);
  for (const InputSpec& s : c.inputs) {
    std::vector<float> x(shape_numel(s.shape));
    for (float& e : x) switch (s.init) {
        case Init::normal:
          e = s.scale * normal(rng);
          break;
        case Init::positive:
          e = 0.5f + 1.5f * uni(rng);
          break;
        case Init::probability:
          e = 0.02f + 0.96f * uni(rng);
          break;
        case Init::binary:
          e = uni(rng) < 0.5f ? 0.f : 1.f;
          break;
      }
    v.push_back(std::move(x));
  }
  return v;
}

Result run_case(const OpCase& c, const std::vector<std::vector<float>>& vals,
                const std::vector<std::vector<float>>& wseed, DType dt, Device dev) {
  std::vector<Tensor> in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = from_vector(vals[i], c.inputs[i].shape).to(dt).to(dev);
    if (c.inputs[i].requires_grad) t.requires_grad_(true);
    in.push_back(t);
  }
  const Ctx ctx{dev, &c.indices};
  std::vector<Tensor> out = c.run(in, ctx);
  Result r;
  Tensor loss;
  for (size_t i = 0; i < out.size(); ++i) {
    r.outputs.push_back(out[i].detach().to(Device::cpu()).to(out[i].dtype() == DType::i64 ? DType::i64 : DType::f64));
    if (!is_floating(out[i].dtype()) || !out[i].requires_grad()) continue;
    // w_i: values from wseed, cycled to the output's size.
    std::vector<float> w(out[i].numel());
    for (size_t k = 0; k < w.size(); ++k) w[k] = wseed[i % wseed.size()][k % wseed[i % wseed.size()].size()];
    Tensor term = ops::sum(ops::mul(out[i], from_vector(w, out[i].shape()).to(dt).to(dev)));
    loss = loss.defined() ? ops::add(loss, term) : term;
  }
  std::vector<Tensor> wrt;
  for (const Tensor& t : in)
    if (t.requires_grad()) wrt.push_back(t);
  std::vector<Tensor> g;
  if (loss.defined() && !wrt.empty()) g = grad({loss}, wrt, {}, {.allow_unused = true});
  size_t k = 0;
  for (const Tensor& t : in) {
    if (!t.requires_grad()) {
      r.grads.emplace_back();
      continue;
    }
    Tensor gi = g.empty() ? Tensor() : g[k];
    ++k;
    r.grads.push_back(gi.defined() ? gi.to_dense().to(Device::cpu()).to(DType::f64) : Tensor());
  }
  return r;
}

// Empty when every element of `got` is within tolerance of `ref`, else a description of the worst one.
std::string compare(const Tensor& got, const Tensor& ref, double tol) {
  if (got.defined() != ref.defined()) return "one side has no tensor";
  if (!ref.defined()) return "";
  if (got.shape() != ref.shape()) return "shape " + shape_str(got.shape()) + " vs reference " + shape_str(ref.shape());
  const auto a = got.to_vector<double>(), b = ref.to_vector<double>();
  double ss = 0;
  for (double x : b) ss += x * x;
  const double rms = b.empty() ? 0 : std::sqrt(ss / static_cast<double>(b.size()));
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double bound = tol * (std::abs(b[i]) + rms) + 1e-30;
    const double r = std::isfinite(a[i]) ? std::abs(a[i] - b[i]) / bound : INFINITY;
    if (r > worst) worst = r, wi = i;
  }
  if (worst <= 1.0) return "";
  std::ostringstream os;
  os << "element " << wi << ": " << a[wi] << " vs reference " << b[wi] << " (error " << worst << "x the tolerance "
     << tol << ")";
  return os.str();
}

void expect_matches(const Result& got, const Result& ref, double tol, const std::string& what) {
  ASSERT_EQ(got.outputs.size(), ref.outputs.size());
  for (size_t i = 0; i < ref.outputs.size(); ++i) {
    const std::string e = compare(got.outputs[i], ref.outputs[i], ref.outputs[i].dtype() == DType::i64 ? 0.0 : tol);
    EXPECT_TRUE(e.empty()) << what << ": output " << i << ": " << e;
  }
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    const std::string e = compare(got.grads[i], ref.grads[i], tol);
    EXPECT_TRUE(e.empty()) << what << ": gradient of input " << i << ": " << e;
  }
}

// Why the GPU side cannot run here; empty when it can.
std::string no_gpu_reason() {
#ifdef RECHUB_WITH_CUDA
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
  if (n == 0) return "cudaGetDeviceCount returned 0";
  return "";
#else
  return "this build has no CUDA backend (RECHUB_CUDA=OFF or nvcc not found)";
#endif
}

class BackendOps : public ::testing::TestWithParam<OpCase> {};

TEST_P(BackendOps, CpuF32AndCudaMatchCpuF64) {
  const OpCase& c = GetParam();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  const auto vals = draw_inputs(c, rng);
  std::vector<std::vector<float>> wseed(2);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (auto& w : wseed) {
    w.resize(4099);
    for (float& e : w) e = normal(rng);
  }
  const Result ref = run_case(c, vals, wseed, DType::f64, Device::cpu());
  const Result cpu = run_case(c, vals, wseed, DType::f32, Device::cpu());
  expect_matches(cpu, ref, c.tol, "cpu f32");

  const std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why << " (the CPU f32 vs f64 side of '" << c.name << "' ran)";
#ifdef RECHUB_WITH_CUDA
  cuda::set_poison_allocations(true);
  const Result gpu = run_case(c, vals, wseed, DType::f32, Device::cuda(0));
  cuda::set_poison_allocations(false);
  expect_matches(gpu, ref, c.tol, "cuda f32");
#endif
}

INSTANTIATE_TEST_SUITE_P(AllOps, BackendOps, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& i) {
                           std::string n = std::to_string(i.index) + "_" + i.param.name;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// TF32 GEMMs (opt-in): looser tolerance 5e-3, stated above.
TEST(BackendOpsTf32, MatmulWithinTf32Tolerance) {
  const std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
#ifdef RECHUB_WITH_CUDA
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> a(257 * 513), b(513 * 129);
  for (float& e : a) e = normal(rng);
  for (float& e : b) e = normal(rng);
  const Tensor ref = ops::matmul(from_vector(a, {257, 513}).to(DType::f64), from_vector(b, {513, 129}).to(DType::f64));
  cuda::set_allow_tf32(true);
  const Tensor got = ops::matmul(from_vector(a, {257, 513}, {.device = Device::cuda()}),
                                 from_vector(b, {513, 129}, {.device = Device::cuda()}));
  cuda::set_allow_tf32(false);
  const std::string e = compare(got.to(Device::cpu()).to(DType::f64), ref, 5e-3);
  EXPECT_TRUE(e.empty()) << e;
#endif
}

}  // namespace
}  // namespace rechub
