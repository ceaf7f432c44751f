#pragma once
// Checkpoints: a module's parameters and buffers, the optimizer's state and a caller-supplied
// metadata record in ONE safetensors file (see nn/safetensors.h), so the weights open directly
// with safetensors / numpy / PyTorch.
//
// Tensor names:
//   "<parameter or buffer name>"      exactly Module::named_parameters()/named_buffers() names,
//                                     e.g. "towers.0.mlp.0.weight", "towers.0.mlp.1.running_mean"
//   "optim.<parameter>.<key>"         optimizer state: exp_avg, exp_avg_sq (Adam/AdamW), sum
//                                     (Adagrad), momentum_buffer (SGD), step (i64 scalar)
// __metadata__ (string values):
//   "format": "pt", "rechub.format": "rechub-checkpoint", "rechub.format_version": "1",
//   "rechub.metadata": the caller's JSON record (model kind and config, feature schema,
//                      vocabularies, step/epoch, ...) serialised as one string,
//   "rechub.parameters": JSON list of the parameter names (the rest of the model tensors are buffers),
//   "rechub.optimizer": JSON {"kind", "options", "groups": [{"name", "lr", "weight_decay", "params"}]},
//   "rechub.header_checksum": "crc32:xxxxxxxx" of the header (JSON re-serialised with sorted keys,
//                             without the two checksum entries),
//   "rechub.data_checksum": "crc32:xxxxxxxx" of the tensor data section.
//
// Writing goes to a temporary file in the same directory, fsync, rename. Loading validates
// everything first (structure, version, both checksums, the metadata record, every expected
// tensor present with its shape and dtype, nothing unexpected, the optimizer's state) and throws
// one rechub::Error listing all problems; only a fully valid file changes the model/optimizer.
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "rechub/core/dist/communicator.h"
#include "rechub/nn/module.h"
#include "rechub/nn/optim.h"
#include "rechub/nn/safetensors.h"

namespace rechub::nn {

constexpr int kCheckpointFormatVersion = 1;

// Row-sharded parameters (nn::EmbeddingCollection with shards, nn/embedding.h): rank q of `comm`
// holds rows q, q+N, q+2N, ... of each parameter named in `rows` (its row count over all ranks).
// A checkpoint always holds them whole, so one written by N ranks loads into an unsharded model
// (rechub eval, Predictor) and into any number of ranks, sharded or not.
struct RowShards {
  std::shared_ptr<dist::Communicator> comm{};
  std::map<std::string, int64_t> rows{};
  bool active() const { return comm && comm->size() > 1 && !rows.empty(); }
  // The whole table's rows of `param` when it is split over the ranks; -1 when it is not (or no
  // shards are active).
  int64_t rows_of(const std::string& param) const {
    if (!active()) return -1;
    auto it = rows.find(param);
    return it == rows.end() ? -1 : it->second;
  }
};

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer = nullptr,
                     const nlohmann::json& metadata = nlohmann::json::object());
// With active shards every rank calls it: the sharded parameters and their optimizer state
// (exp_avg, exp_avg_sq, sum, momentum_buffer) are streamed to rank 0 in blocks of rows
// (nn::for_each_gathered_rows), which alone writes the file, block by block: no rank ever holds a
// whole table. The other tensors are rank 0's. A failure to write on rank 0 throws there and, after
// the gathers, on every other rank too. (Without shards too, the file is written tensor by tensor,
// never serialised whole in memory.)
void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     const nlohmann::json& metadata, const RowShards& shards);

// Restores the model (and the optimizer when given: then the file must hold its state) and
// returns the metadata record.
nlohmann::json load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer = nullptr);
// With active shards each rank reads only its rows of the sharded parameters and of their
// optimizer state (the file holds them whole, as every checkpoint does), a piece of at most 16 MiB
// at a time; the data checksum is computed over the file in pieces as well.
nlohmann::json load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer, const RowShards& shards);

// The metadata record alone: reads only the header, checks the format version and the header
// checksum (the tensor data is not read, so its checksum is checked by load_checkpoint).
nlohmann::json read_checkpoint_metadata(const std::string& path);

// Everything in a checkpoint, verified (structure, version, both checksums), without a model:
// for tools and for serving code that builds the model from the metadata first.
struct CheckpointContents {
  NamedTensorList tensors;          // parameters and buffers
  NamedTensorList optimizer_state;  // names without the "optim." prefix
  nlohmann::json metadata;          // the caller's record
  nlohmann::json optimizer;         // the optimizer record (null when absent)
  std::vector<std::string> parameter_names;
};
// With active shards, a table named in shards.rows (and its optimizer state) comes as this rank's
// rows, read without the whole table in memory; every other tensor whole.
CheckpointContents read_checkpoint(const std::string& path, const RowShards& shards = {});

}  // namespace rechub::nn
