// ONNX export against a real runtime: every model kind (binary and regression tasks, sparse and
// dense inputs) is trained briefly (so BatchNorm's running statistics are not the initial ones),
// saved, exported the way `rechub export` does, run in ONNX Runtime (onnxruntime-node, driven by
// tests/onnx/run_ort.js) and compared with Predictor on the same encoded rows: max |diff| <= 1e-5.
// ONNX's Python checker (Debian's python3-onnx, full_check) checks every file as well.
//
// Without ONNX Runtime (tests/onnx/install_ort.sh installs it) or python3-onnx the test says so and
// is skipped, except under CI=true, where it fails.
#include "rechub/mtl/export/onnx_export.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "rechub/core/autograd.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"

#ifndef RECHUB_ORT_DIR
#error "tests/CMakeLists.txt defines RECHUB_ORT_DIR (where onnxruntime-node's node_modules is)"
#endif

namespace rechub {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Not available here: a failure under CI=true, else a skip that says what is missing.
#define RECHUB_REQUIRE_TOOL(ok, why)                          \
  do {                                                        \
    if (!(ok)) {                                              \
      if (in_ci()) FAIL() << (why) << " (CI=true: required)"; \
      GTEST_SKIP() << (why);                                  \
    }                                                         \
  } while (0)

std::string ort_modules() {
  const char* env = std::getenv("RECHUB_ORT_DIR");
  return (fs::path(env != nullptr ? env : RECHUB_ORT_DIR) / "node_modules").string();
}

struct Variant {
  std::string name, kind;
  bool dense_only = false;
  int64_t num_dense = 2;  // AliCcp dense features (0: sparse only)
  std::vector<data::TaskType> task_types{};
  trainer::ModelSizes sizes{};
};

struct Case {
  std::string onnx;
  json inputs;
  std::vector<std::string> outputs;
  std::vector<std::vector<double>> expected;  // [output][row]
};

class OnnxExport : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rechub_onnx_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Trains `v` for one epoch, saves it, exports it and returns the rows to score with Predictor's
  // answers; three extra rows check the out-of-range ids (they must score like id 0).
  Case make_case(const Variant& v) {
    const fs::path d = dir_ / v.name;
    fs::create_directories(d);
    std::vector<std::string> paths;
    data::Schema schema;
    if (v.dense_only) {
      data::MmoeSynthConfig cfg{.seed = 3, .dim = 6};
      paths = data::write_mmoe_synthetic((d / "m").string(), cfg, 1200, 0, 64);
      schema = data::MmoeSynth(cfg).schema();
    } else {
      data::AliCcpSynthConfig cfg{
          .seed = 5, .vocab_sizes = {300, 50, 12, 4}, .num_dense = v.num_dense, .click_rate = 0.3};
      paths = data::write_ali_ccp_synthetic((d / "a").string(), cfg, 1200, 0, 64);
      schema = data::AliCcpSynth(cfg).schema(4);
    }
    const auto loaded = data::load_data({.train = paths[0], .test = paths[1]}, schema,
                                        {.preprocess = {.normalization = data::Normalization::standard}});
    const data::Schema& fitted = loaded.preprocessor->schema();
    auto model =
        trainer::build_model(v.kind, models::features_from_schema(fitted), fitted.task_names(), v.task_types, v.sizes);
    trainer::MTLTrainer t(model, {.n_epochs = 1, .progress = false, .preprocessor = loaded.preprocessor});
    data::DataLoader train(loaded.train, {.batch_size = 128, .prefetch = 0});
    t.fit(train);
    const std::string ckpt = (d / "model.safetensors").string();
    t.save_model(ckpt);

    Case c;
    c.onnx = (d / "model.onnx").string();
    const exporter::CheckpointExport ex = exporter::export_checkpoint_onnx(ckpt, c.onnx);
    EXPECT_TRUE(fs::exists(ex.onnx_path));
    EXPECT_TRUE(fs::exists(ex.preprocessor_path));
    EXPECT_FALSE(fs::exists(c.onnx + ".tmp"));

    const trainer::Predictor p(ckpt);
    const data::RawRows raw = data::read_raw_rows(paths[1], p.preprocessor().csv_options());
    data::Batch batch = p.preprocessor().encode_rows(raw.rows, raw.header);
    const int64_t n = batch.size(), F = batch.sparse.defined() ? batch.sparse.size(1) : 0;
    const int64_t D = batch.dense.defined() && batch.dense.dim() == 2 ? batch.dense.size(1) : 0;
    std::vector<int64_t> ids = F > 0 ? batch.sparse.to_vector<int64_t>() : std::vector<int64_t>{};
    std::vector<float> dense = D > 0 ? batch.dense.to_vector<float>() : std::vector<float>{};
    // Rows n .. n+2: row 0 with feature 0's id set to 0 (Predictor's reference), past the
    // vocabulary, and negative; the last two go to ONNX Runtime only.
    const int64_t extra = F > 0 ? 3 : 0;
    for (int64_t k = 0; k < extra; ++k) {
      for (int64_t f = 0; f < F; ++f) ids.push_back(ids[static_cast<size_t>(f)]);
      for (int64_t j = 0; j < D; ++j) dense.push_back(dense[static_cast<size_t>(j)]);
    }
    if (extra > 0) {
      const int64_t vocab = model->features().sparse[0].vocab_size;
      ids[static_cast<size_t>(n * F)] = 0;
      ids[static_cast<size_t>((n + 1) * F)] = vocab + 7;
      ids[static_cast<size_t>((n + 2) * F)] = -3;
    }
    const int64_t scored = n + (extra > 0 ? 1 : 0);
    data::Batch ref;
    if (F > 0) ref.sparse = from_vector(std::vector<int64_t>(ids.begin(), ids.begin() + scored * F), {scored, F});
    ref.dense = from_vector(std::vector<float>(dense.begin(), dense.begin() + scored * D), {scored, D});

    // Predictor's answers [row][task]; ESMM's cvr from the model's extras (Predictor serves its tasks).
    const auto pred = p.predict(ref);
    std::vector<double> cvr;
    if (v.kind == "esmm") {
      NoGradGuard ng;
      cvr = p.shared_model()->forward(ref.sparse, ref.dense).extras.at("cvr").to(DType::f64).to_vector<double>();
    }
    c.outputs = exporter::onnx_output_names(*p.shared_model());
    for (size_t o = 0; o < c.outputs.size(); ++o) {
      std::vector<double> col;
      for (int64_t i = 0; i < n + extra; ++i) {
        const size_t row = static_cast<size_t>(std::min(i, scored - 1));
        if (v.kind == "esmm")
          col.push_back(o == 1 ? cvr[row] : pred[row][o == 0 ? 0 : 1]);
        else
          col.push_back(pred[row][o]);
      }
      c.expected.push_back(col);
    }
    const int64_t rows = n + extra;
    const auto& features = model->features();
    for (int64_t f = 0; f < F; ++f) {
      std::vector<int64_t> col;
      for (int64_t i = 0; i < rows; ++i) col.push_back(ids[static_cast<size_t>(i * F + f)]);
      c.inputs[features.sparse[static_cast<size_t>(f)].name] = {{"type", "int64"}, {"dims", {rows}}, {"data", col}};
    }
    if (D > 0) c.inputs["dense"] = {{"type", "float32"}, {"dims", {rows, D}}, {"data", dense}};
    EXPECT_EQ(exporter::onnx_input_names(*model).size(), static_cast<size_t>(F + (D > 0 ? 1 : 0)));
    return c;
  }

