// PyTorch parity: Linear, MLP (BatchNorm in train and eval, running statistics, PReLU and Dice),
// EmbeddingCollection with shared tables, several steps of SGD / Adam / AdamW / Adagrad (dense),
// lazy Adam against torch.optim.SparseAdam, sparse Adagrad and SGD against torch, embedding
// training in sparse and dense mode, and the LR schedules. All in float32, within 1e-5 relative.
//
// SetUpTestSuite computes every case in C++ and writes its inputs (weights, data, config) to
// <tmp>/<case>.in.safetensors; one run of tests/reference/nn_parity.py (Debian's python3 with
// torch) writes <case>.out.safetensors; each TEST compares one case. Without torch every test
// is skipped with the reason.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/linear.h"
#include "rechub/nn/lr_scheduler.h"
#include "rechub/nn/mlp.h"
#include "rechub/nn/optim.h"
#include "rechub/nn/safetensors.h"
#include "support/test_util.h"

namespace rechub::nn {
namespace {

namespace fs = std::filesystem;
using TensorMap = std::map<std::string, Tensor>;

Tensor randn_f32(const Shape& s, Generator& g, double scale = 1.0) { return ops::mul(randn(s, {}, &g), scale); }

class Parity : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite() {
    if (!dir_.empty() && !std::getenv("RECHUB_KEEP_PARITY_DIR")) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!skip_.empty()) RECHUB_REFERENCE_MISSING(skip_, "python3-torch python3-numpy");
  }

  // Every tensor of our result for `name` against the reference:
  //   |a - b| <= rtol |b| + atol max|b'|, b' over every reference tensor of the same kind in the
  //   case (same key prefix: "grad", "buffer", "after", ...).
  // The absolute part matters where the true value is 0: the bias of a Linear that feeds
  // BatchNorm has an exactly zero gradient and a normalised layer's output has zero mean (Dice's
  // running_mean), so both sides hold float32 rounding noise there, small against the kind's scale.
  static void compare(const std::string& name, double rtol = 1e-5, double atol = 1e-6) {
    const auto& ours = ours_.at(name);
    const auto ref_list = read_safetensors((fs::path(dir_) / (name + ".out.safetensors")).string());
    TensorMap ref(ref_list.begin(), ref_list.end());
    auto kind_of = [](const std::string& k) { return k.substr(0, k.find('.')); };
    std::map<std::string, double> kind_scale;
    for (const auto& [key, r] : ref)
      if (is_floating(r.dtype()))
        for (double v : r.to_vector<double>())
          kind_scale[kind_of(key)] = std::max(kind_scale[kind_of(key)], std::abs(v));
    size_t matched = 0;
    for (const auto& [key, r] : ref) {
      auto it = ours.find(key);
      if (it == ours.end()) {
        if (key.rfind("state.", 0) == 0) continue;  // torch keeps state we need not mirror
        ADD_FAILURE() << name << ": the reference has '" << key << "' but rechub produced nothing for it";
        continue;
      }
      ++matched;
      const Tensor& a = it->second;
      ASSERT_EQ(a.shape(), r.shape()) << name << " " << key;
      if (!is_floating(r.dtype())) {
        EXPECT_EQ(a.to_vector<int64_t>(), r.to_vector<int64_t>()) << name << " " << key;
        continue;
      }
      const auto av = a.to_vector<double>(), rv = r.to_vector<double>();
      const double scale = kind_scale[kind_of(key)];
      double worst = 0;
      size_t worst_i = 0;
      for (size_t i = 0; i < rv.size(); ++i) {
        const double excess = std::abs(av[i] - rv[i]) / (rtol * std::abs(rv[i]) + atol * scale + 1e-30);
        if (!(excess <= worst)) worst = excess, worst_i = i;
      }
      EXPECT_LE(worst, 1.0) << name << " " << key << ": element " << worst_i << " rechub " << av[worst_i]
                            << " vs torch " << rv[worst_i];
    }
    EXPECT_GT(matched, 0u) << name;
    for (const auto& [key, t] : ours)
      if (key.rfind("state.", 0) != 0) {
        EXPECT_TRUE(ref.count(key)) << name << ": torch produced no '" << key << "'";
      }
  }

  static void write_case(const std::string& name, const nlohmann::json& cfg, const TensorMap& inputs, TensorMap ours) {
    NamedTensorList list(inputs.begin(), inputs.end());
    write_safetensors((fs::path(dir_) / (name + ".in.safetensors")).string(), list, {{"case", cfg.dump()}});
    ours_[name] = std::move(ours);
  }

