#include "rechub/mtl/data/dataset.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "rechub/core/error.h"

namespace rechub::data {

void BatchSource::copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), begin);
  gather(idx.data(), n, sparse, dense, labels);
}

Batch BatchSource::make_batch(const int64_t* rows, int64_t n, int64_t first_row) const {
  Batch b;
  b.sparse = empty({n, num_sparse()}, {.dtype = DType::i64});
  b.dense = empty({n, num_dense()}, {.dtype = DType::f32});
  b.labels = empty({n, num_tasks()}, {.dtype = DType::f32});
  gather(rows, n, static_cast<int64_t*>(b.sparse.raw_data()), static_cast<float*>(b.dense.raw_data()),
         static_cast<float*>(b.labels.raw_data()));
  b.first_row = first_row;
  return b;
}

Batch BatchSource::range_batch(int64_t begin, int64_t end) const {
  if (begin < 0 || end < begin || end > rows())
    throw Error("batch rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") are outside [0, " +
                std::to_string(rows()) + ")");
  const int64_t n = end - begin;
  Batch b;
  b.sparse = empty({n, num_sparse()}, {.dtype = DType::i64});
  b.dense = empty({n, num_dense()}, {.dtype = DType::f32});
  b.labels = empty({n, num_tasks()}, {.dtype = DType::f32});
  copy_range(begin, n, static_cast<int64_t*>(b.sparse.raw_data()), static_cast<float*>(b.dense.raw_data()),
             static_cast<float*>(b.labels.raw_data()));
  b.first_row = begin;
  return b;
}

Dataset::Dataset(Schema schema, int64_t rows) : schema_(std::move(schema)), rows_(rows) {
  if (rows < 0) throw Error("Dataset: negative row count");
  sparse_.assign(static_cast<size_t>(rows * num_sparse()), 0);
  dense_.assign(static_cast<size_t>(rows * num_dense()), 0.0f);
  labels_.assign(static_cast<size_t>(rows * num_tasks()), 0.0f);
}

void Dataset::gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const {
  const auto ns = static_cast<size_t>(num_sparse()), nd = static_cast<size_t>(num_dense()),
             nt = static_cast<size_t>(num_tasks());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rows[i];
    if (r < 0 || r >= rows_)
      throw Error("Dataset: row " + std::to_string(r) + " is out of range (" + std::to_string(rows_) + " rows)");
    const auto ru = static_cast<size_t>(r), iu = static_cast<size_t>(i);
    if (ns) std::memcpy(sparse + iu * ns, sparse_.data() + ru * ns, ns * sizeof(int64_t));
    if (nd) std::memcpy(dense + iu * nd, dense_.data() + ru * nd, nd * sizeof(float));
    if (nt) std::memcpy(labels + iu * nt, labels_.data() + ru * nt, nt * sizeof(float));
  }
}

void Dataset::copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const {
  if (begin < 0 || n < 0 || begin + n > rows_)
    throw Error("Dataset: rows [" + std::to_string(begin) + ", " + std::to_string(begin + n) + ") are outside [0, " +
                std::to_string(rows_) + ")");
  const auto ns = static_cast<size_t>(num_sparse()), nd = static_cast<size_t>(num_dense()),
             nt = static_cast<size_t>(num_tasks());
  const auto b = static_cast<size_t>(begin), m = static_cast<size_t>(n);
  if (ns && m) std::memcpy(sparse, sparse_.data() + b * ns, m * ns * sizeof(int64_t));
  if (nd && m) std::memcpy(dense, dense_.data() + b * nd, m * nd * sizeof(float));
  if (nt && m) std::memcpy(labels, labels_.data() + b * nt, m * nt * sizeof(float));
}

std::vector<int64_t> Dataset::sparse_column(int64_t j) const {
  if (j < 0 || j >= num_sparse()) throw Error("Dataset: no sparse column " + std::to_string(j));
  std::vector<int64_t> out(static_cast<size_t>(rows_));
  for (int64_t r = 0; r < rows_; ++r) out[static_cast<size_t>(r)] = sparse_[static_cast<size_t>(r * num_sparse() + j)];
  return out;
}

std::vector<float> Dataset::dense_column(int64_t j) const {
  if (j < 0 || j >= num_dense()) throw Error("Dataset: no dense column " + std::to_string(j));
  std::vector<float> out(static_cast<size_t>(rows_));
  for (int64_t r = 0; r < rows_; ++r) out[static_cast<size_t>(r)] = dense_[static_cast<size_t>(r * num_dense() + j)];
  return out;
}

std::vector<float> Dataset::label_column(int64_t t) const {
  if (t < 0 || t >= num_tasks()) throw Error("Dataset: no label column " + std::to_string(t));
  std::vector<float> out(static_cast<size_t>(rows_));
  for (int64_t r = 0; r < rows_; ++r) out[static_cast<size_t>(r)] = labels_[static_cast<size_t>(r * num_tasks() + t)];
  return out;
}

Dataset Dataset::subset(const std::vector<int64_t>& rows) const {
  Dataset d(schema_, static_cast<int64_t>(rows.size()));
  gather(rows.data(), static_cast<int64_t>(rows.size()), d.sparse_.data(), d.dense_.data(), d.labels_.data());
  return d;
}

Dataset materialize(const BatchSource& source) {
  const int64_t n = source.rows(), S = source.num_sparse(), D = source.num_dense(), T = source.num_tasks();
  Dataset d(source.schema(), n);
  constexpr int64_t kPiece = 65536;
  for (int64_t b = 0; b < n; b += kPiece) {
    const int64_t m = std::min(kPiece, n - b), next = b + m;
    if (next < n) source.will_need(next, std::min(kPiece, n - next));  // read ahead of the copy
    source.copy_range(b, m, d.sparse_data() + b * S, d.dense_data() + b * D, d.label_data() + b * T);
  }
  return d;
}

}  // namespace rechub::data
