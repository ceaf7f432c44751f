#include "rechub/mtl/data/split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "rechub/core/error.h"
#include "rechub/core/rng.h"

namespace rechub::data {

SplitRows split_rows(int64_t rows, double val_fraction, double test_fraction, uint64_t seed) {
  if (rows < 0) throw Error("split_rows: negative row count");
  if (!(val_fraction >= 0) || !(test_fraction >= 0) || val_fraction + test_fraction >= 1.0)
    throw Error("split_rows: fractions must be >= 0 and leave rows for training (val " + std::to_string(val_fraction) +
                ", test " + std::to_string(test_fraction) + ")");
  std::vector<int64_t> perm(static_cast<size_t>(rows));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  Generator g(seed);
  for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[g.randint(i)]);
  const auto nv = static_cast<size_t>(std::llround(static_cast<double>(rows) * val_fraction));
  const auto nt = static_cast<size_t>(std::llround(static_cast<double>(rows) * test_fraction));
  SplitRows s;
  s.val.assign(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(nv));
  s.test.assign(perm.begin() + static_cast<std::ptrdiff_t>(nv), perm.begin() + static_cast<std::ptrdiff_t>(nv + nt));
  s.train.assign(perm.begin() + static_cast<std::ptrdiff_t>(nv + nt), perm.end());
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

}  // namespace rechub::data
