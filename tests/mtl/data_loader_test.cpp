// DataLoader: every row exactly once per epoch, seeded shuffling, resuming mid-epoch, the
// background thread (errors reach the consumer, shutdown is clean), and seeded splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "rechub/core/error.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/split.h"

namespace rechub::data {
namespace {

Schema schema() {
  return {.sparse = {{.name = "id", .vocab_size = 1 << 30}, {.name = "twice", .vocab_size = 1 << 30}},
          .dense = {{.name = "x"}},
          .labels = {{.task = "y", .column = "y"}}};
}

// Row r holds id r, 2r, x = r / 2, y = r % 2: every cell tells which row it came from.
std::shared_ptr<const Dataset> numbered(int64_t n) {
  auto d = std::make_shared<Dataset>(schema(), n);
  for (int64_t r = 0; r < n; ++r) {
    d->sparse_data()[r * 2] = r;
    d->sparse_data()[r * 2 + 1] = 2 * r;
    d->dense_data()[r] = static_cast<float>(r) / 2;
    d->label_data()[r] = static_cast<float>(r % 2);
  }
  return d;
}

std::vector<int64_t> ids_of(const Batch& b) {
  const auto s = b.sparse.to_vector<int64_t>();
  const auto x = b.dense.to_vector<float>();
  const auto y = b.labels.to_vector<float>();
  std::vector<int64_t> out;
  for (int64_t i = 0; i < b.size(); ++i) {
    const int64_t r = s[static_cast<size_t>(2 * i)];
    EXPECT_EQ(s[static_cast<size_t>(2 * i + 1)], 2 * r);
    EXPECT_EQ(x[static_cast<size_t>(i)], static_cast<float>(r) / 2);
    EXPECT_EQ(y[static_cast<size_t>(i)], static_cast<float>(r % 2));
    out.push_back(r);
  }
  return out;
}

std::vector<std::vector<int64_t>> epoch_batches(DataLoader& l) {
  std::vector<std::vector<int64_t>> out;
  while (auto b = l.next()) out.push_back(ids_of(*b));
  return out;
}

TEST(DataLoader, CoversEveryRowExactlyOncePerEpoch) {
  for (int64_t n : {1, 7, 64, 1000, 1001, 4099}) {
    for (int64_t bs : {1, 3, 64, 1000, 5000}) {
      for (bool shuffle : {false, true}) {
        for (bool drop_last : {false, true}) {
          DataLoader l(numbered(n), {.batch_size = bs, .shuffle = shuffle, .seed = 3, .drop_last = drop_last});
          const auto batches = epoch_batches(l);
          const int64_t full = n / bs, rest = n % bs;
          ASSERT_EQ(static_cast<int64_t>(batches.size()), l.num_batches());
          ASSERT_EQ(l.num_batches(), full + (!drop_last && rest ? 1 : 0)) << n << " " << bs;
          std::vector<int64_t> seen;
          for (size_t k = 0; k < batches.size(); ++k) {
            const bool last_partial = !drop_last && rest && k + 1 == batches.size();
            EXPECT_EQ(static_cast<int64_t>(batches[k].size()), last_partial ? rest : bs);
            seen.insert(seen.end(), batches[k].begin(), batches[k].end());
          }
          std::sort(seen.begin(), seen.end());
          EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end()) == seen.end()) << "a row came twice";
          EXPECT_EQ(static_cast<int64_t>(seen.size()), drop_last ? full * bs : n);
          if (!shuffle) {
            for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i));
          }
        }
      }
    }
  }
}

TEST(DataLoader, UnshuffledBatchesAreConsecutiveRowsWithTheirFirstRow) {
  DataLoader l(numbered(10), {.batch_size = 4, .shuffle = false});
  std::vector<int64_t> firsts;
  while (auto b = l.next()) {
    firsts.push_back(b->first_row);
    EXPECT_EQ(ids_of(*b)[0], b->first_row);
  }
  EXPECT_EQ(firsts, (std::vector<int64_t>{0, 4, 8}));
}

