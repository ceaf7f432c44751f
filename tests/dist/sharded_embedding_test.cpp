// A row-sharded table against the unsharded one (nn::EmbeddingCollection with the same seed), under
// mpirun: the same lookups (bit for bit) and, after lazy-Adam steps on the mean of the ranks'
// losses, the same rows (the reference runs every rank's batch in this process).
#include "rechub/nn/sharded_embedding.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/optim.h"
#include "support/dist_env.h"

namespace rechub {
namespace {

std::shared_ptr<dist::Communicator> world_ptr() {
  return std::shared_ptr<dist::Communicator>(&test::world(), [](dist::Communicator*) {});
}

// Rank q's ids and upstream gradient at step k (every rank can draw every rank's).
struct RankBatch {
  Tensor ids, weight;
};
RankBatch batch_of(int64_t q, int64_t k, int64_t rows, int64_t dim) {
  Generator g(1000 + 31 * static_cast<uint64_t>(k) + static_cast<uint64_t>(q));
  const int64_t n = 9 + 2 * q;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int64_t>(g.randint(static_cast<uint64_t>(rows))));
  ids[1] = ids[0];  // a duplicate within the batch
  return {from_vector(ids, {n}), uniform({n, dim}, -1, 1, {}, &g)};
}

TEST(ShardedEmbedding, SameLookupsAndUpdatesAsTheUnshardedTable) {
  dist::Communicator& w = test::world();
  const int64_t rows = 37, dim = 5, N = w.size(), r = w.rank(), steps = 4;
  const nn::EmbeddingOptions eo{.init_std = 0.1, .seed = 9};
  nn::EmbeddingCollection full({{.name = "t", .vocab_size = rows, .embed_dim = dim}}, eo);
  nn::ShardedEmbedding sharded(world_ptr(), rows, dim, eo);
  EXPECT_EQ(sharded.local_rows(), (rows - r + N - 1) / N);
  nn::Adam full_opt({nn::ParamGroup{.params = full.parameters(), .lr = 0.05}});
  nn::Adam shard_opt({nn::ParamGroup{.params = sharded.parameters(), .lr = 0.05}});
  for (int64_t k = 0; k < steps; ++k) {
    const RankBatch mine = batch_of(r, k, rows, dim);
    const Tensor v = sharded.forward(mine.ids);
    {
      NoGradGuard ng;
      const Tensor ref = full.forward(ops::reshape(mine.ids, {mine.ids.size(0), 1}));
      EXPECT_EQ(v.to_vector<float>(), ref.to_vector<float>()) << "lookups differ at step " << k;
    }
    // The reference: the mean over ranks of sum(lookup · weight), every rank's batch here.
    Tensor total;
    for (int64_t q = 0; q < N; ++q) {
      const RankBatch b = batch_of(q, k, rows, dim);
      Tensor l = ops::sum(ops::mul(full.forward(ops::reshape(b.ids, {b.ids.size(0), 1})), b.weight));
      total = total.defined() ? ops::add(total, l) : l;
    }
    full_opt.zero_grad();
    backward(ops::mul(total, 1.0 / static_cast<double>(N)));
    full_opt.step();
    shard_opt.zero_grad();
    backward(ops::sum(ops::mul(v, mine.weight)));
    shard_opt.step();
  }
  // Every row this rank owns equals the reference's row.
  const auto table = full.arenas()[0].to_vector<float>();
  const auto shard = sharded.shard().to_vector<float>();
  double worst = 0;
  for (int64_t i = 0; i < sharded.local_rows(); ++i)
    for (int64_t j = 0; j < dim; ++j)
      worst = std::max(worst, std::abs(static_cast<double>(shard[static_cast<size_t>(i * dim + j)]) -
                                       static_cast<double>(table[static_cast<size_t>((i * N + r) * dim + j)])));
  EXPECT_LE(worst, 1e-6);
  // The test can fail: the rows moved away from their initial values.
  nn::EmbeddingCollection fresh({{.name = "t", .vocab_size = rows, .embed_dim = dim}}, eo);
  EXPECT_NE(fresh.arenas()[0].to_vector<float>(), table);
}

TEST(ShardedEmbedding, AnIdOutsideTheTableIsAnErrorOnEveryRank) {
  nn::ShardedEmbedding t(world_ptr(), 10, 2);
  EXPECT_THROW(t.forward(from_vector(std::vector<int64_t>{3, 10}, {2})), Error);
}

// This process's virtual memory size now (bytes), from /proc/self/status.
int64_t vm_size_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stoll(line.substr(7)) * 1024;
  return -1;
}

// Under an address-space limit (RLIMIT_AS, what `ulimit -v` sets) that leaves each rank 100 MiB
// beyond what it has mapped, a 2M x 16 float table (122 MiB) cannot be allocated by one process,
// and the same table sharded over 2 ranks (61 MiB each) looks up and trains.
TEST(ShardedEmbedding, TrainsATableNoSingleRankCouldHoldUnderAMemoryLimit) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' shadow memory does not live under an address-space limit";
#endif
  dist::Communicator& w = test::world();
  if (w.size() < 2) GTEST_SKIP() << "needs 2 ranks (mpirun -np 2)";
  const int64_t rows = 2'000'000, dim = 16, budget = int64_t{100} << 20;
  ASSERT_GT(rows * dim * 4, budget);
  ASSERT_LT((rows / w.size() + 1) * dim * 4, budget * 3 / 4);
  const int64_t vm = vm_size_bytes();
  ASSERT_GT(vm, 0);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = static_cast<rlim_t>(vm + budget);
  if (old.rlim_max != RLIM_INFINITY && lim.rlim_cur > old.rlim_max) lim.rlim_cur = old.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_AS, &lim), 0);
  bool whole_table_refused = false, trained = false;
  double moved = 0;
  try {
    try {
      Tensor whole = empty({rows, dim});
    } catch (const std::exception&) {
      whole_table_refused = true;
    }
    nn::ShardedEmbedding t(world_ptr(), rows, dim, {.init_std = 0.1, .seed = 5});
    nn::SGD opt({nn::ParamGroup{.params = t.parameters(), .lr = 0.5}});
    const Tensor ids = from_vector(std::vector<int64_t>{0, 1, rows - 1, 12345 + w.rank()}, {4});
    const auto before = t.forward(ids).to_vector<float>();
    for (int k = 0; k < 2; ++k) {
      opt.zero_grad();
      backward(ops::sum(ops::mul(t.forward(ids), t.forward(ids))));
      opt.step();
    }
    const auto after = t.forward(ids).to_vector<float>();
    for (size_t i = 0; i < before.size(); ++i) moved = std::max(moved, std::abs(double(after[i]) - double(before[i])));
    trained = true;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank " << w.rank() << ": " << e.what();
  }
  setrlimit(RLIMIT_AS, &old);
  EXPECT_TRUE(whole_table_refused) << "the whole table fit under the limit: the test shows nothing";
  EXPECT_TRUE(trained);
  EXPECT_GT(moved, 1e-3);
}

}  // namespace
}  // namespace rechub
