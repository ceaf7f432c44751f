// Gate and expert diagnostics (mtl/metrics/gates.h): the statistics against numpy/scipy on the
// gate weights the model returns (tests/reference/gate_stats_ref.py), PLE's expert names, the
// collapse warnings on a model whose gates are forced onto one expert, and the epoch records.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/metrics/gates.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "support/test_util.h"

namespace rechub::trainer {
namespace {

namespace fs = std::filesystem;

bool have_scipy() {
  const std::string cmd = std::string(RECHUB_PYTHON) + " -c 'import numpy, scipy.stats' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

struct Data {
  fs::path dir;
  data::LoadedData data;
};

const Data& small_data() {
  static Data d = [] {
    Data s;
    s.dir = fs::temp_directory_path() / ("rechub_gates_" + std::to_string(::getpid()));
    fs::create_directories(s.dir);
    Generator gen(4);
    std::ofstream f(s.dir / "train.csv");
    f << "u,i,price,click,purchase\n";
    for (int r = 0; r < 500; ++r)
      f << gen.randint(20) << ',' << gen.randint(30) << ',' << gen.uniform() << ',' << (gen.uniform() < 0.3) << ','
        << (gen.uniform() < 0.1) << '\n';
    f.close();
    data::Schema sc;
    sc.sparse = {{.name = "u", .embed_dim = 4}, {.name = "i", .embed_dim = 4}};
    sc.dense = {{.name = "price"}};
    sc.labels = {{.task = "click", .column = "click"}, {.task = "purchase", .column = "purchase"}};
    data::DataOptions dopt;
    dopt.cache.enabled = false;
    s.data = data::load_data({.train = (s.dir / "train.csv").string()}, sc, dopt);
    return s;
  }();
  return d;
}

std::shared_ptr<models::MultiTaskModel> model(const std::string& kind) {
  const auto& sc = small_data().data.preprocessor->schema();
  return build_model(
      kind, models::features_from_schema(sc), sc.task_names(), sc.task_types(),
      {.expert_units = {8}, .num_experts = 3, .num_shared_experts = 2, .num_layers = 2, .tower_units = {4}});
}

TEST(GateDiagnostics, StatisticsMatchNumpyOnTheModelsGateWeights) {
  if (!have_scipy()) RECHUB_REFERENCE_MISSING(RECHUB_PYTHON << " lacks numpy/scipy", "python3-scipy");
  for (const std::string kind : {"mmoe", "omoe", "ple"}) {
    SCOPED_TRACE(kind);
    auto m = model(kind);
    const auto& ds = *small_data().data.train;
    // Batches of 64: the statistics accumulate across batches.
    const auto r = metrics::gate_statistics(*m, ds, 64);
    // The gate weights of every row, from one forward pass of all rows.
    nlohmann::json rows = nlohmann::json::object();
    {
      NoGradGuard ng;
      m->eval();
      const auto out = m->forward(ds.range_batch(0, ds.rows()));
      for (const auto& [key, t] : out.extras) {
        if (key.rfind("gate.", 0) != 0) continue;
        const int64_t B = t.size(0), E = t.size(1);
        const auto v = t.to_vector<float>();
        nlohmann::json a = nlohmann::json::array();
        for (int64_t i = 0; i < B; ++i) a.push_back(std::vector<double>(v.begin() + i * E, v.begin() + (i + 1) * E));
        rows[key.substr(5)] = a;
      }
    }
    const fs::path dir = small_data().dir / kind;
    fs::create_directories(dir);
    std::ofstream(dir / "in.json") << rows.dump();
    const std::string cmd = std::string(RECHUB_PYTHON) + " " + RECHUB_SOURCE_DIR +
                            "/tests/reference/gate_stats_ref.py " + (dir / "in.json").string() + " " +
                            (dir / "out.json").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const auto ref = nlohmann::json::parse(std::ifstream(dir / "out.json"));
    ASSERT_EQ(r.gates.size(), ref.size());
    // MMoE: one gate per task; OMoE: one shared gate; PLE (2 levels): per level a gate per task,
    // plus a shared gate below the last level.
    EXPECT_EQ(r.gates.size(), kind == "mmoe" ? 2u : kind == "omoe" ? 1u : 5u);
    for (const auto& g : r.gates) {
      SCOPED_TRACE(g.gate);
      ASSERT_TRUE(ref.contains(g.gate));
      EXPECT_EQ(g.rows, 500);
      const auto& e = ref[g.gate];
      ASSERT_EQ(g.mean_weight.size(), e["mean_weight"].size());
      for (size_t k = 0; k < g.mean_weight.size(); ++k) {
        EXPECT_NEAR(g.mean_weight[k], e["mean_weight"][k].get<double>(), 1e-6);
        EXPECT_NEAR(g.top_share[k], e["top_share"][k].get<double>(), 1e-12);
      }
      EXPECT_NEAR(g.entropy, e["entropy"].get<double>(), 1e-5);
    }
    if (kind == "ple") {
      const auto& shared = *std::find_if(r.gates.begin(), r.gates.end(),
                                         [](const metrics::GateStats& g) { return g.gate == "0.shared"; });
      EXPECT_EQ(shared.experts, (std::vector<std::string>{"0.click 0", "0.click 1", "0.click 2", "0.purchase 0",
                                                          "0.purchase 1", "0.purchase 2", "0.shared 0", "0.shared 1"}));
    }
  }
}

TEST(GateDiagnostics, CollapsedExpertsAreWarnedAbout) {
  auto m = model("mmoe");
  {
    // Every task's gate puts (almost) all its weight on expert 1: zero weights, bias +10 there.
    NoGradGuard ng;
    for (auto& [name, p] : m->named_parameters()) {
      if (name.rfind("gates.", 0) != 0) continue;
      p.copy_(ops::mul(p, 0.0));
      if (name.find("bias") != std::string::npos) p.copy_(from_vector(std::vector<float>{0, 10, 0}, {3}));
    }
  }
  const auto r = metrics::gate_statistics(*m, *small_data().data.train);
  std::string all;
  for (const auto& w : r.warnings) all += w + "\n";
  EXPECT_NE(all.find("experts collapsed: expert 1 carries more than 90 %"), std::string::npos) << all;
  EXPECT_NE(all.find("unused expert: expert 0"), std::string::npos) << all;
  EXPECT_NE(all.find("unused expert: expert 2"), std::string::npos) << all;
  EXPECT_NE(all.find("dropout"), std::string::npos) << all;  // says what can be done
  for (const auto& g : r.gates) EXPECT_DOUBLE_EQ(g.top_share[1], 1.0);
  // An untrained model's gates are near uniform: no warning.
  EXPECT_TRUE(metrics::gate_statistics(*model("mmoe"), *small_data().data.train).warnings.empty());
}

TEST(GateDiagnostics, EveryEpochRecordsTheGatesAndSharedBottomHasNone) {
  const fs::path out = small_data().dir / "fit";
  MTLTrainer t(model("ple"), {.n_epochs = 2, .out_dir = out.string(), .progress = false});
  data::DataLoader train(small_data().data.train, {.batch_size = 128, .prefetch = 0});
  t.fit(train);
  std::ifstream jl(out / "metrics.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(jl, line)) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("gates"));
    const auto g = metrics::GateReport::from_json({{"gates", j["gates"]}});
    EXPECT_EQ(g.gates.size(), 5u);
    for (const auto& s : g.gates) {
      double sum = 0;
      for (double w : s.mean_weight) sum += w;
      EXPECT_NEAR(sum, 1.0, 1e-5) << s.gate;
    }
    ++n;
  }
  EXPECT_EQ(n, 2);
  std::stringstream svg;
  svg << std::ifstream(out / "report.svg").rdbuf();
  EXPECT_NE(svg.str().find("mean gate weight: 1.purchase"), std::string::npos);

  const fs::path out2 = small_data().dir / "fit_sb";
  MTLTrainer t2(model("shared_bottom"), {.n_epochs = 1, .out_dir = out2.string(), .progress = false});
  t2.fit(train);
  std::ifstream jl2(out2 / "metrics.jsonl");
  std::getline(jl2, line);
  EXPECT_FALSE(nlohmann::json::parse(line).contains("gates"));
}

}  // namespace
}  // namespace rechub::trainer
