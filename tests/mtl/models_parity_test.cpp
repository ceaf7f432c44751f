// Every model against its PyTorch reference (tests/reference/models_torch.py, written the way
// torch-rechub writes the models): the same weights and inputs give the same predictions, losses,
// gradients of every parameter and BatchNorm running statistics, within float32 tolerance, in
// train and eval mode, with and without dense features, for 1, 2 and 3 tasks; fused and unfused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/nn/safetensors.h"
#include "support/test_util.h"

namespace rechub::models {
namespace {
namespace fs = std::filesystem;

struct Case {
  std::string label;
  std::string kind;
  nlohmann::json config;  // the model's config (fused is chosen per run)
  bool training = true;
  bool dense = true;
  int64_t batch = 7;
};

Features test_features(bool dense) {
  Features f;
  f.sparse = {{.name = "u", .vocab_size = 7, .embed_dim = 4},
              {.name = "i", .vocab_size = 5, .embed_dim = 4},
              {.name = "c", .vocab_size = 4, .embed_dim = 4},
              {.name = "u2", .vocab_size = 0, .embed_dim = 4, .shared_with = "u"}};
  if (dense) f.dense = {{.name = "d0"}, {.name = "d1"}};
  return f;
}

std::vector<std::string> types(int n, bool with_regression) {
  std::vector<std::string> t(n, "binary");
  if (with_regression && n > 1) t[n - 1] = "regression";
  return t;
}

std::vector<Case> cases() {
  std::vector<Case> c;
  auto feats = [](bool dense) { return features_to_json(test_features(dense)); };
  // MMoE / OMoE
  for (const char* kind : {"mmoe", "omoe"}) {
    c.push_back({std::string(kind) + "_2tasks_train_dense",
                 kind,
                 {{"features", feats(true)},
                  {"expert_units", {6, 5}},
                  {"num_experts", 3},
                  {"task_types", types(2, false)},
                  {"tower_units", {4}}},
                 true,
                 true});
    c.push_back({std::string(kind) + "_1task_eval",
                 kind,
                 {{"features", feats(false)},
                  {"expert_units", {5}},
                  {"num_experts", 1},
                  {"task_types", types(1, false)},
                  {"tower_units", {3}}},
                 false,
                 false,
                 5});
    c.push_back({std::string(kind) + "_3tasks_train_regression",
                 kind,
                 {{"features", feats(false)},
                  {"expert_units", {6, 4, 3}},
                  {"num_experts", 2},
                  {"task_types", types(3, true)},
                  {"tower_units", {4, 3}},
                  {"expert_activation", "tanh"}},
                 true,
                 false});
  }
  // PLE
  c.push_back({"ple_2tasks_2levels_train_dense",
               "ple",
               {{"features", feats(true)},
                {"expert_units", {6, 5}},
                {"num_experts", 2},
                {"num_layers", 2},
                {"num_shared_experts", 2},
                {"task_types", types(2, false)},
                {"tower_units", {4}}},
               true,
               true});
  c.push_back({"ple_1task_1level_eval",
               "ple",
               {{"features", feats(false)},
                {"expert_units", {5}},
                {"num_experts", 1},
                {"num_layers", 1},
                {"num_shared_experts", 1},
                {"task_types", types(1, false)},
                {"tower_units", {3}}},
               false,
               false,
               5});
  c.push_back({"ple_3tasks_3levels_train_regression",
               "ple",
               {{"features", feats(true)},
                {"expert_units", {5, 4}},
                {"num_experts", 1},
                {"num_layers", 3},
                {"num_shared_experts", 2},
                {"task_types", types(3, true)},
                {"tower_units", {3}}},
               true,
               true});
  c.push_back({"ple_2tasks_2levels_eval",
               "ple",
               {{"features", feats(true)},
                {"expert_units", {6}},
                {"num_experts", 2},
                {"num_layers", 2},
                {"num_shared_experts", 1},
                {"task_types", types(2, false)},
                {"tower_units", {4}}},
               false,
               true});
  // SharedBottom
  c.push_back({"shared_bottom_2tasks_train_dense",
               "shared_bottom",
               {{"features", feats(true)},
                {"hidden_units", {6, 5}},
                {"task_hidden_units", {4}},
                {"task_types", types(2, false)}},
               true,
               true});
  c.push_back({"shared_bottom_1task_eval",
               "shared_bottom",
               {{"features", feats(false)},
                {"hidden_units", {5}},
                {"task_hidden_units", std::vector<int64_t>{}},
                {"task_types", types(1, false)}},
               false,
               false,
               5});
  c.push_back({"shared_bottom_3tasks_train_regression",
               "shared_bottom",
               {{"features", feats(false)},
                {"hidden_units", {6}},
                {"task_hidden_units", {4, 3}},
                {"task_types", types(3, true)},
                {"activation", "sigmoid"}},
               true,
               false});
  // ESMM (always 2 tasks: ctr, ctcvr)
  c.push_back({"esmm_train_dense", "esmm", {{"features", feats(true)}, {"tower_units", {6, 4}}}, true, true});
  c.push_back({"esmm_eval", "esmm", {{"features", feats(false)}, {"tower_units", {5}}}, false, false, 5});
  c.push_back({"esmm_bottom_train",
               "esmm",
               {{"features", feats(false)}, {"hidden_units", {6}}, {"tower_units", {4}}, {"embedding_dim", 3}},
               true,
               false});
  // AITM
  c.push_back({"aitm_2tasks_train_dense",
               "aitm",
               {{"features", feats(true)}, {"hidden_units", {6, 5}}, {"tower_units", {4}}, {"num_tasks", 2}},
               true,
               true});
  c.push_back({"aitm_3tasks_eval_calibrator",
               "aitm",
               {{"features", feats(false)},
                {"hidden_units", {5}},
                {"tower_units", {3}},
                {"num_tasks", 3},
                {"calibrator_weight", 0.6}},
               false,
               false,
               5});
  c.push_back({"aitm_3tasks_train_calibrator",
               "aitm",
               {{"features", feats(true)},
                {"hidden_units", {5}},
                {"tower_units", {3}},
                {"num_tasks", 3},
                {"calibrator_weight", 0.6}},
               true,
               true});
  c.push_back({"aitm_1task_train",
               "aitm",
               {{"features", feats(false)}, {"hidden_units", {5}}, {"tower_units", {3}}, {"num_tasks", 1}},
               true,
               false});
  return c;
}

// A model with every parameter and buffer drawn from `seed`: embeddings and BatchNorm parameters
// and statistics far from their defaults (which would hide errors), Linear layers as initialised.
std::shared_ptr<MultiTaskModel> build(const Case& c, bool fused) {
  nlohmann::json cfg = c.config;
  cfg["fused"] = fused;
  auto m = make_model(c.kind, cfg);
  std::set<std::string> bn;
  for (const auto& [name, b] : m->named_buffers())
    if (name.size() > 13 && name.substr(name.size() - 13) == ".running_mean")
      bn.insert(name.substr(0, name.size() - 13));
  Generator g(1234);
  NoGradGuard ng;
  auto prefix = [](const std::string& n) { return n.substr(0, n.rfind('.')); };
  for (auto& [name, p] : m->named_parameters()) {
    Tensor t = p;
    if (name.rfind("embedding.", 0) == 0)
      t.copy_(uniform(p.shape(), -0.6, 0.6, {}, &g));
    else if (bn.count(prefix(name)) && name.substr(name.rfind('.')) == ".weight")
      t.copy_(uniform(p.shape(), 0.5, 1.5, {}, &g));
    else if (bn.count(prefix(name)))
      t.copy_(uniform(p.shape(), -0.4, 0.4, {}, &g));
  }
  for (auto& [name, b] : m->named_buffers()) {
    Tensor t = b;
    if (name.find("running_mean") != std::string::npos) t.copy_(uniform(b.shape(), -0.3, 0.3, {}, &g));
    if (name.find("running_var") != std::string::npos) t.copy_(uniform(b.shape(), 0.5, 2.0, {}, &g));
  }
  if (c.training)
    m->train();
  else
    m->eval();
  return m;
}

struct Inputs {
  Tensor sparse, dense, labels;
};

Inputs make_inputs(const Case& c, const MultiTaskModel& m) {
  Generator g(77);
  Inputs in;
  const auto& f = m.features();
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < c.batch; ++b)
    for (const auto& s : f.sparse) {
      const int64_t vocab = s.shared_with.empty() ? s.vocab_size : 7;  // "u2" shares u's 7 rows
      ids.push_back(static_cast<int64_t>(g.randint(static_cast<uint64_t>(vocab))));
    }
  in.sparse = from_vector(ids, {c.batch, static_cast<int64_t>(f.sparse.size())});
  if (c.dense) in.dense = uniform({c.batch, 2}, 0, 1, {}, &g);
  std::vector<float> labels;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t t = 0; t < m.num_tasks(); ++t)
      labels.push_back(m.task_types()[t] == TaskType::binary ? static_cast<float>(g.bernoulli(0.4))
                                                             : static_cast<float>(g.normal()));
  in.labels = from_vector(labels, {c.batch, m.num_tasks()});
  return in;
}

