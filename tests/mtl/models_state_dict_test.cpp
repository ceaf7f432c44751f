// rechub's tensor names against torch-rechub's state_dict() keys, through the mapping that
// docs/STATE_DICT.md writes down: tests/reference/torch_rechub_names.py rebuilds torch-rechub's
// models (module for module, from its source) and checks that every rechub parameter and buffer
// maps to a torch-rechub key of the same shape, or is one of the few documented as rechub's own,
// and that every torch-rechub key is mapped to, or is one of those documented as torch-rechub's own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>

#include "rechub/mtl/models/model.h"
#include "support/test_util.h"

namespace rechub::models {
namespace {
namespace fs = std::filesystem;

nlohmann::json features(bool dense, int64_t dim_u = 4) {
  Features f;
  f.sparse = {{.name = "u", .vocab_size = 7, .embed_dim = dim_u},
              {.name = "i", .vocab_size = 5, .embed_dim = 4},
              {.name = "c", .vocab_size = 4, .embed_dim = 8},
              {.name = "u2", .vocab_size = 0, .embed_dim = 0, .shared_with = "u"}};
  if (dense) f.dense = {{.name = "d0"}, {.name = "d1"}};
  return features_to_json(f);
}

struct Case {
  std::string label, kind;
  nlohmann::json config;
};

std::vector<Case> cases() {
  return {
      {"shared_bottom",
       "shared_bottom",
       {{"features", features(true)}, {"hidden_units", {6, 5}}, {"task_hidden_units", {4}}, {"num_tasks", 2}}},
      {"shared_bottom_per_task",
       "shared_bottom",
       {{"features", features(false)},
        {"hidden_units", {6}},
        {"task_hidden_units_per_task", {{4, 3}, {2}, {5}}},
        {"num_tasks", 3}}},
      {"esmm", "esmm", {{"features", features(true, 8)}, {"tower_units", {6, 4}}}},
      {"esmm_bottom",
       "esmm",
       {{"features", features(false)}, {"hidden_units", {6}}, {"tower_units", {4}}, {"embedding_dim", 3}}},
      {"mmoe",
       "mmoe",
       {{"features", features(true)}, {"expert_units", {6, 5}}, {"num_experts", 3}, {"tower_units", {4}}}},
      {"mmoe_3tasks",
       "mmoe",
       {{"features", features(false)},
        {"expert_units", {5}},
        {"num_experts", 2},
        {"num_tasks", 3},
        {"tower_units_per_task", {{4}, {3, 2}, {6}}}}},
      {"omoe", "omoe", {{"features", features(true)}, {"expert_units", {6}}, {"num_experts", 2}, {"tower_units", {4}}}},
      {"ple",
       "ple",
       {{"features", features(true)},
        {"expert_units", {6, 5}},
        {"num_experts", 2},
        {"num_shared_experts", 1},
        {"num_layers", 2},
        {"tower_units", {4}}}},
      {"ple_1level_3tasks",
       "ple",
       {{"features", features(false)},
        {"expert_units", {5}},
        {"num_experts", 1},
        {"num_shared_experts", 2},
        {"num_layers", 1},
        {"num_tasks", 3},
        {"tower_units_per_task", {{4}, {3, 2}, {6}}}}},
      {"aitm",
       "aitm",
       {{"features", features(true)}, {"hidden_units", {6, 5}}, {"tower_units", {4}}, {"num_tasks", 3}}},
  };
}

nlohmann::json case_json(const std::string& kind, const MultiTaskModel& m) {
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& [name, t] : m.named_parameters()) tensors[name] = t.shape();
  for (const auto& [name, t] : m.named_buffers()) tensors[name] = t.shape();
  return {{"kind", kind},
          {"config", m.config_json()},
          {"num_tasks", m.num_tasks()},
          {"layout", m.embedding().layout_json()},
          {"tensors", tensors}};
}

// Runs the reference script on the case files; returns its exit status and output.
int run_script(const fs::path& root, const std::vector<fs::path>& files, std::string& out) {
  std::string cmd = std::string(RECHUB_PYTHON) + " " + RECHUB_SOURCE_DIR + "/tests/reference/torch_rechub_names.py";
  for (const auto& f : files) cmd += " " + f.string();
  cmd += " > " + (root / "log.txt").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream log(root / "log.txt");
  out.assign(std::istreambuf_iterator<char>(log), {});
  return rc;
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

TEST(ModelsStateDict, NamesMapToTorchRechubKeys) {
  std::string why;
  if (!torch_available(why))
    RECHUB_REFERENCE_MISSING("the torch-rechub name check cannot run: " << why, "python3-torch");
  testing::TempDir dir;
  std::vector<fs::path> files;
  for (const Case& c : cases()) {
    auto m = make_model(c.kind, c.config);
    files.push_back(dir.path / (c.label + ".json"));
    std::ofstream(files.back()) << case_json(c.kind, *m).dump(1);
  }
  std::string out;
  EXPECT_EQ(run_script(dir.path, files, out), 0) << out;
  for (const Case& c : cases()) EXPECT_NE(out.find(c.label + ".json: "), std::string::npos) << out;
  EXPECT_EQ(out.find("DIFFERENT"), std::string::npos) << out;
}

// The check fails on a name that does not map: a gate renamed, a BatchNorm buffer dropped, a
// tensor of the wrong shape.
TEST(ModelsStateDict, TheCheckCatchesANameThatDoesNotMap) {
  std::string why;
  if (!torch_available(why))
    RECHUB_REFERENCE_MISSING("the torch-rechub name check cannot run: " << why, "python3-torch");
  testing::TempDir dir;
  auto m = make_model("mmoe", cases()[4].config);
  const nlohmann::json good = case_json("mmoe", *m);
  auto variant = [&](const std::string& label, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j["tensors"]);
    const fs::path f = dir.path / (label + ".json");
    std::ofstream(f) << j.dump(1);
    std::string out;
    EXPECT_NE(run_script(dir.path, {f}, out), 0) << label << ": " << out;
    EXPECT_NE(out.find("DIFFERENT"), std::string::npos) << label << ": " << out;
  };
  variant("renamed_gate", [](nlohmann::json& t) {
    t["gates.0.linear.weight"] = t["gates.0.weight"];
    t.erase("gates.0.weight");
  });
  variant("dropped_buffer", [](nlohmann::json& t) { t.erase("experts.1.mlp.1.running_var"); });
  variant("wrong_shape", [](nlohmann::json& t) { t["towers.0.mlp.0.weight"] = {4, 3}; });
}

}  // namespace
}  // namespace rechub::models
