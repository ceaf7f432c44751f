#pragma once
// ONNX export of a trained multi-task model (SharedBottom, ESMM, MMoE, OMoE, PLE, AITM), built
// with ONNX's own protobuf classes (Debian's libonnx-dev) and checked with ONNX's C++ checker
// before it is written. Compiled into the separate library rechub_export (only when protobuf and
// ONNX are found), so the core library does not depend on protobuf.
//
//   exporter::export_onnx(model, "model.onnx");                       // from the C++ API
//   exporter::export_checkpoint_onnx("model.safetensors", "model.onnx");  // what `rechub export` runs
//
// The graph (opset 17, IR version 8) has inference semantics: BatchNorm with its running
// statistics folded into the preceding Gemm, no dropout. It walks the model's modules (nn::MLP,
// nn::Linear, nn::BatchNorm1d, the embedding arenas), not a recorded forward pass.
//
// Inputs, batch dimension "batch" dynamic:
//   one int64 [batch] per sparse feature, named after the feature: ids as the preprocessor encodes
//     them (the CSV pipeline's vocabulary, id 0 = out of vocabulary). The vocabulary mapping stays
//     outside the graph: export_checkpoint_onnx writes it beside the model. An id outside
//     [0, vocab_size) reads row 0, the out-of-vocabulary row, exactly where Predictor puts a value
//     its vocabulary does not know.
//   "dense" float [batch, n_dense] (only when the model has dense features): values as the
//     preprocessor encodes them (normalised), in the order of the model's dense features.
// Outputs, named after the tasks, [batch]: probabilities for binary tasks, values for regression.
// ESMM has three: its CTR task (default "ctr"), "cvr" and its CTCVR task (default "ctcvr").
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/mtl/models/model.h"

namespace rechub::exporter {

struct OnnxExportOptions {
  // Written into the model's metadata_props as key/value strings (a string value as is, anything
  // else as JSON).
  nlohmann::json metadata = nlohmann::json::object();
};

// The serialized ModelProto. Throws rechub::Error for a model it cannot express (learnable
// activations) or names that collide (an input and an output with the same name).
std::string onnx_model_bytes(const models::MultiTaskModel& model, const OnnxExportOptions& options = {});
// Writes onnx_model_bytes to `path` (a temporary file, then a rename: never a half-written model).
void export_onnx(const models::MultiTaskModel& model, const std::string& path, const OnnxExportOptions& options = {});

struct CheckpointExport {
  std::string onnx_path;
  std::string preprocessor_path;  // empty when the checkpoint carries no preprocessor
};
// Loads a checkpoint as Predictor does and writes `onnx_path`, plus `<onnx_path minus .onnx>
// .preprocessor.json` (the vocabularies and dense normalisers, Preprocessor::to_json) when the
// checkpoint carries them.
CheckpointExport export_checkpoint_onnx(const std::string& checkpoint_path, const std::string& onnx_path);

// The input and output names the exported graph has, in order.
std::vector<std::string> onnx_input_names(const models::MultiTaskModel& model);
std::vector<std::string> onnx_output_names(const models::MultiTaskModel& model);

}  // namespace rechub::exporter
