// Checkpoints: bit-exact round trip of parameters, buffers, optimizer state and metadata; every
// kind of damage refused with its message and the model and optimizer left untouched; the file
// opens in PyTorch with the documented names.
#include "rechub/nn/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/mlp.h"
#include "rechub/nn/optim.h"
#include "rechub/nn/safetensors.h"
#include "rechub/nn/sharded_embedding.h"
#include "support/test_util.h"

namespace rechub::nn {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

struct Net : Module {
  std::shared_ptr<EmbeddingCollection> embedding;
  std::shared_ptr<MLP> tower;
  Net(uint64_t seed, std::vector<int64_t> dims = {8}, DType emb_dtype = DType::f32, bool extra = false) {
    Generator g(seed);
    embedding = register_module(
        "embedding", std::make_shared<EmbeddingCollection>(
                         std::vector<EmbeddingSpec>{{"user", 20, 4}, {"item", 15, 4}, {"hist", 0, 0, "item"}},
                         EmbeddingOptions{.init_std = 0.1, .seed = seed, .dtype = emb_dtype}));
    tower = register_module("tower", std::make_shared<MLP>(MLPOptions{.input_dim = 12, .dims = dims, .generator = &g}));
    if (extra) register_parameter("extra", ones({2}));
  }
  Tensor forward(const Tensor& ids) { return tower->forward(embedding->forward(ids)); }
};

std::vector<uint8_t> all_bits(const Module& m, const Optimizer* opt) {
  std::vector<uint8_t> out;
  auto add = [&](const Tensor& t) {
    const auto* p = static_cast<const uint8_t*>(t.raw_data());
    out.insert(out.end(), p, p + t.nbytes());
  };
  for (auto& [n, t] : m.named_parameters()) add(t);
  for (auto& [n, t] : m.named_buffers()) add(t);
  if (opt)
    for (auto& [n, t] : opt->state_tensors()) add(t);
  return out;
}

void train_steps(Net& net, Optimizer& opt, int steps, uint64_t seed) {
  Generator g(seed);
  for (int s = 0; s < steps; ++s) {
    std::vector<int64_t> ids;
    for (int b = 0; b < 16; ++b)
      ids.insert(ids.end(), {int64_t(g.randint(20)), int64_t(g.randint(15)), int64_t(g.randint(15))});
    opt.zero_grad();
    backward(ops::sum(net.forward(from_vector(ids, {16, 3}))));
    opt.step();
  }
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rechub_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }
  static std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  static void spit(const std::string& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary);
    f << bytes;
  }
  // Loads `file` into a fresh model/optimizer, expects an error containing every string in
  // `needles`, and checks that nothing changed.
  static void expect_refused(const std::string& file, const std::vector<std::string>& needles, Net& net,
                             Optimizer* opt) {
    const auto before = all_bits(net, opt);
    try {
      load_checkpoint(file, net, opt);
      ADD_FAILURE() << "loading " << file << " should fail";
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing '" << n << "' in:\n" << msg;
    }
    EXPECT_EQ(all_bits(net, opt), before) << "the model or optimizer changed although the load failed";
  }
  fs::path dir_;
};

const nlohmann::json kMeta = {{"model", "test-net"},
                              {"config", {{"dims", {8}}, {"features", {"user", "item", "hist"}}}},
                              {"vocabularies", {{"user", {"a", "b"}}}},
                              {"step", 3},
                              {"lr", 0.1 / 3}};