TEST(DataLoader, ShufflingIsReproducibleFromTheSeed) {
  auto data = numbered(500);
  DataLoader a(data, {.batch_size = 64, .seed = 42});
  DataLoader b(data, {.batch_size = 64, .seed = 42, .prefetch = 0});
  DataLoader c(data, {.batch_size = 64, .seed = 43});
  for (int64_t e = 0; e < 3; ++e) {
    a.set_epoch(e);
    b.set_epoch(e);
    c.set_epoch(e);
    const auto ea = epoch_batches(a), eb = epoch_batches(b), ec = epoch_batches(c);
    EXPECT_EQ(ea, eb) << "same seed, same order, with or without the background thread";
    EXPECT_NE(ea, ec) << "another seed, another order";
  }
  EXPECT_NE(a.order(0), a.order(1)) << "each epoch has its own order";
  auto p = a.order(5);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(500);
  std::iota(iota.begin(), iota.end(), int64_t(0));
  EXPECT_EQ(sorted, iota) << "the order is a permutation";
  EXPECT_NE(p, iota);
}

TEST(DataLoader, ShuffledOrderIsUniformEnough) {
  // Over many epochs every row visits the first position about equally often.
  DataLoader l(numbered(8), {.batch_size = 8, .seed = 1});
  std::vector<int> first(8, 0);
  for (int64_t e = 0; e < 4000; ++e) ++first[static_cast<size_t>(l.order(e)[0])];
  for (int c : first) EXPECT_NEAR(c, 500, 100);
}

TEST(DataLoader, ResumeFromSavedStateGivesTheSameRemainingBatches) {
  auto data = numbered(1003);
  DataLoader full(data, {.batch_size = 50, .seed = 9, .drop_last = false});
  full.set_epoch(2);
  const auto all = epoch_batches(full);

  DataLoader first(data, {.batch_size = 50, .seed = 9});
  first.set_epoch(2);
  for (int k = 0; k < 7; ++k) ASSERT_TRUE(first.next());
  const LoaderState saved = first.state();
  EXPECT_EQ(saved, (LoaderState{2, 7}));
  EXPECT_EQ(LoaderState::from_json(saved.to_json()), saved);

  DataLoader resumed(data, {.batch_size = 50, .seed = 9});
  resumed.restore(saved);
  const auto rest = epoch_batches(resumed);
  ASSERT_EQ(rest.size(), all.size() - 7);
  for (size_t k = 0; k < rest.size(); ++k) EXPECT_EQ(rest[k], all[k + 7]);
  EXPECT_EQ(resumed.state(), (LoaderState{2, static_cast<int64_t>(all.size())}));
  EXPECT_FALSE(resumed.next().has_value());
  EXPECT_THROW(resumed.restore({0, 1000}), Error);
}

TEST(DataLoader, LazyShuffleServesTheEpochOrderHoweverItIsAsked) {
  // The shuffle advances only as far as the batches served need: in sequence, epochs out of
  // order, with or without the thread, the batches are slices of order(epoch).
  auto data = numbered(3000);
  DataLoader seq(data, {.batch_size = 128, .seed = 5});
  std::vector<std::vector<std::vector<int64_t>>> by_epoch;
  for (int64_t e = 0; e < 4; ++e) {
    seq.set_epoch(e);
    by_epoch.push_back(epoch_batches(seq));
  }
  DataLoader jumpy(data, {.batch_size = 128, .seed = 5, .prefetch = 0});
  for (int64_t e : {3, 1, 2, 0}) {
    jumpy.set_epoch(e);
    EXPECT_EQ(epoch_batches(jumpy), by_epoch[static_cast<size_t>(e)]) << "epoch " << e;
    const auto o = seq.order(e);
    std::vector<int64_t> served;
    for (const auto& b : by_epoch[static_cast<size_t>(e)]) served.insert(served.end(), b.begin(), b.end());
    EXPECT_EQ(served, o);
  }
}

TEST(DataLoader, RangeForAndSetEpochRestart) {
  DataLoader l(numbered(10), {.batch_size = 3, .seed = 2});
  int count = 0;
  for (Batch& b : l) count += static_cast<int>(b.size());
  EXPECT_EQ(count, 10);
  EXPECT_FALSE(l.next().has_value()) << "an epoch ends until set_epoch";
  l.set_epoch(1);
  count = 0;
  for (Batch& b : l) count += static_cast<int>(b.size());
  EXPECT_EQ(count, 10);
}

