// Sharded embeddings in real training (the configs' embedding_shards, nn/embedding.h) under mpirun:
// N ranks with the arenas split by row train as N ranks with replicated arenas and as one process
// of batch N·B (the reference runs the ranks' batches in this process), for MMoE and PLE with
// several balancers; the checkpoints hold the whole arenas, load into one process and resume on
// any number of ranks. Compared: every epoch's training losses and task weights, every parameter
// and buffer (this rank's rows of the sharded arenas against the reference's), within 1e-5 relative.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/rng.h"
#include "rechub/core/storage.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/row_range.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "rechub/nn/checkpoint.h"
#include "rechub/nn/sharded_embedding.h"
#include "support/dist_env.h"

namespace rechub {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<dist::Communicator> world_ptr() {
  return std::shared_ptr<dist::Communicator>(&test::world(), [](dist::Communicator*) {});
}

data::Schema schema() {
  data::Schema s;
  s.sparse = {{.name = "a", .vocab_size = 23, .embed_dim = 4},
              {.name = "b", .vocab_size = 6, .embed_dim = 4},
              {.name = "c", .vocab_size = 9, .embed_dim = 3}};  // a second arena width
  s.dense = {{.name = "x"}};
  s.labels = {{.task = "click", .column = "click"}, {.task = "buy", .column = "buy"}};
  return s;
}

std::shared_ptr<data::Dataset> make_rows(int64_t R) {
  auto d = std::make_shared<data::Dataset>(schema(), R);
  Generator g(17);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t a = static_cast<int64_t>(g.randint(23)), b = static_cast<int64_t>(g.randint(6)),
                  c = static_cast<int64_t>(g.randint(9));
    const double x = g.uniform() * 2 - 1;
    d->sparse_data()[r * 3] = a;
    d->sparse_data()[r * 3 + 1] = b;
    d->sparse_data()[r * 3 + 2] = c;
    d->dense_data()[r] = static_cast<float>(x);
    const double p = 1 / (1 + std::exp(-(x + (a % 3 == 0 ? 1.0 : -0.5) + (c % 2 ? 0.3 : 0.0))));
    d->label_data()[r * 2] = g.uniform() < p ? 1.f : 0.f;
    d->label_data()[r * 2 + 1] = g.uniform() < p * 0.5 ? 1.f : 0.f;
  }
  return d;
}

struct Case {
  std::string model, strategy;
  double clip = 0;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.model << " " << c.strategy << " clip " << c.clip; }

std::shared_ptr<models::MultiTaskModel> make_model(const Case& c, std::shared_ptr<dist::Communicator> shards) {
  const data::Schema s = schema();
  return trainer::build_model(c.model, models::features_from_schema(s), s.task_names(), {},
                              {.hidden_units = {6},
                               .expert_units = {8, 6},
                               .num_experts = 2,
                               .num_shared_experts = 1,
                               .num_layers = 2,
                               .tower_units = {4},
                               .seed = 7,
                               .embedding_init_std = 0.05,
                               .embedding_shards = std::move(shards)});
}

trainer::TrainerOptions options(const Case& c, int64_t epochs) {
  trainer::TrainerOptions o{.optimizer_params = {.lr = 2e-2},
                            .n_epochs = epochs,
                            .task_weights_strategy = c.strategy,
                            .task_specific_lr = {{"buy", 1e-2}},
                            .clip_grad_norm = c.clip,
                            .progress = false,
                            .gate_diagnostics = false};
  return o;
}

constexpr int64_t kB = 16, kSteps = 4;

// The rows in the order that makes the reference's batches of N·B the union of the ranks' batches.
std::shared_ptr<data::Dataset> reference_rows(const std::shared_ptr<data::Dataset>& rows, int64_t N) {
  const int64_t R = rows->rows();
  std::vector<int64_t> order;
  for (int64_t k = 0; k < kSteps; ++k)
    for (int64_t q = 0; q < N; ++q)
      for (int64_t i = 0; i < kB; ++i) order.push_back(q * (R / N) + k * kB + i);
  return std::make_shared<data::Dataset>(rows->subset(order));
}

data::DataLoader rank_loader(const std::shared_ptr<data::Dataset>& rows) {
  dist::Communicator& w = test::world();
  return data::DataLoader(data::rank_rows(rows, w.rank(), w.size()),
                          {.batch_size = kB, .shuffle = false, .prefetch = 0});
}