TEST_F(Checkpoint, RoundTripIsBitExact) {
  Net a(1);
  Adam oa({{a.parameters(), 0.01, 0.001}});
  train_steps(a, oa, 3, 5);
  oa.set_lr(0, 0.0123456789012345);
  save_checkpoint(path("a.safetensors"), a, &oa, kMeta);
  EXPECT_FALSE(fs::exists(path("a.safetensors.tmp")));
  for (auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().filename(), "a.safetensors");

  Net b(99);
  Adam ob({{b.parameters(), 0.5}});
  ASSERT_NE(all_bits(a, nullptr), all_bits(b, nullptr));
  const nlohmann::json meta = load_checkpoint(path("a.safetensors"), b, &ob);
  EXPECT_EQ(meta, kMeta);
  EXPECT_EQ(all_bits(a, &oa), all_bits(b, &ob));
  EXPECT_EQ(ob.lr(0), 0.0123456789012345);
  EXPECT_EQ(ob.group(0).weight_decay, 0.001);
  EXPECT_EQ(b.tower->named_buffers()[2].second.data<int64_t>()[0], 3);  // num_batches_tracked
  EXPECT_EQ(read_checkpoint_metadata(path("a.safetensors")), kMeta);
  // Training continues identically from the restored state.
  train_steps(a, oa, 2, 6);
  train_steps(b, ob, 2, 6);
  EXPECT_EQ(all_bits(a, &oa), all_bits(b, &ob));

  // Without an optimizer: the model alone; read_checkpoint sees everything.
  Net c(7);
  load_checkpoint(path("a.safetensors"), c);
  const auto contents = read_checkpoint(path("a.safetensors"));
  EXPECT_EQ(contents.metadata, kMeta);
  EXPECT_EQ(contents.optimizer["kind"], "adam");
  EXPECT_EQ(contents.parameter_names.size(), a.named_parameters().size());
  EXPECT_EQ(contents.tensors.size(), a.named_parameters().size() + a.named_buffers().size());
  EXPECT_EQ(contents.optimizer_state.size(), 3 * a.named_parameters().size());
  // Saving over an existing file replaces it.
  save_checkpoint(path("a.safetensors"), c, nullptr, {{"v", 2}});
  EXPECT_EQ(read_checkpoint_metadata(path("a.safetensors"))["v"], 2);
}

TEST_F(Checkpoint, DamagedFilesAreRefusedAndNothingChanges) {
  Net a(1);
  Adam oa({{a.parameters(), 0.01}});
  train_steps(a, oa, 2, 5);
  const std::string good = path("good.safetensors");
  save_checkpoint(good, a, &oa, kMeta);
  const std::string bytes = slurp(good);
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);

  Net b(2);
  Adam ob({{b.parameters(), 0.01}});
  train_steps(b, ob, 1, 9);  // some state to protect

  spit(path("trunc.st"), bytes.substr(0, bytes.size() - 100));
  expect_refused(path("trunc.st"), {"truncated", "trunc.st"}, b, &ob);
  spit(path("short.st"), bytes.substr(0, 5));
  expect_refused(path("short.st"), {"too short"}, b, &ob);
  spit(path("headcut.st"), bytes.substr(0, 8 + hlen / 2));
  expect_refused(path("headcut.st"), {"truncated"}, b, &ob);

  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x10;
  spit(path("flip.st"), flipped);
  expect_refused(path("flip.st"), {"data checksum mismatch"}, b, &ob);

  std::string garbled = bytes;
  garbled[8] = 'X';  // the header's opening brace
  spit(path("garbled.st"), garbled);
  expect_refused(path("garbled.st"), {"malformed header"}, b, &ob);

  // Header edits (re-serialised, so the stored checksums are stale): metadata and version.
  std::map<std::string, std::string> md;
  auto tensors = read_safetensors(good, &md);
  auto md2 = md;
  md2["rechub.metadata"] = R"({"model": "tampered"})";
  write_safetensors(path("meta.st"), tensors, md2);
  expect_refused(path("meta.st"), {"header checksum mismatch"}, b, &ob);
  EXPECT_THROW(read_checkpoint_metadata(path("meta.st")), Error);
  md2 = md;
  md2["rechub.format_version"] = "2";
  write_safetensors(path("version.st"), tensors, md2);
  expect_refused(path("version.st"), {"format version '2' is not supported"}, b, &ob);
  md2.erase("rechub.format_version");
  write_safetensors(path("noversion.st"), tensors, md2);
  expect_refused(path("noversion.st"), {"not a rechub checkpoint"}, b, &ob);

  // Several problems at once are all listed: a missing tensor, a changed one and an extra one.
  auto t2 = tensors;
  t2.erase(std::find_if(t2.begin(), t2.end(), [](auto& p) { return p.first == "tower.mlp.0.bias"; }));
  for (auto& [n, t] : t2)
    if (n == "tower.mlp.4.weight") t = zeros({1, 9});
  t2.emplace_back("tower.mlp.9.weight", zeros({3}));
  write_safetensors(path("multi.st"), t2, md);
  expect_refused(path("multi.st"),
                 {"missing parameter 'tower.mlp.0.bias' [8] f32",
                  "parameter 'tower.mlp.4.weight': the checkpoint has [1, 9]", "unexpected tensor 'tower.mlp.9.weight'",
                  "data checksum mismatch", "header checksum mismatch", "left unchanged"},
                 b, &ob);
  EXPECT_THROW(load_checkpoint(path("does_not_exist.st"), b), Error);
}

