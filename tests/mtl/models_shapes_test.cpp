// Model shapes, the fused vs unfused paths, configs (JSON round trip, make_model), the
// shared/task parameter split, and clear errors for bad configurations.
#include <gtest/gtest.h>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "support/gradcheck.h"

namespace rechub::models {
namespace {

Features small_features(bool dense = true) {
  Features f;
  f.sparse = {{.name = "a", .vocab_size = 11, .embed_dim = 4}, {.name = "b", .vocab_size = 3, .embed_dim = 4}};
  if (dense) f.dense = {{.name = "x"}};
  return f;
}

struct Inputs {
  Tensor sparse, dense, labels;
};

Inputs inputs(int64_t B, int64_t T, bool dense = true, uint64_t seed = 3) {
  Generator g(seed);
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < B; ++b) {
    ids.push_back(static_cast<int64_t>(g.randint(11)));
    ids.push_back(static_cast<int64_t>(g.randint(3)));
  }
  Inputs in;
  in.sparse = from_vector(ids, {B, 2});
  if (dense) in.dense = uniform({B, 1}, 0, 1, {}, &g);
  in.labels = bernoulli({B, T}, 0.5, {}, &g);
  return in;
}

// Every kind with small dims and the given task count (ESMM always has 2).
std::vector<std::pair<std::string, nlohmann::json>> small_models(int64_t T, bool dense = true) {
  const nlohmann::json f = features_to_json(small_features(dense));
  return {
      {"mmoe", {{"features", f}, {"expert_units", {8, 6}}, {"num_experts", 3}, {"num_tasks", T}, {"tower_units", {4}}}},
      {"omoe", {{"features", f}, {"expert_units", {8}}, {"num_experts", 2}, {"num_tasks", T}, {"tower_units", {4}}}},
      {"ple",
       {{"features", f},
        {"expert_units", {8, 6}},
        {"num_experts", 2},
        {"num_layers", 2},
        {"num_shared_experts", 1},
        {"num_tasks", T},
        {"tower_units", {4}}}},
      {"shared_bottom", {{"features", f}, {"hidden_units", {8}}, {"task_hidden_units", {4}}, {"num_tasks", T}}},
      {"aitm", {{"features", f}, {"hidden_units", {8}}, {"tower_units", {4}}, {"num_tasks", T}}},
      {"esmm", {{"features", f}, {"tower_units", {8, 4}}}},
  };
}

TEST(Models, OutputShapesForOddBatchesAndTaskCounts) {
  for (int64_t T : {1, 2, 3})
    for (int64_t B : {2, 5, 33})
      for (auto& [kind, cfg] : small_models(T)) {
        SCOPED_TRACE(kind + " T=" + std::to_string(T) + " B=" + std::to_string(B));
        auto m = make_model(kind, cfg);
        const int64_t nt = kind == "esmm" ? 2 : T;
        ASSERT_EQ(m->num_tasks(), nt);
        Inputs in = inputs(B, nt);
        for (bool training : {true, false}) {
          m->train(training);
          ModelOutput out = m->forward(in.sparse, in.dense);
          ASSERT_EQ(static_cast<int64_t>(out.predictions.size()), nt);
          for (int64_t t = 0; t < nt; ++t) EXPECT_EQ(out.predictions[t].shape(), (Shape{B, 1}));
          EXPECT_EQ(out.prediction_matrix().shape(), (Shape{B, nt}));
          auto losses = m->loss(out, in.labels);
          ASSERT_EQ(static_cast<int64_t>(losses.size()), nt);
          for (const Tensor& l : losses) EXPECT_TRUE(std::isfinite(l.item()));
        }
      }
}

TEST(Models, BatchOfOneWorksInEvalAndIsRefusedInTraining) {
  auto m = make_model("mmoe", small_models(2)[0].second);
  Inputs in = inputs(1, 2);
  m->eval();
  EXPECT_EQ(m->forward(in.sparse, in.dense).predictions[0].shape(), (Shape{1, 1}));
  m->train();
  EXPECT_THROW(m->forward(in.sparse, in.dense), Error);
}

TEST(Models, OneExpertAndPleLevelsOneToThree) {
  const nlohmann::json f = features_to_json(small_features());
  for (int64_t L : {1, 2, 3}) {
    auto m = make_model("ple", {{"features", f},
                                {"expert_units", {6}},
                                {"num_experts", 1},
                                {"num_layers", L},
                                {"num_shared_experts", 1},
                                {"num_tasks", 2},
                                {"tower_units", {3}}});
    Inputs in = inputs(7, 2);
    ModelOutput out = m->forward(in.sparse, in.dense);
    EXPECT_EQ(out.predictions[1].shape(), (Shape{7, 1}));
    // Gates: two task gates per level, a shared gate at every level but the last.
    int64_t shared_gates = 0;
    for (auto& [k, v] : out.extras) shared_gates += k.find(".shared") != std::string::npos;
    EXPECT_EQ(shared_gates, L - 1);
    EXPECT_EQ(static_cast<int64_t>(out.extras.size()), 2 * L + L - 1);
  }
  auto m = make_model("mmoe", {{"features", f}, {"expert_units", {6}}, {"num_experts", 1}, {"num_tasks", 2}});
  Inputs in = inputs(5, 2);
  ModelOutput out = m->forward(in.sparse, in.dense);
  // One expert: the gate's softmax weight is exactly 1.
  for (double g : out.extras.at("gate.task0").to_vector<float>()) EXPECT_FLOAT_EQ(g, 1.0);
}

TEST(Models, FusedAndUnfusedGiveTheSameOutputsAndGradients) {
  for (auto& [kind, cfg] : small_models(2)) {
    for (bool training : {true, false}) {
      SCOPED_TRACE(kind + (training ? " train" : " eval"));
      nlohmann::json c1 = cfg, c2 = cfg;
      c1["fused"] = true;
      c2["fused"] = false;
      c1["dropout"] = c2["dropout"] = kind == "esmm" ? 0.0 : 0.25;  // the same masks in both paths
      auto m1 = make_model(kind, c1), m2 = make_model(kind, c2);
      EXPECT_TRUE(m1->fused());
      EXPECT_FALSE(m2->fused());
      m1->train(training);
      m2->train(training);
      Inputs in = inputs(9, 2);
      ModelOutput o1 = m1->forward(in.sparse, in.dense), o2 = m2->forward(in.sparse, in.dense);
      auto l1 = m1->loss(o1, in.labels), l2 = m2->loss(o2, in.labels);
      for (int t = 0; t < 2; ++t) {
        EXPECT_LE(testing::max_rel_diff(o1.predictions[t], o2.predictions[t]), 1e-5);
        EXPECT_LE(testing::max_rel_diff(l1[t], l2[t]), 1e-5);
      }
      std::vector<Tensor> p1 = m1->parameters(), p2 = m2->parameters();
      auto g1 = grad({l1[0] + l1[1]}, p1, {}, {.allow_unused = true});
      auto g2 = grad({l2[0] + l2[1]}, p2, {}, {.allow_unused = true});
      for (size_t i = 0; i < p1.size(); ++i) {
        ASSERT_EQ(g1[i].defined(), g2[i].defined()) << p1[i].name();
        // f32 sums in different orders (the ops' own test checks 1e-5 on batch-mean weights).
        if (g1[i].defined()) {
          EXPECT_LE(testing::max_rel_diff(g1[i].to_dense(), g2[i].to_dense()), 5e-5) << p1[i].name();
        }
      }
    }
  }
}

TEST(Models, ConfigJsonRebuildsTheSameModel) {
  for (auto& [kind, cfg] : small_models(3)) {
    SCOPED_TRACE(kind);
    auto m = make_model(kind, cfg);
    EXPECT_EQ(m->kind(), kind);
    auto m2 = make_model(m->kind(), m->config_json());
    auto n1 = m->named_parameters(), n2 = m2->named_parameters();
    ASSERT_EQ(n1.size(), n2.size());
    for (size_t i = 0; i < n1.size(); ++i) {
      EXPECT_EQ(n1[i].first, n2[i].first);
      EXPECT_EQ(n1[i].second.shape(), n2[i].second.shape());
      EXPECT_EQ(testing::max_rel_diff(n1[i].second, n2[i].second), 0.0) << n1[i].first;  // same seed, same init
    }
    EXPECT_EQ(m->task_names(), m2->task_names());
    // Every key the test set comes back with its value; writing the rebuilt model's config gives
    // the same JSON (the reader and the writer walk the same field list).
    const nlohmann::json written = m->config_json();
    for (const auto& [key, value] : cfg.items()) {
      if (key == "features") continue;  // written in its canonical form, with defaults filled in
      ASSERT_TRUE(written.contains(key)) << key;
      EXPECT_EQ(written.at(key), value) << key;
    }
    EXPECT_EQ(m2->config_json(), written);
  }
}

TEST(Models, DesignatedInitialisersFollowTheTutorial) {
  const Features f = small_features();
  MMoE mmoe({.features = f,
             .expert_units = {16, 8},
             .num_experts = 4,
             .num_tasks = 2,
             .expert_activation = "relu",
             .tower_units = {8, 4}});
  SharedBottom sb({.features = f,
                   .hidden_units = {16},
                   .task_hidden_units = {8},
                   .num_tasks = 2,
                   .task_types = {TaskType::binary, TaskType::regression}});
  ESMM esmm({.features = f, .hidden_units = {}, .tower_units = {8}, .embedding_dim = 8});
  PLE ple({.features = f,
           .expert_units = {16},
           .num_experts = 2,
           .num_layers = 2,
           .num_shared_experts = 1,
           .task_types = {TaskType::binary, TaskType::binary, TaskType::regression},
           .tower_units = {4}});
  OMoE omoe({.features = f, .num_experts = 2, .num_tasks = 2});
  AITM aitm({.features = f, .hidden_units = {8}, .tower_units = {4}, .num_tasks = 3, .calibrator_weight = 0.6});
  EXPECT_EQ(ple.num_tasks(), 3);
  EXPECT_EQ(sb.task_types()[1], TaskType::regression);
  EXPECT_EQ(esmm.task_names(), (std::vector<std::string>{"ctr", "ctcvr"}));
  EXPECT_EQ(esmm.embedding().output_dim(), 16);
  EXPECT_EQ(mmoe.parameter("experts.3.mlp.4.weight").shape(), (Shape{8, 16}));
  EXPECT_EQ(mmoe.parameter("gates.1.weight").shape(), (Shape{4, 4 + 4 + 1}));
  EXPECT_EQ(omoe.parameter("gate.weight").shape(), (Shape{2, 9}));
  EXPECT_EQ(aitm.parameter("aits.1.q_layer.weight").shape(), (Shape{8, 8}));
  // A regression task predicts its logit unchanged.
  Inputs in = inputs(4, 2);
  ModelOutput out = sb.forward(in.sparse, in.dense);
  EXPECT_EQ(testing::max_rel_diff(out.predictions[1], out.logits[1]), 0.0);
}

TEST(Models, SharedTaskLayersSplitEveryParameterOnce) {
  for (auto& [kind, cfg] : small_models(3)) {
    SCOPED_TRACE(kind);
    auto m = make_model(kind, cfg);
    SharedTaskLayers s = shared_task_layers(*m);
    size_t n = s.shared.size();
    for (const auto& t : s.task) n += t.size();
    EXPECT_EQ(n, m->parameters().size());
    for (const std::string& name : s.shared_names) {
      EXPECT_EQ(name.find("towers."), std::string::npos) << name;
      EXPECT_EQ(name.find("gates_specific"), std::string::npos) << name;
      EXPECT_EQ(name.find("experts_specific"), std::string::npos) << name;
    }
    EXPECT_EQ(s.shared_names[0], "embedding.arena_d4");
    for (int64_t t = 0; t < m->num_tasks(); ++t) {
      ASSERT_FALSE(s.task[t].empty());
      const std::string tower =
          kind == "esmm" ? (t == 0 ? "tower_ctr." : "tower_cvr.") : "towers." + std::to_string(t) + ".";
      bool has_tower = false;
      for (const std::string& name : s.task_names[t]) has_tower = has_tower || name.rfind(tower, 0) == 0;
      EXPECT_TRUE(has_tower) << "task " << t;
    }
    // The last shared layer is among the shared parameters.
    std::vector<Tensor> last = m->last_shared_parameters();
    ASSERT_FALSE(last.empty());
    for (const Tensor& p : last) {
      bool found = false;
      for (const Tensor& q : s.shared) found = found || q.same(p);
      EXPECT_TRUE(found) << p.name();
    }
  }
  // PLE: task-specific experts belong to their task, shared experts and the shared gate are shared.
  auto m = make_model("ple", small_models(2)[2].second);
  SharedTaskLayers s = shared_task_layers(*m);
  auto has = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  EXPECT_TRUE(has(s.task_names[1], "cgc_layers.0.experts_specific.2.mlp.0.weight"));
  EXPECT_TRUE(has(s.task_names[0], "cgc_layers.1.experts_specific.1.mlp.0.weight"));
  EXPECT_TRUE(has(s.shared_names, "cgc_layers.0.experts_shared.0.mlp.0.weight"));
  EXPECT_TRUE(has(s.shared_names, "cgc_layers.0.gate_shared.weight"));
  EXPECT_TRUE(has(s.task_names[1], "cgc_layers.1.gates_specific.1.weight"));
}

TEST(Models, GradientsReachEveryParameter) {
  for (auto& [kind, cfg] : small_models(2)) {
    SCOPED_TRACE(kind);
    auto m = make_model(kind, cfg);
    Inputs in = inputs(6, 2);
    auto l = m->loss(m->forward(in.sparse, in.dense), in.labels);
    backward(l[0] + l[1]);
    for (auto& [name, p] : m->named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
  }
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Models, BadConfigurationsGiveClearErrors) {
  const Features f = small_features();
  expect_error([] { MMoE m({.features = {}}); }, "no features");
  expect_error([&] { MMoE m({.features = f, .num_experts = 0}); }, "num_experts");
  expect_error([&] { PLE m({.features = f, .num_shared_experts = 0}); }, "num_shared_experts");
  expect_error([&] { PLE m({.features = f, .num_layers = 0}); }, "num_layers");
  expect_error([&] { MMoE m({.features = f, .num_tasks = 3, .task_types = {TaskType::binary}}); },
               "1 task_types for num_tasks = 3");
  expect_error([&] { MMoE m({.features = f, .num_tasks = 2, .task_names = {"a", "b", "c"}}); }, "3 task_names");
  expect_error([&] { MMoE m({.features = f, .num_tasks = 0}); }, "num_tasks");
  expect_error([&] { MMoE m({.features = f, .task_names = {"a", "a"}}); }, "distinct");
  expect_error([&] { MMoE m({.features = f, .expert_activation = "swish"}); }, "MMoE.expert_activation");
  expect_error([&] { MMoE m({.features = f, .expert_units = {}}); }, "expert_units");
  expect_error([&] { SharedBottom m({.features = f, .hidden_units = {}}); }, "hidden_units");
  expect_error([&] { AITM m({.features = f, .task_types = {TaskType::binary, TaskType::regression}}); }, "binary");
  expect_error([&] { MMoE m({.features = f, .dropout = 1.5}); }, "dropout");
  Features bad = f;
  bad.sparse[1].vocab_size = 0;
  expect_error([&] { MMoE m({.features = bad}); }, "feature 'b' has vocab_size 0");
  bad = f;
  bad.dense.push_back({.name = "a"});
  expect_error([&] { MMoE m({.features = bad}); }, "listed twice");
  expect_error([] { make_model("mmoe2", nlohmann::json::object()); }, "unknown model kind 'mmoe2'");
  expect_error(
      [&] {
        make_model("mmoe", {{"features", features_to_json(f)}, {"num_expert", 3}});
      },
      "unknown key 'num_expert'");
  expect_error([&] { make_model("ple", {{"features", features_to_json(f)}, {"num_layers", "two"}}); }, "'num_layers'");
  // gate_activation is no field any more: a config written before (always "softmax") still reads,
  // any other value is refused, and no other model takes the key.
  EXPECT_EQ(make_model("mmoe", {{"features", features_to_json(f)}, {"gate_activation", "softmax"}})->config_json(),
            make_model("mmoe", {{"features", features_to_json(f)}})->config_json());
  EXPECT_FALSE(make_model("omoe", {{"features", features_to_json(f)}, {"gate_activation", "softmax"}})
                   ->config_json()
                   .contains("gate_activation"));
  expect_error(
      [&] {
        make_model("mmoe", {{"features", features_to_json(f)}, {"gate_activation", "sigmoid"}});
      },
      "mmoe config: 'gate_activation' = \"sigmoid\" is not supported");
  expect_error(
      [&] {
        make_model("ple", {{"features", features_to_json(f)}, {"gate_activation", "softmax"}});
      },
      "unknown key 'gate_activation'");
  // Inputs.
  MMoE m({.features = f, .expert_units = {4}, .num_experts = 2, .tower_units = {2}});
  Inputs in = inputs(4, 2);
  expect_error([&] { m.forward(in.sparse, Tensor()); }, "expected dense values [4, 1]");
  expect_error(
      [&] {
        m.forward(from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3}), in.dense);
      },
      "sparse ids [batch, 2]");
  expect_error([&] { m.loss(m.forward(in.sparse, in.dense), zeros({4, 3})); }, "expected labels [4, 2]");
}

}  // namespace
}  // namespace rechub::models
