#include "rechub/mtl/data/row_range.h"

#include <vector>

#include "rechub/core/error.h"

namespace rechub::data {

RowRange::RowRange(std::shared_ptr<const BatchSource> source, int64_t begin, int64_t n)
    : source_(std::move(source)), begin_(begin), n_(n) {
  RECHUB_CHECK(source_ != nullptr, "RowRange: no source");
  RECHUB_CHECK(begin_ >= 0 && n_ >= 0 && begin_ + n_ <= source_->rows(),
               "RowRange: rows [" << begin_ << ", " << begin_ + n_ << ") are outside the source's " << source_->rows()
                                  << " rows");
}

void RowRange::gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const {
  std::vector<int64_t> shifted(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    RECHUB_CHECK(rows[i] >= 0 && rows[i] < n_, "RowRange: row " << rows[i] << " out of range (" << n_ << " rows)");
    shifted[static_cast<size_t>(i)] = rows[i] + begin_;
  }
  source_->gather(shifted.data(), n, sparse, dense, labels);
}

void RowRange::copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const {
  RECHUB_CHECK(begin >= 0 && n >= 0 && begin + n <= n_,
               "RowRange: rows [" << begin << ", " << begin + n << ") out of range (" << n_ << " rows)");
  source_->copy_range(begin + begin_, n, sparse, dense, labels);
}

std::shared_ptr<const RowRange> rank_rows(std::shared_ptr<const BatchSource> source, int rank, int world) {
  RECHUB_CHECK(world >= 1 && rank >= 0 && rank < world, "rank_rows: rank " << rank << " of " << world);
  const int64_t R = source->rows();
  const int64_t b = R * rank / world, e = R * (rank + 1) / world;
  return std::make_shared<RowRange>(std::move(source), b, e - b);
}

}  // namespace rechub::data