TEST_F(Checkpoint, ValidFilesForAnotherModelAreRefusedWithTheDifferences) {
  Net a(1, {8}, DType::f32, true);
  Adam oa({{a.parameters(), 0.01}});
  train_steps(a, oa, 1, 5);
  save_checkpoint(path("extra.st"), a, &oa, kMeta);

  Net b(2, {6}, DType::f64);
  SGD ob({{b.parameters(), 0.1}}, {.momentum = 0.9});
  expect_refused(path("extra.st"),
                 {"unexpected tensor 'extra'",
                  "parameter 'embedding.arena_d4': the checkpoint has [35, 4] f32, the model expects [35, 4] f64",
                  "parameter 'tower.mlp.0.weight': the checkpoint has [8, 12] f32, the model expects [6, 12] f32",
                  "buffer 'tower.mlp.1.running_mean'"},
                 b, &ob);
  // Right model, wrong optimizer kind; and an optimizer asked for but not saved.
  Net c(3, {8}, DType::f32, true);
  SGD oc({{c.parameters(), 0.1}}, {.momentum = 0.9});
  expect_refused(path("extra.st"), {"optimizer kind: the checkpoint holds 'adam' state but the optimizer is 'sgd'"}, c,
                 &oc);
  save_checkpoint(path("noopt.st"), a, nullptr, kMeta);
  Adam oc2({{c.parameters(), 0.1}});
  expect_refused(path("noopt.st"), {"holds no optimizer state"}, c, &oc2);
  EXPECT_NO_THROW(load_checkpoint(path("noopt.st"), c));
}

TEST_F(Checkpoint, OpensInPyTorchWithTheDocumentedNames) {
  const std::string py = RECHUB_PYTHON;
  if (py.empty() || !fs::exists(py) || std::system((py + " -c 'import torch' > /dev/null 2>&1").c_str()) != 0)
    RECHUB_REFERENCE_MISSING("no python3 with torch at '" << py << "': the PyTorch load check cannot run",
                             "python3-torch");
  Generator g(4);
  MLP m({.input_dim = 6, .dims = {10, 4}, .activation = "prelu", .generator = &g});
  SGD opt({{m.parameters(), 0.1}}, {.momentum = 0.9});
  Adam adam({{m.parameters(), 0.01}});
  for (int s = 0; s < 3; ++s) {
    adam.zero_grad();
    backward(ops::sum(m.forward(randn({16, 6}, {}, &g))));
    adam.step();
  }
  const nlohmann::json cfg = {
      {"input_dim", 6}, {"dims", {10, 4}}, {"activation", "prelu"}, {"batch_norm", true}, {"output_layer", true}};
  save_checkpoint(path("mlp.safetensors"), m, &adam, {{"config", cfg}});
  Tensor x = randn({9, 6}, {}, &g);
  write_safetensors(path("in.safetensors"), {{"x", x}}, {{"case", cfg.dump()}});
  const std::string cmd = py + " " + RECHUB_SOURCE_DIR + "/tests/reference/nn_load_checkpoint.py " +
                          path("mlp.safetensors") + " " + path("in.safetensors") + " " + path("out.safetensors") +
                          " > " + path("py.log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(path("py.log"));
  std::map<std::string, Tensor> out;
  for (auto& [k, t] : read_safetensors(path("out.safetensors"))) out[k] = t;
  m.eval();
  const auto ours = m.forward(x).to_vector<float>(), theirs = out.at("y").to_vector<float>();
  ASSERT_EQ(ours.size(), theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], theirs[i], 1e-5 * (1 + std::abs(theirs[i])));
  EXPECT_EQ(out.at("data_crc_ok").to_vector<int64_t>(), std::vector<int64_t>{1});
  EXPECT_EQ(out.at("optim_steps").to_vector<int64_t>(), std::vector<int64_t>(m.named_parameters().size(), 3));
}

