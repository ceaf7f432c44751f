#pragma once
// EmbeddingCollection: every sparse feature's table in ONE arena per embedding width, looked up
// with one ops::embedding_lookup per arena (FBGEMM's table-batched embeddings on the CPU).
//
// Layout and names. Tables of width D are stacked, in feature order, into the parameter
// "arena_d<D>" of shape [sum of their vocab sizes, D]; feature f owns rows
// [offset_f, offset_f + vocab_f). A feature with shared_with = "g" has no rows of its own and reads
// g's rows (chains resolve to the owner). Registered in a model as "embedding", a PyTorch user
// sees "embedding.arena_d16" [rows, 16] in the checkpoint; layout_json() (also worth putting in
// the checkpoint metadata) gives each feature's arena, offset and rows, so feature f's
// nn.Embedding weight is arena[offset : offset + rows].
//
// Gradients. The arena's gradient is row-sparse (only the rows a batch touched) and optimizers
// update only those rows. With sparse = false the gradient is made dense as it arrives, so an
// optimizer does exactly what nn.Embedding + torch.optim.Adam do (every row's moments decay).
//
// Row sharding (model parallelism over MPI ranks, README "Training on several machines"). With
// EmbeddingOptions::shards of size N > 1, every arena is split by row: arena row r lives on rank
// r mod N at local row r div N, and the parameter "arena_d<D>" is this rank's shard
// [row_shard_rows(rows, rank, N), D]; no rank holds a whole arena. forward() sends each id to its
// owner (alltoallv), the owner reads its rows and sends them back (alltoallv); the backward sends
// the gradient rows to their owners, whose shard gets a row-sparse gradient of its own rows
// (scaled by 1/N: the gradient of the mean of the ranks' losses, as nn::DataParallel averages the
// dense ones), so the optimizer's row-sparse Adam/Adagrad touches only them. Every rank must call
// forward (and backward) together, with the same number of id rows or not. Initialisation draws
// the same N(0, init_std²) stream as the unsharded collection and keeps the owned rows, so a
// sharded collection holds exactly the unsharded one's rows. f32 on the CPU only; table() is not
// available (the rows are spread over the ranks). Checkpoints hold the whole arenas
// (nn::RowShards in nn/checkpoint.h, from row_shards()).
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/core/dist/communicator.h"
#include "rechub/nn/module.h"

namespace rechub::nn {

struct EmbeddingSpec {
  std::string name = {};
  int64_t vocab_size = 0;  // ids are 0 .. vocab_size-1; with shared_with, 0 means "the owner's"
  int64_t embed_dim = 0;   // with shared_with, 0 means "the owner's"
  std::string shared_with = {};
};

struct EmbeddingOptions {
  double init_std = 1e-4;  // N(0, init_std^2), torch-rechub's default RandomNormal(0, 1e-4)
  uint64_t seed = 0x5eed;  // tables are drawn in feature order from Generator(seed)
  bool sparse = true;
  DType dtype = DType::f32;
  // Row-shard every arena over these ranks (null or size 1: the whole arenas in this process).
  std::shared_ptr<dist::Communicator> shards{};
};

class EmbeddingCollection : public Module {
 public:
  struct Slot {
    int64_t arena = 0;   // index into arenas()
    int64_t offset = 0;  // first row in the arena
    int64_t rows = 0;    // the feature's vocabulary (ids must be < rows)
    int64_t dim = 0;
    std::string owner;  // the feature whose rows these are (itself unless shared)
  };

  explicit EmbeddingCollection(std::vector<EmbeddingSpec> specs, EmbeddingOptions opts = {});

  // ids [B, F] (i32 or i64, column f = feature f in spec order) -> [B, sum of embed dims], feature
  // f's vector at its columns in spec order. An id outside its feature's vocabulary is an error
  // naming the feature and the row.
  Tensor forward(const Tensor& ids) const;
  // [B, F, D] when every feature has the same width D (the layout of attention-style models).
  Tensor forward_3d(const Tensor& ids) const;

  std::string type_name() const override { return "EmbeddingCollection"; }
  const std::vector<EmbeddingSpec>& specs() const { return specs_; }
  int64_t num_features() const { return static_cast<int64_t>(specs_.size()); }
  int64_t output_dim() const { return output_dim_; }
  bool sparse() const { return opts_.sparse; }
  const Slot& slot(const std::string& feature) const;
  // The arena parameters ([rows, D]; with shards, this rank's [local rows, D]).
  const std::vector<Tensor>& arenas() const { return arenas_; }
  // Rows of arena a over all ranks.
  int64_t arena_rows(size_t a) const { return arena_rows_.at(a); }
  // Whether the arenas are row-sharded (shards of size > 1), and over which ranks.
  bool sharded() const { return sharded_; }
  const std::shared_ptr<dist::Communicator>& shards() const { return opts_.shards; }
  // With shards: {prefix + "arena_d<D>": the arena's rows over all ranks}; empty without.
  std::map<std::string, int64_t> row_shards(const std::string& prefix) const;
  // Feature f's table: rows of its arena (a view, no copy; shared features see the owner's rows).
  // Not available when sharded.
  Tensor table(const std::string& feature) const;
  // {"arenas": [{"name", "dim", "rows"}], "features": [{"name", "arena", "offset", "rows", "dim", "owner"}]}
  nlohmann::json layout_json() const;

 private:
  int64_t feature_index(const std::string& name) const;
  void add_arena(size_t a, const Tensor& t);
  void init_sharded();

  std::vector<EmbeddingSpec> specs_;
  EmbeddingOptions opts_;
  std::vector<Slot> slots_;     // per feature
  std::vector<Tensor> arenas_;  // registered parameters
  std::vector<int64_t> arena_dims_;
  std::vector<int64_t> arena_rows_;  // over all ranks
  bool sharded_ = false;
  std::vector<std::vector<int64_t>> arena_features_;  // feature indices per arena, in spec order
  int64_t output_dim_ = 0;
};

}  // namespace rechub::nn
