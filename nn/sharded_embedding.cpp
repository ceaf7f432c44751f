#include "rechub/nn/sharded_embedding.h"

#include <cstring>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/optim.h"

namespace rechub::nn {

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
  const int64_t local = rows_ > rank_ ? (rows_ - rank_ + size_ - 1) / size_ : 0;
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
  const int64_t n = ids_in.size(0), N = size_, D = dim_;
  const int64_t* ids = ids_in.data<int64_t>();
  // Group the positions by owner (stable), remembering where each came from.
  std::vector<int64_t> send_counts(static_cast<size_t>(N), 0);
  for (int64_t i = 0; i < n; ++i) {
    RECHUB_CHECK(ids[i] >= 0 && ids[i] < rows_, "ShardedEmbedding: id " << ids[i] << " at position " << i
                                                                        << " is outside the table's " << rows_
                                                                        << " rows");
    ++send_counts[static_cast<size_t>(owner(ids[i]))];
  }
  std::vector<int64_t> start(static_cast<size_t>(N), 0);
  for (int64_t q = 1; q < N; ++q)
    start[static_cast<size_t>(q)] = start[static_cast<size_t>(q - 1)] + send_counts[static_cast<size_t>(q - 1)];
  auto route = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(n));  // grouped slot -> position
  std::vector<int64_t> send_ids(static_cast<size_t>(n));
  {
    std::vector<int64_t> at = start;
    for (int64_t i = 0; i < n; ++i) {
      const size_t slot = static_cast<size_t>(at[static_cast<size_t>(owner(ids[i]))]++);
      (*route)[slot] = i;
      send_ids[slot] = ids[i];
    }
  }
  auto recv_counts = std::make_shared<std::vector<int64_t>>();
  auto recv_ids = std::make_shared<std::vector<int64_t>>(comm_->alltoallv(send_ids, send_counts, recv_counts.get()));
  // Look up the rows asked of this rank and send them back.
  const float* shard = shard_.data<float>();
  std::vector<float> rows_out(recv_ids->size() * static_cast<size_t>(D));
  for (size_t k = 0; k < recv_ids->size(); ++k)
    std::memcpy(rows_out.data() + k * static_cast<size_t>(D), shard + local_index((*recv_ids)[k]) * D,
                static_cast<size_t>(D) * sizeof(float));
  std::vector<int64_t> back_counts(static_cast<size_t>(N)), want_counts(static_cast<size_t>(N));
  for (int64_t q = 0; q < N; ++q) {
    back_counts[static_cast<size_t>(q)] = (*recv_counts)[static_cast<size_t>(q)] * D;
    want_counts[static_cast<size_t>(q)] = send_counts[static_cast<size_t>(q)] * D;
  }
  std::vector<float> got(static_cast<size_t>(n * D));
  comm_->alltoallv_raw(rows_out.data(), back_counts, got.data(), want_counts, dist::Elem::f32);
  Tensor out = empty({n, D});
  float* o = out.data<float>();
  for (int64_t s = 0; s < n; ++s)
    std::memcpy(o + (*route)[static_cast<size_t>(s)] * D, got.data() + s * D, static_cast<size_t>(D) * sizeof(float));

  dist::Communicator* comm = comm_.get();
  const Shape shard_shape = shard_.shape();
  const int64_t world = N;
  return record(out, "sharded_embedding", {shard_},
                [comm, route, recv_ids, recv_counts, want_counts, back_counts, shard_shape, world, D, n](
                    const Tensor& g, const std::vector<bool>&) {
                  // The gradient rows go to their owners by the forward's routes, reversed.
                  const float* pg = g.data<float>();
                  std::vector<float> send(static_cast<size_t>(n * D));
                  for (int64_t s = 0; s < n; ++s)
                    std::memcpy(send.data() + s * D, pg + (*route)[static_cast<size_t>(s)] * D,
                                static_cast<size_t>(D) * sizeof(float));
                  std::vector<float> recv(recv_ids->size() * static_cast<size_t>(D));
                  comm->alltoallv_raw(send.data(), want_counts, recv.data(), back_counts, dist::Elem::f32);
                  const int64_t m = static_cast<int64_t>(recv_ids->size());
                  std::vector<int64_t> local(static_cast<size_t>(m));
                  for (int64_t k = 0; k < m; ++k)
                    local[static_cast<size_t>(k)] = (*recv_ids)[static_cast<size_t>(k)] / world;
                  Tensor vals = empty({m, D});
                  float* pv = vals.data<float>();
                  const float inv = 1.0f / static_cast<float>(world);
                  for (size_t k = 0; k < recv.size(); ++k) pv[k] = recv[k] * inv;
                  return std::vector<Tensor>{
                      coalesce_sparse_grad(Tensor::sparse_rows(from_vector(local, {m}), vals, shard_shape))};
                });
}

}  // namespace rechub::nn