  static std::string dir_, skip_;
  static std::map<std::string, TensorMap> ours_;
};
std::string Parity::dir_, Parity::skip_;
std::map<std::string, TensorMap> Parity::ours_;

// ---- the cases -------------------------------------------------------------------------------------

void add_linear(TensorMap& in, TensorMap& ours) {
  Generator g(101);
  Linear lin(7, 5, true, &g);
  Tensor x = randn({6, 7}, {.requires_grad = true}, &g), gy = randn({6, 5}, {}, &g);
  Tensor y = lin.forward(x);
  backward(ops::sum(ops::mul(y, gy)));
  in = {{"weight", lin.weight().detach()}, {"bias", lin.bias().detach()}, {"x", x.detach()}, {"gy", gy}};
  ours = {{"y", y.detach()}, {"dx", x.grad()}, {"dweight", lin.weight().grad()}, {"dbias", lin.bias().grad()}};
}

struct MlpCase {
  std::string name;
  MLPOptions opts;
};
std::vector<MlpCase> mlp_cases() {
  return {{"mlp_relu_bn", {.input_dim = 8, .dims = {16, 8}}},
          {"mlp_prelu", {.input_dim = 6, .dims = {10}, .activation = "prelu"}},
          {"mlp_dice", {.input_dim = 6, .dims = {12, 5}, .activation = "dice"}},
          {"mlp_tanh_nobn",
           {.input_dim = 5, .dims = {7, 3}, .activation = "tanh", .batch_norm = false, .output_layer = false}}};
}

void add_mlp(const MlpCase& c, TensorMap& in, TensorMap& ours, nlohmann::json& cfg) {
  Generator g(202);
  MLPOptions o = c.opts;
  o.generator = &g;
  MLP m(o);
  // Random BN affine parameters and PReLU slopes, so they matter in the comparison.
  {
    NoGradGuard ng;
    for (auto& [n, p] : m.named_parameters())
      if (p.dim() == 1 && n.find(".bias") == std::string::npos) p.copy_(uniform(p.shape(), 0.5, 1.5, {}, &g));
  }
  for (auto& [n, p] : m.named_parameters()) in["model." + n] = p.detach().clone();
  for (auto& [n, b] : m.named_buffers()) in["model." + n] = b.clone();
  Tensor x1 = randn_f32({32, o.input_dim}, g, 2.0), x2 = randn_f32({32, o.input_dim}, g),
         x3 = randn_f32({32, o.input_dim}, g);
  Tensor gy = randn({32, m.output_dim()}, {}, &g);
  in["x1"] = x1, in["x2"] = x2, in["x3"] = x3, in["gy"] = gy;
  m.train();
  ours["y1"] = m.forward(x1).detach();
  Tensor y2 = m.forward(x2);
  backward(ops::sum(ops::mul(y2, gy)));
  ours["y2"] = y2.detach();
  for (auto& [n, p] : m.named_parameters()) ours["grad." + n] = p.grad();
  m.eval();
  ours["y3"] = m.forward(x3).detach();
  for (auto& [n, b] : m.named_buffers()) ours["buffer." + n] = b.clone();
  cfg = {{"kind", "mlp"},
         {"input_dim", o.input_dim},
         {"dims", o.dims},
         {"activation", o.activation},
         {"dropout", o.dropout},
         {"batch_norm", o.batch_norm},
         {"output_layer", o.output_layer}};
}

std::vector<EmbeddingSpec> emb_specs() {
  return {{"user", 13, 4, ""}, {"item", 9, 4, ""}, {"hist_item", 0, 0, "item"}, {"cat", 5, 3, ""}};
}
nlohmann::json specs_json(const std::vector<EmbeddingSpec>& specs) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& s : specs) j.push_back({{"name", s.name}, {"shared_with", s.shared_with}});
  return j;
}
Tensor random_ids(const EmbeddingCollection& e, int64_t B, Generator& g) {
  std::vector<int64_t> v;
  for (int64_t b = 0; b < B; ++b)
    for (const auto& s : e.specs()) {
      const auto rows = static_cast<uint64_t>(e.slot(s.name).rows);
      // Skewed: half the draws from the first three ids, so rows repeat within a batch.
      v.push_back(static_cast<int64_t>(g.bernoulli(0.5) ? g.randint(std::min<uint64_t>(3, rows)) : g.randint(rows)));
    }
  return from_vector(v, {B, e.num_features()});
}