// Relative L2 distance of a and b (b the reference).
double rel(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t k = 0; k < a.size(); ++k) num += (a[k] - b[k]) * (a[k] - b[k]), den += b[k] * b[k];
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
}

// Every parameter and buffer of `m` against the reference model's; where either model's arenas are
// sharded, this rank's rows of both.
void expect_same_state(models::MultiTaskModel& m, models::MultiTaskModel& ref, const std::string& what) {
  dist::Communicator& w = test::world();
  auto shard_names = [](models::MultiTaskModel& x) {
    return x.embeddings_sharded() ? x.embedding().row_shards("embedding.") : std::map<std::string, int64_t>{};
  };
  const auto ma = shard_names(m), mb = shard_names(ref);
  const auto& names = ma.empty() ? mb : ma;
  auto state = [](models::MultiTaskModel& x) {
    auto s = x.named_parameters();
    for (auto& b : x.named_buffers()) s.push_back(b);
    return s;
  };
  const auto sa = state(m), sb = state(ref);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    ASSERT_EQ(sa[i].first, sb[i].first);
    Tensor a = sa[i].second, b = sb[i].second;
    if (names.count(sa[i].first)) {
      if (!ma.count(sa[i].first)) a = nn::row_shard_of(a, w.rank(), w.size());
      if (!mb.count(sb[i].first)) b = nn::row_shard_of(b, w.rank(), w.size());
    }
    ASSERT_EQ(a.shape(), b.shape()) << what << ": " << sa[i].first;
    EXPECT_LE(rel(a.to_vector<double>(), b.to_vector<double>()), 1e-5) << what << ": " << sa[i].first;
  }
}

void expect_same_history(const trainer::MTLTrainer& a, const trainer::MTLTrainer& b, const std::string& what) {
  ASSERT_EQ(a.history().size(), b.history().size()) << what;
  for (size_t e = 0; e < b.history().size(); ++e)
    for (size_t t = 0; t < 2; ++t) {
      const double x = a.history()[e].train_loss[t], y = b.history()[e].train_loss[t];
      EXPECT_NEAR(x, y, 1e-5 * std::abs(y)) << what << ": loss, epoch " << e << " task " << t;
      const double wx = a.history()[e].weights[t], wy = b.history()[e].weights[t];
      EXPECT_NEAR(wx, wy, 1e-5 * std::abs(wy)) << what << ": weights, epoch " << e << " task " << t;
    }
}

class ShardedTraining : public ::testing::TestWithParam<Case> {};

TEST_P(ShardedTraining, EqualsReplicatedRanksAndOneProcessOfBatchNB) {
  dist::Communicator& w = test::world();
  const int64_t N = w.size(), R = N * kB * kSteps;
  const Case c = GetParam();
  const auto rows = make_rows(R);

  auto one = make_model(c, nullptr);
  trainer::MTLTrainer t1(one, options(c, 3));
  data::DataLoader l1(reference_rows(rows, N), {.batch_size = N * kB, .shuffle = false, .prefetch = 0});
  t1.fit(l1);

  auto replicated = make_model(c, nullptr);
  auto ro = options(c, 3);
  ro.communicator = world_ptr();
  trainer::MTLTrainer tr(replicated, ro);
  auto lr = rank_loader(rows);
  tr.fit(lr);

  auto sharded = make_model(c, world_ptr());
  EXPECT_EQ(sharded->embeddings_sharded(), N > 1);
  if (N > 1) {  // no rank holds a whole arena
    for (size_t a = 0; a < sharded->embedding().arenas().size(); ++a)
      EXPECT_EQ(sharded->embedding().arenas()[a].size(0),
                nn::row_shard_rows(sharded->embedding().arena_rows(a), w.rank(), static_cast<int>(N)));
  }
  trainer::MTLTrainer ts(sharded, ro);
  auto ls = rank_loader(rows);
  ts.fit(ls);

  expect_same_history(ts, t1, "sharded vs one process");
  expect_same_history(ts, tr, "sharded vs replicated");
  expect_same_state(*sharded, *one, "sharded vs one process");
  expect_same_state(*sharded, *replicated, "sharded vs replicated");
  // The test can fail: training moved the embeddings away from their initial rows.
  auto fresh = make_model(c, nullptr);
  EXPECT_GT(rel(one->embedding().arenas()[0].to_vector<double>(), fresh->embedding().arenas()[0].to_vector<double>()),
            1e-3);
}

