#pragma once
// Batches and the sources they are cut from.
//
// BatchSource: anything that can write chosen rows as model inputs: ids, dense values, labels.
// Dataset is the in-memory one (what Preprocessor::transform returns, what the evaluator walks in
// order); Preprocessor::stream gives one that reads a cache file in pieces (the streaming training
// path, for data larger than memory), Preprocessor::view one that encodes a ColumnTable (e.g. a
// memory-mapped cache) row by row.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/tensor.h"
#include "rechub/mtl/data/big_buffer.h"
#include "rechub/mtl/data/schema.h"

namespace rechub::data {

struct Batch {
  Tensor sparse;          // [B, n_sparse] i64: ids per sparse feature (schema order)
  Tensor dense;           // [B, n_dense] f32, may be [B, 0]
  Tensor labels;          // [B, n_tasks] f32 (0/1 for binary tasks), may be [B, 0] (prediction input)
  int64_t first_row = 0;  // where the batch starts in its epoch's order (a row index when not shuffled)
  int64_t size() const { return sparse.defined() ? sparse.size(0) : 0; }
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t rows() const = 0;
  // The fitted schema: sparse/dense order of the columns of a batch, vocab sizes, tasks.
  virtual const Schema& schema() const = 0;
  // Writes rows[i] as row i of the three row-major outputs (n_sparse, n_dense, n_tasks wide).
  // Throws rechub::Error on a row out of range.
  virtual void gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const = 0;
  // Rows [begin, begin + n) in order; sources override it when they have a faster path.
  virtual void copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const;
  // A hint that rows [begin, begin + n) are asked for soon (a file-backed source starts reading
  // them ahead); no effect on what any call returns.
  virtual void will_need(int64_t begin, int64_t n) const {
    (void)begin;
    (void)n;
  }

  int64_t num_sparse() const { return static_cast<int64_t>(schema().sparse.size()); }
  int64_t num_dense() const { return static_cast<int64_t>(schema().dense.size()); }
  int64_t num_tasks() const { return static_cast<int64_t>(schema().labels.size()); }

  // A batch of the given rows (fresh tensors).
  Batch make_batch(const int64_t* rows, int64_t n, int64_t first_row = 0) const;
  // Rows [begin, end).
  Batch range_batch(int64_t begin, int64_t end) const;
};

// Encoded rows in memory: three row-major arrays (ids, dense values, labels), so that a batch of
// consecutive rows is one copy per array and a shuffled batch one short copy per row.
class Dataset final : public BatchSource {
 public:
  Dataset() = default;
  // `rows` zeroed rows shaped by the fitted schema.
  Dataset(Schema schema, int64_t rows);

  int64_t rows() const override { return rows_; }
  const Schema& schema() const override { return schema_; }
  void gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const override;
  void copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const override;

  int64_t* sparse_data() { return sparse_.data(); }
  float* dense_data() { return dense_.data(); }
  float* label_data() { return labels_.data(); }
  const int64_t* sparse_data() const { return sparse_.data(); }
  const float* dense_data() const { return dense_.data(); }
  const float* label_data() const { return labels_.data(); }

  // One column, by position in the schema's sparse / dense / labels list.
  std::vector<int64_t> sparse_column(int64_t j) const;
  std::vector<float> dense_column(int64_t j) const;
  std::vector<float> label_column(int64_t t) const;

  // Rows [begin, end) as a batch (the evaluator's in-order walk).
  Batch batch(int64_t begin, int64_t end) const { return range_batch(begin, end); }
  // The given rows, in that order, as a new dataset.
  Dataset subset(const std::vector<int64_t>& rows) const;

 private:
  Schema schema_;
  int64_t rows_ = 0;
  BigVector<int64_t> sparse_;
  BigVector<float> dense_;
  BigVector<float> labels_;
};

// Every row of `source`, in order, copied into memory: e.g. a rank's share of a cache file
// (rank_rows of Preprocessor::stream), read in pieces of 65536 rows.
Dataset materialize(const BatchSource& source);

}  // namespace rechub::data