  fs::path dir_;
};

TEST_F(OnnxExport, EveryModelMatchesOnnxRuntime) {
  const bool have_ort = fs::exists(fs::path(ort_modules()) / "onnxruntime-node" / "package.json") &&
                        std::system("node --version > /dev/null 2>&1") == 0;
  RECHUB_REQUIRE_TOOL(have_ort, "ONNX Runtime for Node is not installed in " + ort_modules() +
                                    " (run tests/onnx/install_ort.sh, which tests/run_all.sh runs)");
  const bool have_checker =
      std::system((std::string(RECHUB_PYTHON) + " -c 'import onnx.checker' > /dev/null 2>&1").c_str()) == 0;
  RECHUB_REQUIRE_TOOL(have_checker, std::string("ONNX's Python checker is missing: ") + RECHUB_PYTHON +
                                        " cannot import onnx (apt-get install python3-onnx)");

  using TT = data::TaskType;
  const trainer::ModelSizes small{.embed_dim = 8,
                                  .hidden_units = {16, 8},
                                  .expert_units = {16, 8},
                                  .num_experts = 3,
                                  .num_shared_experts = 2,
                                  .num_layers = 2,
                                  .tower_units = {8}};
  trainer::ModelSizes one_layer = small;
  one_layer.expert_units = {12};
  one_layer.tower_units = {};
  const std::vector<Variant> variants = {
      {.name = "shared_bottom", .kind = "shared_bottom", .task_types = {TT::binary, TT::regression}, .sizes = small},
      {.name = "esmm", .kind = "esmm", .sizes = small},
      {.name = "mmoe", .kind = "mmoe", .task_types = {TT::binary, TT::regression}, .sizes = small},
      {.name = "mmoe_dense_only", .kind = "mmoe", .dense_only = true, .sizes = one_layer},
      {.name = "omoe", .kind = "omoe", .num_dense = 0, .sizes = small},
      {.name = "ple", .kind = "ple", .task_types = {TT::binary, TT::regression}, .sizes = small},
      {.name = "ple_one_layer", .kind = "ple", .num_dense = 0, .sizes = one_layer},
      {.name = "aitm", .kind = "aitm", .sizes = small},
  };
  std::vector<Case> cases;
  json jcases = json::array();
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    cases.push_back(make_case(v));
    jcases.push_back({{"onnx", cases.back().onnx}, {"inputs", cases.back().inputs}, {"outputs", cases.back().outputs}});
    const std::string check = std::string(RECHUB_PYTHON) +
                              " -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
                              "full_check=True)' '" +
                              cases.back().onnx + "'";
    EXPECT_EQ(std::system(check.c_str()), 0) << "onnx.checker rejects " << cases.back().onnx;
  }
  ASSERT_FALSE(HasFatalFailure());

  const fs::path in = dir_ / "cases.json", out = dir_ / "results.json";
  std::ofstream(in) << jcases.dump();
  const std::string cmd = "node '" + std::string(RECHUB_SOURCE_DIR) + "/tests/onnx/run_ort.js' '" + ort_modules() +
                          "' '" + in.string() + "' '" + out.string() + "'";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "ONNX Runtime failed: " << cmd;
  const json results = json::parse(std::ifstream(out));
  ASSERT_EQ(results.size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    for (size_t o = 0; o < c.outputs.size(); ++o) {
      const std::vector<double> got = results[k].at(c.outputs[o]).get<std::vector<double>>();
      ASSERT_EQ(got.size(), c.expected[o].size()) << variants[k].name << " output " << c.outputs[o];
      double worst = 0;
      size_t at = 0;
      for (size_t i = 0; i < got.size(); ++i)
        if (std::abs(got[i] - c.expected[o][i]) > worst) {
          worst = std::abs(got[i] - c.expected[o][i]);
          at = i;
        }
      EXPECT_LE(worst, 1e-5) << variants[k].name << " output '" << c.outputs[o] << "' row " << at << ": ONNX Runtime "
                             << got[at] << ", Predictor " << c.expected[o][at];
    }
  }
}