INSTANTIATE_TEST_SUITE_P(Models, ShardedTraining,
                         ::testing::Values(Case{"mmoe", "fixed"}, Case{"mmoe", "gradnorm"}, Case{"mmoe", "metabalance"},
                                           Case{"mmoe", "pcgrad"}, Case{"mmoe", "mgda", 0.05}, Case{"ple", "fixed"},
                                           Case{"ple", "cagrad"}, Case{"aitm", "gradnorm"}),
                         [](const auto& info) {
                           return info.param.model + "_" + info.param.strategy + (info.param.clip > 0 ? "_clip" : "");
                         });

// A folder every rank sees (rank 0 names it), removed at the end.
struct SharedDir {
  fs::path path;
  SharedDir() {
    dist::Communicator& w = test::world();
    int64_t pid = w.rank() == 0 ? static_cast<int64_t>(::getpid()) : 0;
    w.broadcast(&pid, 1);
    path = fs::temp_directory_path() / ("rechub_sharded_" + std::to_string(pid));
    if (w.rank() == 0) fs::create_directories(path);
    w.barrier();
  }
  ~SharedDir() {
    test::world().barrier();
    if (test::world().rank() == 0) fs::remove_all(path);
  }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

TEST(ShardedCheckpoint, HoldsTheWholeArenasLoadsInOneProcessAndResumesOnAnyRankCount) {
  dist::Communicator& w = test::world();
  const int64_t N = w.size(), R = N * kB * kSteps;
  const Case c{"mmoe", "metabalance"};
  const auto rows = make_rows(R);
  const SharedDir dir;

  // 2 epochs sharded, and the same replicated: the two checkpoints hold the same tensors (whole
  // arenas and their Adam moments), so everything that reads a replicated one reads a sharded one.
  auto so = options(c, 2);
  so.communicator = world_ptr();
  so.out_dir = dir / "sharded";
  auto sharded = make_model(c, world_ptr());
  {
    trainer::MTLTrainer t(sharded, so);
    auto l = rank_loader(rows);
    t.fit(l);
  }
  auto ro = so;
  ro.out_dir = dir / "replicated";
  {
    trainer::MTLTrainer t(make_model(c, nullptr), ro);
    auto l = rank_loader(rows);
    t.fit(l);
  }
  w.barrier();
  {
    const auto a = nn::read_checkpoint(dir / "sharded/checkpoint.safetensors");
    const auto b = nn::read_checkpoint(dir / "replicated/checkpoint.safetensors");
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    ASSERT_EQ(a.optimizer_state.size(), b.optimizer_state.size());
    for (const auto* list : {&a.tensors, &a.optimizer_state}) {
      const auto& other = list == &a.tensors ? b.tensors : b.optimizer_state;
      for (size_t i = 0; i < list->size(); ++i) {
        ASSERT_EQ((*list)[i].first, other[i].first);
        ASSERT_EQ((*list)[i].second.shape(), other[i].second.shape()) << (*list)[i].first;
        EXPECT_LE(rel((*list)[i].second.to_vector<double>(), other[i].second.to_vector<double>()), 1e-5)
            << (*list)[i].first;
      }
    }
  }

  // model.safetensors of the sharded run, in one process (every rank alone, no communicator):
  // the same metrics as the sharded model's own evaluation (all ranks together).
  const auto test_rows = make_rows(200);
  const metrics::EvalResult together = metrics::evaluate_multi_task(*sharded, *test_rows, {.quiet = true});
  auto alone = make_model(c, nullptr);
  nn::load_checkpoint(dir / "sharded/model.safetensors", *alone);
  const metrics::EvalResult single = metrics::evaluate_multi_task(*alone, *test_rows, {.quiet = true});
  for (const std::string t : {"click", "buy"}) {
    EXPECT_NEAR(single.at(t).auc, together.at(t).auc, 1e-9) << t;
    EXPECT_NEAR(single.at(t).logloss, together.at(t).logloss, 1e-7 * together.at(t).logloss) << t;
  }

  // Resume to 3 epochs: the sharded checkpoint by replicated ranks and the replicated one by
  // sharded ranks, against the uninterrupted sharded run of 3 epochs.
  auto uninterrupted = make_model(c, world_ptr());
  {
    auto o = options(c, 3);
    o.communicator = world_ptr();
    trainer::MTLTrainer t(uninterrupted, o);
    auto l = rank_loader(rows);
    t.fit(l);
  }
  auto resume = [&](const std::string& from, bool shard) {
    auto o = options(c, 3);
    o.communicator = world_ptr();
    o.out_dir = from;
    o.resume = true;
    auto m = make_model(c, shard ? world_ptr() : nullptr);
    trainer::MTLTrainer t(m, o);
    auto l = rank_loader(rows);
    t.fit(l);
    EXPECT_EQ(t.history().size(), 3u);
    return m;
  };
  auto a = resume(dir / "sharded", false);
  expect_same_state(*a, *uninterrupted, "sharded checkpoint resumed by replicated ranks");
  auto b = resume(dir / "replicated", true);
  expect_same_state(*b, *uninterrupted, "replicated checkpoint resumed by sharded ranks");

  // One process (rank 0 alone, per-rank batch as before) resumes the sharded checkpoint, and
  // sharded ranks resume a checkpoint one process wrote.
  if (w.rank() == 0) {
    auto o = options(c, 3);
    o.out_dir = dir / "sharded";
    o.resume = true;
    trainer::MTLTrainer t(make_model(c, nullptr), o);
    data::DataLoader l(rows, {.batch_size = kB, .shuffle = false, .prefetch = 0});
    t.fit(l);
    ASSERT_EQ(t.history().size(), 3u);  // epochs 1-2 from the checkpoint, epoch 3 trained here
    auto o1 = options(c, 2);
    o1.out_dir = dir / "one";
    trainer::MTLTrainer t1(make_model(c, nullptr), o1);
    data::DataLoader l1(rows, {.batch_size = kB, .shuffle = false, .prefetch = 0});
    t1.fit(l1);
  }
  w.barrier();
  auto from_one_sharded = resume(dir / "one", true);
  auto from_one_replicated = resume(dir / "one", false);
  expect_same_state(*from_one_sharded, *from_one_replicated, "one-process checkpoint resumed sharded vs replicated");
}

// This process's virtual memory size now (bytes), from /proc/self/status.
int64_t vm_size_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stoll(line.substr(7)) * 1024;
  return -1;
}