// A source that fails on one row: the consumer sees the error, the thread shuts down cleanly.
class Failing final : public BatchSource {
 public:
  explicit Failing(std::shared_ptr<const Dataset> d, int64_t bad) : d_(std::move(d)), bad_(bad) {}
  int64_t rows() const override { return d_->rows(); }
  const Schema& schema() const override { return d_->schema(); }
  void gather(const int64_t* rows, int64_t n, int64_t* s, float* x, float* y) const override {
    for (int64_t i = 0; i < n; ++i)
      if (rows[i] == bad_) throw Error("row " + std::to_string(bad_) + " is damaged");
    d_->gather(rows, n, s, x, y);
  }

 private:
  std::shared_ptr<const Dataset> d_;
  int64_t bad_;
};

TEST(DataLoader, ExceptionsInTheBackgroundThreadReachTheConsumer) {
  auto src = std::make_shared<Failing>(numbered(100), 55);
  DataLoader l(src, {.batch_size = 10, .shuffle = false, .prefetch = 3});
  int good = 0;
  try {
    while (l.next()) ++good;
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 55 is damaged"), std::string::npos);
  }
  EXPECT_EQ(good, 5);
  EXPECT_EQ(l.state(), (LoaderState{0, 5}));
}

TEST(DataLoader, DestroyedMidEpochWithAFullQueue) {
  for (int k = 0; k < 20; ++k) {
    DataLoader l(numbered(10000), {.batch_size = 16, .prefetch = 4});
    ASSERT_TRUE(l.next());
  }
}

TEST(DataLoader, RefusesBadOptions) {
  EXPECT_THROW(DataLoader(numbered(3), {.batch_size = -1}), Error);
  EXPECT_THROW(DataLoader(nullptr, {}), Error);
}

// batch_size 0 (the default): 1024 rows per batch from 204,800 training rows (200 steps of 1024),
// 512 from 102,400, else 256.
TEST(DataLoader, TheDefaultBatchGivesAtLeast200StepsPerEpochBetween256And1024) {
  for (const int64_t rows : {int64_t(1), int64_t(3), int64_t(50000), int64_t(102399), int64_t(102400), int64_t(204799),
                             int64_t(204800), int64_t(10000000)}) {
    const int64_t want = rows >= 204800 ? 1024 : rows >= 102400 ? 512 : 256;
    EXPECT_EQ(defaults::batch_size_for(rows), want) << rows << " rows";
  }
  DataLoader small(numbered(300), {});
  EXPECT_EQ(small.options().batch_size, 256);
  EXPECT_EQ(small.num_batches(), 2);
  DataLoader given(numbered(300), {.batch_size = 7});
  EXPECT_EQ(given.options().batch_size, 7);
}

TEST(Dataset, BatchesSubsetsAndColumns) {
  auto d = numbered(10);
  const Batch b = d->batch(3, 6);
  EXPECT_EQ(b.sparse.shape(), (Shape{3, 2}));
  EXPECT_EQ(b.dense.shape(), (Shape{3, 1}));
  EXPECT_EQ(b.labels.shape(), (Shape{3, 1}));
  EXPECT_EQ(b.first_row, 3);
  EXPECT_EQ(ids_of(b), (std::vector<int64_t>{3, 4, 5}));
  const Dataset s = d->subset({9, 0, 4});
  EXPECT_EQ(s.sparse_column(0), (std::vector<int64_t>{9, 0, 4}));
  EXPECT_EQ(s.label_column(0), (std::vector<float>{1, 0, 0}));
  EXPECT_THROW(d->batch(5, 11), Error);
  const Dataset none(Schema{.sparse = {{.name = "a"}}}, 4);
  EXPECT_EQ(none.batch(0, 4).dense.shape(), (Shape{4, 0}));
}

TEST(Split, SeededFractionsPartitionTheRows) {
  const SplitRows s = split_rows(1000, 0.1, 0.2, 7);
  EXPECT_EQ(s.val.size(), 100u);
  EXPECT_EQ(s.test.size(), 200u);
  EXPECT_EQ(s.train.size(), 700u);
  std::set<int64_t> all(s.train.begin(), s.train.end());
  all.insert(s.val.begin(), s.val.end());
  all.insert(s.test.begin(), s.test.end());
  EXPECT_EQ(all.size(), 1000u);
  EXPECT_TRUE(std::is_sorted(s.val.begin(), s.val.end()));
  EXPECT_EQ(split_rows(1000, 0.1, 0.2, 7).val, s.val);
  EXPECT_NE(split_rows(1000, 0.1, 0.2, 8).val, s.val);
  EXPECT_THROW(split_rows(10, 0.5, 0.5, 1), Error);
}

}  // namespace
}  // namespace rechub::data
