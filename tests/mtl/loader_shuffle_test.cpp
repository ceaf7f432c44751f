// The loader's shuffle is a uniformly random permutation, not just a reordering that moves the
// first row: a rotation, a reversal, a block swap or an order shared by every epoch would pass a
// test that looks at position 0 only. The batches served are exactly the epoch's order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "rechub/mtl/data/loader.h"

namespace rechub::data {
namespace {

// Row r holds id r, so every row of a batch says where it came from.
std::shared_ptr<const Dataset> numbered(int64_t n) {
  const Schema schema{
      .sparse = {{.name = "id", .vocab_size = 1 << 30}}, .dense = {}, .labels = {{.task = "y", .column = "y"}}};
  auto d = std::make_shared<Dataset>(schema, n);
  for (int64_t r = 0; r < n; ++r) {
    d->sparse_data()[r] = r;
    d->label_data()[r] = 0;
  }
  return d;
}

std::vector<int64_t> served(DataLoader& l, int64_t epoch) {
  l.set_epoch(epoch);
  std::vector<int64_t> rows;
  while (auto b = l.next()) {
    const auto ids = b->sparse.to_vector<int64_t>();
    rows.insert(rows.end(), ids.begin(), ids.end());
  }
  return rows;
}

TEST(LoaderShuffle, EachEpochServesARandomPermutation) {
  const int64_t n = 1000;
  DataLoader l(numbered(n), {.batch_size = 96, .seed = 5, .prefetch = 0});
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 4; ++e) {
    SCOPED_TRACE("epoch " + std::to_string(e));
    const auto rows = served(l, e);
    EXPECT_EQ(rows, l.order(e)) << "the batches are not the epoch's order";
    std::vector<int64_t> sorted = rows;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(static_cast<size_t>(n));
    std::iota(identity.begin(), identity.end(), 0);
    ASSERT_EQ(sorted, identity) << "not a permutation of the rows";
    // A uniform permutation of 1000 has 1 fixed point on average (P(>= 8) < 1e-5), (n - 1) / 2
    // ascents with standard deviation sqrt((n + 1) / 12) ~ 9.1, and successive elements whose
    // difference is +-1 about twice in all; a rotation, a reversal or blocks of runs are far off.
    int64_t fixed = 0, ascents = 0, neighbours = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = rows[static_cast<size_t>(i)];
      fixed += r == i;
      if (i + 1 < n) {
        const int64_t next = rows[static_cast<size_t>(i + 1)];
        ascents += next > r;
        neighbours += std::abs(next - r) == 1;
      }
    }
    EXPECT_LT(fixed, 8);
    EXPECT_NEAR(static_cast<double>(ascents), (n - 1) / 2.0, 50.0);
    EXPECT_LT(neighbours, 12);
    epochs.push_back(rows);
  }
  // Epochs are independent: two uniform permutations agree on about one position.
  for (size_t a = 0; a < epochs.size(); ++a)
    for (size_t b = a + 1; b < epochs.size(); ++b) {
      int64_t same = 0;
      for (int64_t i = 0; i < n; ++i) same += epochs[a][static_cast<size_t>(i)] == epochs[b][static_cast<size_t>(i)];
      EXPECT_LT(same, 8) << "epochs " << a << " and " << b;
    }
}

TEST(LoaderShuffle, EveryRowReachesEveryPositionAndPairsAreUniform) {
  // n = 6 over 6000 epochs: row r at position k about 1000 times for every (r, k) (sd ~ 29), and the
  // pair at positions (0, 1) takes each of the 30 ordered pairs about 200 times (sd ~ 14). A random
  // rotation passes the first check and fails the second.
  const int64_t n = 6, epochs = 6000;
  DataLoader l(numbered(n), {.batch_size = n, .seed = 11, .prefetch = 0});
  std::vector<int> at(static_cast<size_t>(n * n), 0), pair(static_cast<size_t>(n * n), 0);
  for (int64_t e = 0; e < epochs; ++e) {
    const auto o = l.order(e);
    for (int64_t k = 0; k < n; ++k) ++at[static_cast<size_t>(o[static_cast<size_t>(k)] * n + k)];
    ++pair[static_cast<size_t>(o[0] * n + o[1])];
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < n; ++k)
      EXPECT_NEAR(at[static_cast<size_t>(r * n + k)], 1000, 150) << "row " << r << " at " << k;
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) {
      if (a == b) {
        EXPECT_EQ(pair[static_cast<size_t>(a * n + b)], 0);
      } else {
        EXPECT_NEAR(pair[static_cast<size_t>(a * n + b)], 200, 75) << "rows " << a << ", " << b << " first";
      }
    }
}

}  // namespace
}  // namespace rechub::data
