#include "rechub/nn/sharded_embedding.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/optim.h"

namespace rechub::nn {

namespace {
thread_local double t_exchange_seconds = 0;
struct Timed {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~Timed() { t_exchange_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};
}  // namespace

double sharded_lookup_seconds() { return t_exchange_seconds; }

int64_t row_shard_rows(int64_t rows, int rank, int world) {
  return rows > rank ? (rows - rank + world - 1) / world : 0;
}

Tensor sharded_lookup(const std::shared_ptr<dist::Communicator>& comm_ptr, const Tensor& shard, int64_t rows,
                      const int64_t* ids, int64_t n, const std::string& who) {
  dist::Communicator& comm = *comm_ptr;
  const int64_t N = comm.size(), D = shard.size(1);
  RECHUB_CHECK(shard.dtype() == DType::f32 && shard.device().is_cpu() && shard.dim() == 2,
               who << ": a sharded table is f32 [rows, dim] on the CPU");
  auto owner = [N](int64_t row) { return static_cast<size_t>(row % N); };
  // Group the positions by owner (stable), remembering where each came from.
  std::vector<int64_t> send_counts(static_cast<size_t>(N), 0);
  for (int64_t i = 0; i < n; ++i) {
    RECHUB_CHECK(ids[i] >= 0 && ids[i] < rows,
                 who << ": id " << ids[i] << " at position " << i << " is outside the table's " << rows << " rows");
    ++send_counts[owner(ids[i])];
  }
  std::vector<int64_t> start(static_cast<size_t>(N), 0);
  for (size_t q = 1; q < static_cast<size_t>(N); ++q) start[q] = start[q - 1] + send_counts[q - 1];
  auto route = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(n));  // grouped slot -> position
  std::vector<int64_t> send_ids(static_cast<size_t>(n));
  {
    std::vector<int64_t> at = start;
    for (int64_t i = 0; i < n; ++i) {
      const size_t slot = static_cast<size_t>(at[owner(ids[i])]++);
      (*route)[slot] = i;
      send_ids[slot] = ids[i];
    }
  }
  auto recv_counts = std::make_shared<std::vector<int64_t>>();
  std::shared_ptr<std::vector<int64_t>> recv_ids;
  {
    const Timed timed;
    recv_ids = std::make_shared<std::vector<int64_t>>(comm.alltoallv(send_ids, send_counts, recv_counts.get()));
  }
  // Look up the rows asked of this rank and send them back.
  const float* sh = shard.data<float>();
  const int64_t local_rows = shard.size(0);
  std::vector<float> rows_out(recv_ids->size() * static_cast<size_t>(D));
  for (size_t k = 0; k < recv_ids->size(); ++k) {
    const int64_t local = (*recv_ids)[k] / N;
    RECHUB_CHECK(local < local_rows, who << ": row " << (*recv_ids)[k] << " is not in this rank's shard");
    std::memcpy(rows_out.data() + k * static_cast<size_t>(D), sh + local * D, static_cast<size_t>(D) * sizeof(float));
  }
  std::vector<int64_t> back_counts(static_cast<size_t>(N)), want_counts(static_cast<size_t>(N));
  for (size_t q = 0; q < static_cast<size_t>(N); ++q) {
    back_counts[q] = (*recv_counts)[q] * D;
    want_counts[q] = send_counts[q] * D;
  }
  std::vector<float> got(static_cast<size_t>(n * D));
  {
    const Timed timed;
    comm.alltoallv_raw(rows_out.data(), back_counts, got.data(), want_counts, dist::Elem::f32);
  }
  Tensor out = empty({n, D});
  float* o = out.data<float>();
  for (int64_t s = 0; s < n; ++s)
    std::memcpy(o + (*route)[static_cast<size_t>(s)] * D, got.data() + s * D, static_cast<size_t>(D) * sizeof(float));