TEST_F(OnnxExport, CollidingNamesAreAnErrorNotABadGraph) {
  data::AliCcpSynthConfig cfg{.seed = 5, .vocab_sizes = {30, 5}, .num_dense = 1};
  models::Features f = models::features_from_schema(data::AliCcpSynth(cfg).schema(4));
  for (auto& s : f.sparse) s.vocab_size = 10;
  // A task named like a feature would make an input and an output share a name.
  auto m = trainer::build_model("mmoe", f, {f.sparse[0].name, "other"}, {}, {.expert_units = {4}, .tower_units = {}});
  try {
    exporter::onnx_model_bytes(*m);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + f.sparse[0].name + "' is used twice"), std::string::npos) << e.what();
  }
  EXPECT_THROW(exporter::export_checkpoint_onnx((dir_ / "missing.safetensors").string(), (dir_ / "m.onnx").string()),
               Error);
  EXPECT_FALSE(fs::exists(dir_ / "m.onnx"));
}

#ifdef RECHUB_CLI
// `rechub export` writes what the C++ API writes, and a bad --model is a message and exit code 1.
TEST_F(OnnxExport, CommandWritesWhatTheApiWrites) {
  data::AliCcpSynthConfig cfg{.seed = 2, .vocab_sizes = {40, 6}, .num_dense = 1, .click_rate = 0.3};
  const auto paths = data::write_ali_ccp_synthetic((dir_ / "a").string(), cfg, 400, 0, 0);
  const auto loaded = data::load_data({.train = paths[0]}, data::AliCcpSynth(cfg).schema(4));
  const data::Schema& fitted = loaded.preprocessor->schema();
  auto model = trainer::build_model("mmoe", models::features_from_schema(fitted), fitted.task_names(), {},
                                    {.expert_units = {8}, .num_experts = 2, .tower_units = {4}});
  trainer::MTLTrainer t(model, {.n_epochs = 1, .progress = false, .preprocessor = loaded.preprocessor});
  data::DataLoader train(loaded.train, {.batch_size = 128, .prefetch = 0});
  t.fit(train);
  const std::string ckpt = (dir_ / "model.safetensors").string();
  t.save_model(ckpt);
  fs::create_directories(dir_ / "api");
  fs::create_directories(dir_ / "cli");
  const std::string api = (dir_ / "api" / "m.onnx").string(), cli = (dir_ / "cli" / "m.onnx").string();
  exporter::export_checkpoint_onnx(ckpt, api);
  const std::string log = (dir_ / "log.txt").string();
  ASSERT_EQ(
      std::system(
          (std::string(RECHUB_CLI) + " export --model '" + ckpt + "' --onnx '" + cli + "' 2> '" + log + "'").c_str()),
      0);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_TRUE(slurp(api) == slurp(cli)) << "rechub export and export_checkpoint_onnx wrote different models";
  EXPECT_TRUE(slurp((dir_ / "api" / "m.preprocessor.json").string()) ==
              slurp((dir_ / "cli" / "m.preprocessor.json").string()));
  EXPECT_NE(std::system((std::string(RECHUB_CLI) + " export --model '" + (dir_ / "nope.safetensors").string() +
                         "' --onnx '" + (dir_ / "x.onnx").string() + "' 2> '" + log + "'")
                            .c_str()),
            0);
  EXPECT_NE(slurp(log).find("nope.safetensors"), std::string::npos) << slurp(log);
  EXPECT_FALSE(fs::exists(dir_ / "x.onnx"));
}
#endif

}  // namespace
}  // namespace rechub
