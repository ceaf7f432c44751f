#pragma once
// Train/validation/test split of one file's rows by seeded fractions (when the data does not come
// as separate files).
#include <cstdint>
#include <vector>

namespace rechub::data {

struct SplitRows {
  std::vector<int64_t> train{};
  std::vector<int64_t> val{};
  std::vector<int64_t> test{};
};

// round(rows * val_fraction) rows for validation and round(rows * test_fraction) for test, drawn
// by a seeded permutation; the rest train. Each split lists its rows in increasing order.
SplitRows split_rows(int64_t rows, double val_fraction, double test_fraction, uint64_t seed);

}  // namespace rechub::data
