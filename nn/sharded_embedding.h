#pragma once
// ShardedEmbedding: one embedding table split by row across the ranks of a communicator
// (model parallelism for tables larger than one machine's memory, as HugeCTR's and TorchRec's
// row-wise sharding). Row r lives on rank r mod N, at local row r div N; each rank holds only its
// shard ([ceil((rows − rank)/N), dim], the parameter "shard"), never the whole table.
//
//   nn::ShardedEmbedding table(world, /*rows=*/100'000'000, /*dim=*/16);
//   Tensor v = table.forward(ids);        // ids [n] i64 (this rank's own), v [n, dim]
//   backward(loss(v));                    // each owner gets its rows' gradients, row-sparse
//   nn::Adam opt({{.params = table.parameters()}});  opt.step();   // lazy Adam on its rows only
//
// Forward: the ids are grouped by owner, exchanged with one alltoallv, each owner reads its rows,
// and a second alltoallv brings the vectors back (then put back in the ids' order).
// Backward: the incoming gradient rows travel to their owners by the same routes (one alltoallv);
// the owner's gradient is row-sparse over its shard, coalesced, and scaled by 1/N: the gradient of
// the mean of the ranks' losses, the convention of data-parallel training (nn::DataParallel
// averages every other gradient the same way; a sharded table must be left out of it: pass its
// parameter in DataParallel's `local` set). Every rank must call forward and backward together.
//
// The values equal an unsharded table's: initialisation draws the whole table's N(0, init_std²)
// stream row by row from Generator(seed), as EmbeddingCollection does for a single feature, and
// keeps the rows this rank owns (time O(rows·dim), memory O(rows·dim / N)).
//
// The models' embedding arenas are sharded with the same pieces (EmbeddingCollection with
// EmbeddingOptions::shards, nn/embedding.h; `rechub train --shard-embeddings`).
#include <cstdint>
#include <functional>
#include <memory>

#include "rechub/core/dist/communicator.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/module.h"

namespace rechub::nn {

// ---- the pieces, shared with EmbeddingCollection's sharded arenas (nn/embedding.h) ----
// Rows of a `rows`-row table that rank `rank` of `world` holds (rows rank, rank+world, ...).
int64_t row_shard_rows(int64_t rows, int rank, int world);
// shard [row_shard_rows(rows), D] (a parameter) looked up at the global row ids ids[0..n) of this
// rank -> [n, D], recorded for autograd: the backward sends the gradient rows to their owners and
// hands the shard a coalesced row-sparse gradient (local rows), scaled by 1/world. Every rank calls
// it together. `who` names the table in errors (an id outside [0, rows) names its position).
Tensor sharded_lookup(const std::shared_ptr<dist::Communicator>& comm, const Tensor& shard, int64_t rows,
                      const int64_t* ids, int64_t n, const std::string& who);
// Wall seconds this thread has spent in sharded_lookup's exchanges (forward and backward alltoallv,
// waiting for the other ranks included): the communication figures of a sharded run.
double sharded_lookup_seconds();
// The whole table from every rank's shard ([local rows, ...] each, row r on rank r mod N), without
// the whole table anywhere: on `root`, emit(bytes, first_row, n_rows) is called with consecutive
// blocks of the table's rows in order (rows [first_row, first_row + n_rows), each block at most
// 2^20 elements per rank, alltoallv to the root); every rank calls it. What save_checkpoint
// streams into the file.
void for_each_gathered_rows(dist::Communicator& comm, const Tensor& shard, int64_t rows, int root,
                            const std::function<void(const char* bytes, int64_t first_row, int64_t n_rows)>& emit);
// This rank's rows of a whole table `full` [rows, ...] (a copy): rows rank, rank+N, ...
Tensor row_shard_of(const Tensor& full, int rank, int world);

class ShardedEmbedding : public Module {
 public:
  ShardedEmbedding(std::shared_ptr<dist::Communicator> comm, int64_t rows, int64_t dim, EmbeddingOptions opts = {});

  // ids [n] (or [n, 1]) i64 global row ids -> [n, dim]. An id outside [0, rows) is an error naming
  // its position.
  Tensor forward(const Tensor& ids) const;

  std::string type_name() const override { return "ShardedEmbedding"; }
  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  int64_t local_rows() const { return shard_.size(0); }
  int owner(int64_t row) const { return static_cast<int>(row % size_); }
  int64_t local_index(int64_t row) const { return row / size_; }
  const Tensor& shard() const { return shard_; }
  dist::Communicator& comm() const { return *comm_; }

 private:
  std::shared_ptr<dist::Communicator> comm_;
  int64_t rows_, dim_;
  int rank_, size_;
  Tensor shard_;
};

}  // namespace rechub::nn