void add_embedding(TensorMap& in, TensorMap& ours, nlohmann::json& cfg) {
  Generator g(303);
  EmbeddingCollection e(emb_specs(), {.init_std = 0.5, .seed = 4});
  for (const auto& s : e.specs())
    if (s.shared_with.empty()) in["table." + s.name] = e.table(s.name).clone();
  Tensor ids = random_ids(e, 6, g), gy = randn({6, e.output_dim()}, {}, &g);
  in["ids"] = ids, in["gy"] = gy;
  Tensor y = e.forward(ids);
  backward(ops::sum(ops::mul(y, gy)));
  ours["y"] = y.detach();
  for (size_t a = 0; a < e.arenas().size(); ++a) {
    Tensor dense = e.arenas()[a].grad().to_dense();
    for (const auto& s : e.specs()) {
      const auto& sl = e.slot(s.name);
      if (s.shared_with.empty() && sl.arena == static_cast<int64_t>(a))
        ours["grad." + s.name] = make_view(dense, sl.offset * sl.dim, {sl.rows, sl.dim}).clone();
    }
  }
  cfg = {{"kind", "embedding"}, {"specs", specs_json(e.specs())}};
}

struct OptimCase {
  std::string name, kind;  // kind as torch names it
  nlohmann::json options;
  double lr0, wd0, lr1, wd1;
  bool sparse;
};
std::vector<OptimCase> optim_cases() {
  const nlohmann::json sgd0 = {{"momentum", 0.0}, {"dampening", 0.0}, {"nesterov", false}};
  const nlohmann::json adam = {{"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}};
  const nlohmann::json ada = {{"lr_decay", 0.01}, {"initial_accumulator_value", 0.1}, {"eps", 1e-10}};
  return {
      {"sgd_plain", "sgd", sgd0, 0.1, 0.01, 0.05, 0.0, false},
      {"sgd_momentum",
       "sgd",
       {{"momentum", 0.9}, {"dampening", 0.1}, {"nesterov", false}},
       0.1,
       0.01,
       0.05,
       0.0,
       false},
      {"sgd_nesterov",
       "sgd",
       {{"momentum", 0.9}, {"dampening", 0.0}, {"nesterov", true}},
       0.1,
       0.001,
       0.2,
       0.01,
       false},
      {"adam", "adam", adam, 0.01, 0.01, 0.002, 0.0, false},
      {"adam_betas", "adam", {{"beta1", 0.8}, {"beta2", 0.99}, {"eps", 1e-6}}, 0.05, 0.0, 0.01, 0.1, false},
      {"adamw", "adamw", adam, 0.01, 0.1, 0.003, 0.01, false},
      {"adagrad", "adagrad", ada, 0.1, 0.01, 0.05, 0.0, false},
      {"sparse_adam", "sparse_adam", adam, 0.01, 0.0, 0.0, 0.0, true},
      {"sparse_adagrad", "adagrad", ada, 0.1, 0.0, 0.0, 0.0, true},
      {"sparse_sgd", "sgd", sgd0, 0.3, 0.0, 0.0, 0.0, true},
  };
}

std::unique_ptr<Optimizer> make_optimizer(const OptimCase& c, std::vector<ParamGroup> groups) {
  const auto& o = c.options;
  if (c.kind == "sgd")
    return std::make_unique<SGD>(
        groups, SGDOptions{.momentum = o["momentum"], .dampening = o["dampening"], .nesterov = o["nesterov"]});
  if (c.kind == "adagrad")
    return std::make_unique<Adagrad>(groups, AdagradOptions{.lr_decay = o["lr_decay"],
                                                            .initial_accumulator_value = o["initial_accumulator_value"],
                                                            .eps = o["eps"]});
  const AdamOptions ao{.beta1 = o["beta1"], .beta2 = o["beta2"], .eps = o["eps"]};
  if (c.kind == "adamw") return std::make_unique<AdamW>(groups, ao);
  return std::make_unique<Adam>(groups, ao);  // "adam", and "sparse_adam" (sparse gradients)
}

void add_optim(const OptimCase& c, TensorMap& in, TensorMap& ours, nlohmann::json& cfg) {
  Generator g(404);
  const int steps = 3;
  std::vector<ParamGroup> groups;
  std::vector<std::pair<std::string, Tensor>> params;
  if (c.sparse) {
    Tensor t = randn({20, 4}, {.requires_grad = true}, &g);
    t.set_name("table");
    params.emplace_back("table", t);
    groups.push_back({{t}, c.lr0, c.wd0, "emb"});
  } else {
    Tensor w = randn({4, 3}, {.requires_grad = true}, &g), b = randn({3}, {.requires_grad = true}, &g);
    w.set_name("w");
    b.set_name("b");
    params = {{"w", w}, {"b", b}};
    groups.push_back({{w}, c.lr0, c.wd0, "weights"});
    groups.push_back({{b}, c.lr1, c.wd1, "biases"});
  }
  for (auto& [n, p] : params) in["param." + n] = p.detach().clone();
  auto opt = make_optimizer(c, groups);
  for (int s = 0; s < steps; ++s) {
    for (auto& [n, p] : params) {
      const std::string k = std::to_string(s) + "." + n;
      if (c.sparse) {
        // 6 rows with repeats (uncoalesced), different rows each step.
        std::vector<int64_t> rows = {int64_t(s), 7, int64_t(3 + s), 7, 12, int64_t(3 + s)};
        Tensor idx = from_vector(rows, {6}), val = randn({6, 4}, {}, &g);
        in["gidx." + k] = idx, in["gval." + k] = val;
        p.set_grad(Tensor::sparse_rows(idx, val, p.shape()));
      } else if (s == 1 && n == "b") {
        p.zero_grad();  // no gradient this step: the parameter is skipped, as in torch
      } else {
        Tensor gr = randn(p.shape(), {}, &g);
        in["grad." + k] = gr;
        p.set_grad(gr);
      }
    }
    opt->step();
    for (auto& [n, p] : params) ours["after." + std::to_string(s) + "." + n] = p.detach().clone();
  }
  for (auto& [name, t] : opt->state_tensors())
    if (t.dim() > 0) ours["state." + name] = t;
  nlohmann::json jg = nlohmann::json::array();
  for (const auto& gr : groups) {
    nlohmann::json names = nlohmann::json::array();
    for (auto& p : gr.params) names.push_back(p.name());
    jg.push_back({{"lr", gr.lr}, {"weight_decay", gr.weight_decay}, {"params", names}});
  }
  cfg = {{"kind", "optim"}, {"optimizer", c.kind}, {"options", c.options},
         {"groups", jg},    {"steps", steps},      {"sparse", c.sparse}};
}

void add_emb_train(bool sparse, TensorMap& in, TensorMap& ours, nlohmann::json& cfg) {
  Generator g(505);
  const std::vector<EmbeddingSpec> specs = {{"u", 30, 4, ""}, {"i", 20, 4, ""}, {"h", 0, 0, "i"}};
  EmbeddingCollection e(specs, {.init_std = 0.1, .seed = 8, .sparse = sparse});
  for (const auto& s : specs)
    if (s.shared_with.empty()) in["table." + s.name] = e.table(s.name).clone();
  Adam opt({{e.parameters(), 0.05}});
  const int steps = 3;
  for (int s = 0; s < steps; ++s) {
    Tensor ids = random_ids(e, 8, g), gy = randn({8, e.output_dim()}, {}, &g);
    in["ids." + std::to_string(s)] = ids, in["gy." + std::to_string(s)] = gy;
    opt.zero_grad();
    backward(ops::sum(ops::mul(e.forward(ids), gy)));
    EXPECT_EQ(e.arenas()[0].grad().is_sparse(), sparse);
    opt.step();
    for (const auto& sp : specs)
      if (sp.shared_with.empty()) ours["after." + std::to_string(s) + "." + sp.name] = e.table(sp.name).clone();
  }
  cfg = {{"kind", "emb_train"}, {"specs", specs_json(specs)}, {"sparse", sparse}, {"lr", 0.05}, {"steps", steps}};
}

void add_sched(TensorMap& ours, nlohmann::json& cfg) {
  const int steps = 14;
  struct S {
    nlohmann::json j;
    std::shared_ptr<const LRSchedule> s;
  };
  const std::vector<S> all = {
      {{{"kind", "step"}, {"base", 0.1}, {"step_size", 3}, {"gamma", 0.5}}, std::make_shared<StepSchedule>(3, 0.5)},
      {{{"kind", "exp"}, {"base", 0.2}, {"gamma", 0.9}}, std::make_shared<ExponentialSchedule>(0.9)},
      {{{"kind", "cosine"}, {"base", 0.1}, {"t_max", 13}, {"eta_min", 0.001}},
       std::make_shared<CosineSchedule>(13, 0.001)},
      {{{"kind", "linear"}, {"base", 0.1}, {"start", 0.25}, {"end", 1.0}, {"total", 5}},
       std::make_shared<LinearSchedule>(0.25, 1.0, 5)},
      {{{"kind", "warmup_cosine"}, {"base", 0.1}, {"start", 0.1}, {"warmup", 4}, {"total", 14}, {"eta_min", 0.0}},
       warmup_cosine(4, 14, 0.1, 0.0)},
  };
  cfg = {{"kind", "sched"}, {"schedules", nlohmann::json::array()}};
  for (size_t i = 0; i < all.size(); ++i) {
    Tensor p = zeros({1}, {.requires_grad = true});
    SGD opt({{{p}, all[i].j["base"].get<double>()}});
    LRScheduler sched(opt, all[i].s);
    std::vector<double> lrs;
    for (int s = 0; s < steps; ++s) {
      lrs.push_back(opt.lr(0));
      sched.step();
    }
    ours["lrs." + std::to_string(i)] = from_vector(lrs, {steps});
    auto j = all[i].j;
    j["steps"] = steps;
    cfg["schedules"].push_back(j);
  }
}

void Parity::SetUpTestSuite() {
  const std::string py = RECHUB_PYTHON;
  if (py.empty() || !fs::exists(py)) {
    skip_ = "no Debian python3 (RECHUB_PYTHON='" + py + "') to run the PyTorch reference";
    return;
  }
  if (std::system((py + " -c 'import torch, numpy' > /dev/null 2>&1").c_str()) != 0) {
    skip_ = py + " has no torch/numpy: the PyTorch parity cannot run";
    return;
  }
  dir_ = (fs::temp_directory_path() / ("rechub_nn_parity_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir_);
  {
    TensorMap in, ours;
    add_linear(in, ours);
    write_case("linear", {{"kind", "linear"}}, in, ours);
  }
  for (const auto& c : mlp_cases()) {
    TensorMap in, ours;
    nlohmann::json cfg;
    add_mlp(c, in, ours, cfg);
    write_case(c.name, cfg, in, ours);
  }
  {
    TensorMap in, ours;
    nlohmann::json cfg;
    add_embedding(in, ours, cfg);
    write_case("embedding", cfg, in, ours);
  }
  for (const auto& c : optim_cases()) {
    TensorMap in, ours;
    nlohmann::json cfg;
    add_optim(c, in, ours, cfg);
    write_case(c.name, cfg, in, ours);
  }
  for (bool sparse : {true, false}) {
    TensorMap in, ours;
    nlohmann::json cfg;
    add_emb_train(sparse, in, ours, cfg);
    write_case(sparse ? "emb_train_sparse" : "emb_train_dense", cfg, in, ours);
  }
  {
    TensorMap ours;
    nlohmann::json cfg;
    add_sched(ours, cfg);
    write_case("sched", cfg, {{"unused", zeros({1})}}, ours);
  }
  const std::string script = std::string(RECHUB_SOURCE_DIR) + "/tests/reference/nn_parity.py";
  const std::string cmd = py + " " + script + " " + dir_ + " > " + dir_ + "/python.log 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(dir_ + "/python.log");
    std::stringstream ss;
    ss << log.rdbuf();
    skip_.clear();
    ADD_FAILURE() << "the PyTorch reference failed: " << cmd << "\n" << ss.str();
    ours_.clear();
  }
}

TEST_F(Parity, Linear) { compare("linear"); }
TEST_F(Parity, MlpReluBatchNormTrainAndEval) { compare("mlp_relu_bn"); }
TEST_F(Parity, MlpPReLU) { compare("mlp_prelu"); }
TEST_F(Parity, MlpDice) { compare("mlp_dice"); }
TEST_F(Parity, MlpTanhWithoutBatchNorm) { compare("mlp_tanh_nobn"); }
TEST_F(Parity, EmbeddingCollectionWithSharedTable) { compare("embedding"); }
TEST_F(Parity, SgdPlainWithWeightDecay) { compare("sgd_plain"); }
TEST_F(Parity, SgdMomentumDampening) { compare("sgd_momentum"); }
TEST_F(Parity, SgdNesterov) { compare("sgd_nesterov"); }
TEST_F(Parity, Adam) { compare("adam"); }
TEST_F(Parity, AdamCustomBetas) { compare("adam_betas"); }
TEST_F(Parity, AdamW) { compare("adamw"); }
TEST_F(Parity, Adagrad) { compare("adagrad"); }
TEST_F(Parity, LazyAdamMatchesSparseAdam) { compare("sparse_adam"); }
TEST_F(Parity, SparseAdagrad) { compare("sparse_adagrad"); }
TEST_F(Parity, SparseSgd) { compare("sparse_sgd"); }
TEST_F(Parity, EmbeddingTrainingSparseModeMatchesSparseAdam) { compare("emb_train_sparse"); }
TEST_F(Parity, EmbeddingTrainingDenseModeMatchesEmbeddingPlusAdam) { compare("emb_train_dense"); }
TEST_F(Parity, LearningRateSchedules) { compare("sched", 1e-9, 1e-12); }

}  // namespace
}  // namespace rechub::nn