// The pieces large checkpoints are written and read in: SafetensorsWriter fed in odd-sized pieces
// gives the bytes serialize_safetensors gives at once; a file opened by header reads each tensor,
// every row shard (rows r, r+N, ...: nn::row_shard_of's) and the data section in pieces equal to
// the file read whole. The table is 17.6 MB, so row reads cross the 16 MiB piece boundary.
TEST_F(Checkpoint, SafetensorsWrittenAndReadInPieces) {
  const int64_t R = 1'100'003, W = 4;
  std::vector<float> v(static_cast<size_t>(R * W));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f;
  const NamedTensorList tensors = {{"table", from_vector(v, {R, W})},
                                   {"ids", from_vector(std::vector<int64_t>{7, -1, 3}, {3})},
                                   {"empty", zeros({0, 2})}};
  const std::map<std::string, std::string> md = {{"sum", "crc32:00000000"}, {"k", "v"}};
  std::vector<SafetensorsSpec> specs;
  for (const auto& [n, t] : tensors) specs.push_back({n, t.dtype(), t.shape()});
  {
    SafetensorsWriter w(path("p.safetensors"), specs, md);
    const auto* b = static_cast<const char*>(tensors[0].second.raw_data());
    const size_t nb = tensors[0].second.nbytes();
    for (size_t a = 0; a < nb; a += 1'000'003) w.append(b + a, std::min<size_t>(1'000'003, nb - a));
    w.append(tensors[1].second.raw_data(), tensors[1].second.nbytes());
    EXPECT_NE(error_of([&] { w.set_metadata("sum", "crc32:0"); }).find("as long as the old"), std::string::npos);
    w.set_metadata("sum", "crc32:abcdef01");
    w.commit();
  }
  auto md2 = md;
  md2["sum"] = "crc32:abcdef01";
  EXPECT_EQ(slurp(path("p.safetensors")), serialize_safetensors(tensors, md2));

  const SafetensorsFile whole = read_safetensors_file(path("p.safetensors"));
  const SafetensorsFile opened = read_safetensors_header(path("p.safetensors"));
  ASSERT_TRUE(whole.holds_data());
  ASSERT_FALSE(opened.holds_data());
  EXPECT_EQ(opened.metadata, md2);
  std::string pieces;
  opened.for_each_data_piece([&](const char* p, size_t n) {
    EXPECT_LE(n, size_t{16} << 20);
    pieces.append(p, n);
  });
  EXPECT_EQ(pieces, std::string(whole.data(), whole.data_size()));
  for (size_t i = 0; i < whole.entries.size(); ++i) {
    const Tensor a = whole.tensor(i), b = opened.tensor(i);
    ASSERT_EQ(a.shape(), b.shape());
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << whole.entries[i].name;
  }
  const size_t table = whole.entries[0].name == "table" ? 0 : whole.entries[1].name == "table" ? 1 : 2;
  for (int N : {1, 2, 3})
    for (int r = 0; r < N; ++r) {
      const Tensor expect = row_shard_of(tensors[0].second, r, N);
      for (const SafetensorsFile* f : {&whole, &opened}) {
        const Tensor got = f->rows(table, r, N);
        ASSERT_EQ(got.shape(), expect.shape()) << N << " " << r;
        EXPECT_EQ(std::memcmp(got.raw_data(), expect.raw_data(), expect.nbytes()), 0) << "rank " << r << " of " << N;
      }
    }
  Tensor wrong = zeros({R, W + 1});
  EXPECT_NE(error_of([&] { opened.tensor_into(table, wrong); }).find("cannot be read into"), std::string::npos);

  // Too few or too many bytes are refused, and an uncommitted writer leaves nothing behind.
  {
    SafetensorsWriter w(path("q.safetensors"), specs, md);
    EXPECT_NE(error_of([&] { w.commit(); }).find("0 bytes of tensor data given"), std::string::npos);
    std::vector<char> big(tensors[0].second.nbytes() + 25, 0);
    EXPECT_NE(error_of([&] { w.append(big.data(), big.size()); }).find("the header describes"), std::string::npos);
  }
  for (auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().filename(), "p.safetensors");
}

}  // namespace
}  // namespace rechub::nn
