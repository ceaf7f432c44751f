#pragma once
// RowRange: rows [begin, begin + n) of another source, as a source of its own (no copy). A rank of
// a data-parallel run trains on rank_rows(source, rank, world): the rows split into `world`
// contiguous ranges whose sizes differ by at most one, rank r taking range r.
#include <cstdint>
#include <memory>

#include "rechub/mtl/data/dataset.h"

namespace rechub::data {

class RowRange final : public BatchSource {
 public:
  // Throws rechub::Error when the range is not inside the source.
  RowRange(std::shared_ptr<const BatchSource> source, int64_t begin, int64_t n);
  int64_t rows() const override { return n_; }
  const Schema& schema() const override { return source_->schema(); }
  void gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const override;
  void copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const override;
  void will_need(int64_t begin, int64_t n) const override { source_->will_need(begin + begin_, n); }
  int64_t begin() const { return begin_; }

 private:
  std::shared_ptr<const BatchSource> source_;
  int64_t begin_, n_;
};

// Rank `rank` of `world`'s contiguous share: rows [rank·R/world, (rank+1)·R/world) of R.
std::shared_ptr<const RowRange> rank_rows(std::shared_ptr<const BatchSource> source, int rank, int world);

}  // namespace rechub::data
