// A row-sharded table against the unsharded one (nn::EmbeddingCollection with the same seed), under
// mpirun: the same lookups (bit for bit) and, after lazy-Adam steps on the mean of the ranks'
// losses, the same rows (the reference runs every rank's batch in this process).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "nn/embedding.h"
#include "nn/optim.h"
#include "nn/sharded_embedding.h"
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

}  // namespace
}  // namespace rechub