// An MMoE whose feature has 2M rows x 16 (122 MiB of f32) under an address-space limit of 100 MiB
// beyond what each rank has mapped: one process cannot build the model; sharded over 2 ranks
// (61 MiB each) it trains with row-sparse SGD (no per-row optimizer state), writes its checkpoint
// (one file with the whole table, streamed to rank 0 in blocks) and loads it back into a fresh
// sharded model, all under the limit. After the limit is lifted, the file read whole must hold
// each rank's rows where row_shard_of says.
TEST(ShardedModelMemory, AModelWhoseTableNoSingleRankCouldHoldTrainsAndCheckpointsUnderAMemoryLimit) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' shadow memory does not live under an address-space limit";
#endif
  dist::Communicator& w = test::world();
  if (w.size() != 2) GTEST_SKIP() << "needs 2 ranks (mpirun -np 2)";
  const int64_t vocab = 2'000'000, dim = 16, budget = int64_t{100} << 20;
  data::Schema s;
  s.sparse = {{.name = "user", .vocab_size = vocab, .embed_dim = dim}};
  s.dense = {{.name = "x"}};
  s.labels = {{.task = "click", .column = "click"}, {.task = "buy", .column = "buy"}};
  const int64_t R = 64;
  auto rows = std::make_shared<data::Dataset>(s, R);
  Generator g(3);
  for (int64_t r = 0; r < R; ++r) {
    rows->sparse_data()[r] = static_cast<int64_t>(g.randint(static_cast<uint64_t>(vocab)));
    rows->dense_data()[r] = static_cast<float>(g.uniform());
    rows->label_data()[r * 2] = g.uniform() < 0.5 ? 1.f : 0.f;
    rows->label_data()[r * 2 + 1] = g.uniform() < 0.2 ? 1.f : 0.f;
  }
  auto build = [&](std::shared_ptr<dist::Communicator> shards) {
    return trainer::build_model(
        "mmoe", models::features_from_schema(s), s.task_names(), {},
        {.expert_units = {8}, .num_experts = 2, .tower_units = {4}, .embedding_shards = shards});
  };
  const SharedDir dir;  // before the limit: it broadcasts and creates the folder
  const std::string ck = dir / "big.safetensors";
  const int64_t vm = vm_size_bytes();
  ASSERT_GT(vm, 0);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = static_cast<rlim_t>(vm + budget);
  if (old.rlim_max != RLIM_INFINITY && lim.rlim_cur > old.rlim_max) lim.rlim_cur = old.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_AS, &lim), 0);
  bool whole_refused = false, trained = false, reloaded = false;
  std::shared_ptr<models::MultiTaskModel> fresh;
  auto fnv = [](const Tensor& t) {  // FNV-1a of a tensor's bytes
    uint64_t h = 1469598103934665603ull;
    const auto* p = static_cast<const unsigned char*>(t.raw_data());
    for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  };
  try {
    try {
      build(nullptr);
    } catch (const std::exception&) {
      whole_refused = true;
    }
    std::map<std::string, uint64_t> saved;
    {
      auto m = build(world_ptr());
      trainer::MTLTrainer t(m, {.optimizer_params = {.lr = 0.1, .kind = trainer::OptimizerKind::sgd},
                                .n_epochs = 2,
                                .progress = false,
                                .communicator = world_ptr(),
                                .gate_diagnostics = false});
      data::DataLoader l(data::rank_rows(rows, w.rank(), w.size()), {.batch_size = 8, .shuffle = false, .prefetch = 0});
      t.fit(l);
      trained = t.history().size() == 2 && std::isfinite(t.history()[1].train_loss[0]);
      nn::save_checkpoint(ck, *m, nullptr, {{"note", "2M rows"}},
                          {.comm = world_ptr(), .rows = m->embedding().row_shards("embedding.")});
      for (const auto& [name, p] : m->named_parameters()) saved[name] = fnv(p);
    }
    cpu_allocator_release_cache();  // the trained model's memory back to the system: room for a second one
    fresh = build(world_ptr());     // the same initial weights, not the trained ones
    nn::load_checkpoint(ck, *fresh, nullptr,
                        {.comm = world_ptr(), .rows = fresh->embedding().row_shards("embedding.")});
    reloaded = true;
    for (const auto& [name, p] : fresh->named_parameters())
      EXPECT_EQ(fnv(p), saved.at(name)) << "rank " << w.rank() << ": " << name << " differs after the reload";
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank " << w.rank() << ": " << e.what();
  }
  setrlimit(RLIMIT_AS, &old);
  EXPECT_TRUE(whole_refused) << "the whole table fit under the limit: the test shows nothing";
  EXPECT_TRUE(trained);
  EXPECT_TRUE(reloaded);
  // The file, read whole now that the limit is lifted: each rank's rows of a table are its shard.
  if (!reloaded) return;
  const auto sharded = fresh->embedding().row_shards("embedding.");
  ASSERT_FALSE(sharded.empty());
  std::map<std::string, Tensor> mine;
  for (const auto& [name, p] : fresh->named_parameters()) mine[name] = p;
  for (const auto& [name, t] : nn::read_checkpoint(ck).tensors) {
    if (!mine.count(name)) continue;  // buffers
    const Tensor expect = sharded.count(name) ? nn::row_shard_of(t, w.rank(), w.size()) : t;
    ASSERT_EQ(expect.shape(), mine[name].shape()) << name;
    EXPECT_EQ(std::memcmp(expect.raw_data(), mine[name].raw_data(), expect.nbytes()), 0) << name;
  }
}

TEST(ShardedTrainingOptions, AModelShardedOverOtherRanksIsRefused) {
  dist::Communicator& w = test::world();
  if (w.size() < 2) GTEST_SKIP() << "needs 2 ranks (mpirun -np 2)";
  auto m = make_model({"mmoe", "fixed"}, world_ptr());
  try {
    trainer::MTLTrainer t(m, options({"mmoe", "fixed"}, 1));
    ADD_FAILURE() << "a sharded model without a communicator was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sharded over 2 ranks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m->embedding().table("a"), Error);
}

}  // namespace
}  // namespace rechub
