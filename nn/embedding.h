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
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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
  const std::vector<Tensor>& arenas() const { return arenas_; }
  // Feature f's table: rows of its arena (a view, no copy; shared features see the owner's rows).
  Tensor table(const std::string& feature) const;
  // {"arenas": [{"name", "dim", "rows"}], "features": [{"name", "arena", "offset", "rows", "dim", "owner"}]}
  nlohmann::json layout_json() const;

 private:
  int64_t feature_index(const std::string& name) const;

  std::vector<EmbeddingSpec> specs_;
  EmbeddingOptions opts_;
  std::vector<Slot> slots_;     // per feature
  std::vector<Tensor> arenas_;  // registered parameters
  std::vector<int64_t> arena_dims_;
  std::vector<std::vector<int64_t>> arena_features_;  // feature indices per arena, in spec order
  int64_t output_dim_ = 0;
};

}  // namespace rechub::nn