  const Shape shard_shape = shard.shape();
  return record(out, "sharded_embedding", {shard},
                [comm_ptr, route, recv_ids, want_counts, back_counts, shard_shape, N, D, n](const Tensor& g_in,
                                                                                            const std::vector<bool>&) {
                  // The gradient rows go to their owners by the forward's routes, reversed.
                  const Tensor& g = g_in;
                  const float* pg = g.data<float>();
                  std::vector<float> send(static_cast<size_t>(n * D));
                  for (int64_t s = 0; s < n; ++s)
                    std::memcpy(send.data() + s * D, pg + (*route)[static_cast<size_t>(s)] * D,
                                static_cast<size_t>(D) * sizeof(float));
                  std::vector<float> recv(recv_ids->size() * static_cast<size_t>(D));
                  {
                    const Timed timed;
                    comm_ptr->alltoallv_raw(send.data(), want_counts, recv.data(), back_counts, dist::Elem::f32);
                  }
                  const int64_t m = static_cast<int64_t>(recv_ids->size());
                  std::vector<int64_t> local(static_cast<size_t>(m));
                  for (int64_t k = 0; k < m; ++k)
                    local[static_cast<size_t>(k)] = (*recv_ids)[static_cast<size_t>(k)] / N;
                  Tensor vals = empty({m, D});
                  float* pv = vals.data<float>();
                  const float inv = 1.0f / static_cast<float>(N);
                  for (size_t k = 0; k < recv.size(); ++k) pv[k] = recv[k] * inv;
                  return std::vector<Tensor>{
                      coalesce_sparse_grad(Tensor::sparse_rows(from_vector(local, {m}), vals, shard_shape))};
                });
}

void for_each_gathered_rows(dist::Communicator& comm, const Tensor& shard, int64_t rows, int root,
                            const std::function<void(const char*, int64_t, int64_t)>& emit) {
  const int N = comm.size(), rank = comm.rank();
  RECHUB_CHECK(shard.device().is_cpu() && shard.dim() >= 1 && shard.size(0) == row_shard_rows(rows, rank, N),
               "for_each_gathered_rows: rank " << rank << " holds " << shard.size(0) << " rows of a " << rows
                                               << "-row table; expected " << row_shard_rows(rows, rank, N));
  RECHUB_CHECK(shard.dtype() == DType::f32 || shard.dtype() == DType::f64 || shard.dtype() == DType::i64,
               "for_each_gathered_rows: f32, f64 or i64 rows only");
  const dist::Elem e = shard.dtype() == DType::f32   ? dist::Elem::f32
                       : shard.dtype() == DType::f64 ? dist::Elem::f64
                                                     : dist::Elem::i64;
  const size_t es = dist::elem_size(e);
  const int64_t width = rows > 0 ? shard.numel() / std::max<int64_t>(1, shard.size(0)) : 0;
  const size_t row_bytes = static_cast<size_t>(width) * es;
  // Chunks of K local rows per rank (global rows [c·N, (c+K)·N)), K·width at most 2^20 elements.
  const int64_t K = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, width));
  const int64_t local_max = row_shard_rows(rows, 0, N);
  const auto* mine = static_cast<const char*>(shard.raw_data());
  std::vector<char> buf, block;
  for (int64_t c = 0; c < local_max; c += K) {
    std::vector<int64_t> send(static_cast<size_t>(N), 0), recv(static_cast<size_t>(N), 0);
    auto take = [&](int q) { return std::max<int64_t>(0, std::min(c + K, row_shard_rows(rows, q, N)) - c); };
    send[static_cast<size_t>(root)] = take(rank) * width;
    if (rank == root)
      for (int q = 0; q < N; ++q) recv[static_cast<size_t>(q)] = take(q) * width;
    int64_t total = 0;
    for (int64_t x : recv) total += x;
    buf.resize(static_cast<size_t>(total) * es);
    comm.alltoallv_raw(mine + static_cast<size_t>(c) * row_bytes, send, buf.data(), recv, e);
    if (rank != root) continue;
    // Global rows [c·N, c·N + n): rank q's local row c + i is global row (c + i)·N + q.
    const int64_t first = c * N, n = std::min(rows, (c + K) * N) - first;
    block.resize(static_cast<size_t>(n) * row_bytes);
    size_t at = 0;
    for (int q = 0; q < N; ++q)
      for (int64_t i = 0; i < take(q); ++i) {
        std::memcpy(block.data() + static_cast<size_t>(i * N + q) * row_bytes, buf.data() + at, row_bytes);
        at += row_bytes;
      }
    emit(block.data(), first, n);
  }
}

Tensor row_shard_of(const Tensor& full_in, int rank, int world) {
  RECHUB_CHECK(full_in.device().is_cpu() && full_in.dim() >= 1, "row_shard_of: a table [rows, ...] on the CPU");
  const Tensor& full = full_in;
  const int64_t rows = full.size(0), local = row_shard_rows(rows, rank, world);
  const int64_t width = rows > 0 ? full.numel() / rows : 0;
  Shape s = full.shape();
  s[0] = local;
  Tensor out = empty(s, {.dtype = full.dtype()});
  const size_t row_bytes = static_cast<size_t>(width) * dtype_size(full.dtype());
  const auto* src = static_cast<const char*>(full.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  for (int64_t i = 0; i < local; ++i)
    std::memcpy(dst + static_cast<size_t>(i) * row_bytes, src + static_cast<size_t>(i * world + rank) * row_bytes,
                row_bytes);
  return out;
}

ShardedEmbedding::ShardedEmbedding(std::shared_ptr<dist::Communicator> comm, int64_t rows, int64_t dim,
                                   EmbeddingOptions opts)
    : comm_(std::move(comm)), rows_(rows), dim_(dim) {
  RECHUB_CHECK(comm_ != nullptr, "ShardedEmbedding: no communicator");
  RECHUB_CHECK(rows_ > 0 && dim_ > 0,
               "ShardedEmbedding: rows and dim must be positive, got " << rows_ << " x " << dim_);
  RECHUB_CHECK(opts.dtype == DType::f32, "ShardedEmbedding: only f32 tables are supported");
  RECHUB_CHECK(opts.init_std >= 0, "ShardedEmbedding: init_std must be non-negative, got " << opts.init_std);
  rank_ = comm_->rank();
  size_ = comm_->size();
  const int64_t local = row_shard_rows(rows_, rank_, size_);
  Tensor t = empty({local, dim_});
  float* p = t.data<float>();
  Generator gen(opts.seed);
  for (int64_t r = 0; r < rows_; ++r) {
    const bool mine = owner(r) == rank_;
    float* row = mine ? p + local_index(r) * dim_ : nullptr;
    for (int64_t k = 0; k < dim_; ++k) {
      const double v = opts.init_std * gen.normal();
      if (row) row[k] = static_cast<float>(v);
    }
  }
  shard_ = register_parameter("shard", t);
}

Tensor ShardedEmbedding::forward(const Tensor& ids_in) const {
  RECHUB_CHECK(ids_in.defined() && ids_in.dtype() == DType::i64 && ids_in.device().is_cpu() &&
                   (ids_in.dim() == 1 || (ids_in.dim() == 2 && ids_in.size(1) == 1)),
               "ShardedEmbedding: ids must be i64 [n] or [n, 1] on the CPU");
  const Tensor& ids = ids_in;
  return sharded_lookup(comm_, shard_, rows_, ids.data<int64_t>(), ids.size(0), "ShardedEmbedding");
}

}  // namespace rechub::nn