bool torch_available(std::string& why) {
  const std::string py = RECHUB_PYTHON;
  if (py.empty() || !fs::exists(py)) {
    why = "no python interpreter at '" + py + "'";
    return false;
  }
  if (std::system((py + " -c 'import torch' > /dev/null 2>&1").c_str()) != 0) {
    why = py + " cannot import torch (apt-get install python3-torch)";
    return false;
  }
  return true;
}

// max |a - b| <= tol * (1 + max |b|): float32 error relative to the tensor's scale.
::testing::AssertionResult close(const Tensor& a, const Tensor& b, double tol) {
  // Scalars may come back as [] or [1].
  if (a.shape() != b.shape() && !(a.numel() == 1 && b.numel() == 1))
    return ::testing::AssertionFailure() << "shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  const auto av = a.to(DType::f64).to_vector<double>(), bv = b.to(DType::f64).to_vector<double>();
  double err = 0, scale = 0;
  size_t at = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    const double e = std::abs(av[i] - bv[i]);
    if (!(e <= err)) {
      err = e;
      at = i;
    }
    scale = std::max(scale, std::abs(bv[i]));
  }
  if (err <= tol * (1.0 + scale)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max error " << err << " at element " << at << " (" << av[at] << " vs "
                                       << bv[at] << "), scale " << scale;
}

TEST(ModelsParity, MatchPyTorchReferenceModels) {
  std::string why;
  if (!torch_available(why)) RECHUB_REFERENCE_MISSING("PyTorch parity cannot run: " << why, "python3-torch");
  char tmpl[] = "/tmp/rechub_models_parity_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path root(tmpl);
  const std::vector<Case> all = cases();
  std::string dirs;
  for (size_t i = 0; i < all.size(); ++i) {
    const Case& c = all[i];
    const fs::path d = root / c.label;
    fs::create_directories(d);
    auto m = build(c, true);
    Inputs in = make_inputs(c, *m);
    nlohmann::json cj = {{"kind", c.kind},
                         {"config", m->config_json()},
                         {"layout", m->embedding().layout_json()},
                         {"training", c.training}};
    std::ofstream(d / "case.json") << cj.dump(1);
    nn::NamedTensorList w = m->named_parameters();
    for (auto& nb : m->named_buffers()) w.push_back(nb);
    nn::write_safetensors((d / "weights.safetensors").string(), w);
    nn::NamedTensorList inputs{{"sparse", in.sparse}, {"labels", in.labels}};
    if (in.dense.defined()) inputs.push_back({"dense", in.dense});
    nn::write_safetensors((d / "inputs.safetensors").string(), inputs);
    dirs += " " + d.string();
  }
  const std::string script = std::string(RECHUB_SOURCE_DIR) + "/tests/reference/models_torch.py";
  const std::string cmd =
      std::string(RECHUB_PYTHON) + " " + script + dirs + " > " + (root / "log.txt").string() + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(root / "log.txt");
    FAIL() << "reference script failed: " << cmd << "\n" << std::string(std::istreambuf_iterator<char>(log), {});
  }
  const double tol = 2e-5;
  for (const Case& c : all) {
    std::map<std::string, Tensor> ref;
    for (auto& [n, t] : nn::read_safetensors((root / c.label / "results.safetensors").string())) ref[n] = t;
    for (bool fused : {true, false}) {
      SCOPED_TRACE(c.label + (fused ? " (fused)" : " (unfused)"));
      auto m = build(c, fused);
      Inputs in = make_inputs(c, *m);
      ModelOutput out = m->forward(in.sparse, in.dense);
      std::vector<Tensor> losses = m->loss(out, in.labels);
      Tensor total = losses[0];
      for (size_t t = 1; t < losses.size(); ++t) total = total + losses[t];
      auto named = m->named_parameters();
      std::vector<Tensor> params;
      for (auto& [n, p] : named) params.push_back(p);
      std::vector<Tensor> grads = grad({total}, params, {}, {.allow_unused = true});
      for (int64_t t = 0; t < m->num_tasks(); ++t) {
        EXPECT_TRUE(close(out.predictions[t], ref.at("pred." + std::to_string(t)), tol)) << "prediction " << t;
        EXPECT_TRUE(close(losses[t], ref.at("loss." + std::to_string(t)), tol)) << "loss " << t;
      }
      if (c.kind == "esmm") {
        EXPECT_TRUE(close(out.extras.at("cvr"), ref.at("cvr"), tol)) << "pCVR";
      }
      for (size_t i = 0; i < named.size(); ++i) {
        const std::string& n = named[i].first;
        ASSERT_TRUE(ref.count("grad." + n)) << "the reference has no gradient for " << n;
        Tensor g = grads[i].defined() ? grads[i].to_dense() : zeros(params[i].shape());
        EXPECT_TRUE(close(g, ref.at("grad." + n), tol)) << "gradient of " << n;
      }
      for (auto& [n, b] : m->named_buffers()) {
        ASSERT_TRUE(ref.count("buffer." + n)) << "the reference has no buffer " << n;
        EXPECT_TRUE(close(b, ref.at("buffer." + n), tol)) << "buffer " << n;
      }
    }
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace rechub::models
