#pragma once
// The safetensors file layout (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON header
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string", ...}}
// padded with spaces to a multiple of 8, then the raw little-endian tensor bytes (offsets are
// relative to the end of the header). Files open with safetensors.torch.load_file / numpy.
// dtypes: F32, F64, I32, I64.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "rechub/core/tensor.h"

namespace rechub::nn {

using NamedTensorList = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape = {};
  uint64_t begin = 0, end = 0;  // byte range in the data section
};

// A parsed file held in memory: the header's entries (in data order), metadata and the data bytes.
struct SafetensorsFile {
  std::string path;
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  nlohmann::json header;  // as parsed, __metadata__ included
  std::string bytes;      // the whole file
  uint64_t data_offset = 0;
  // A CPU tensor holding a copy of entry i's data.
  Tensor tensor(size_t i) const;
  const char* data() const { return bytes.data() + data_offset; }
  uint64_t data_size() const { return bytes.size() - data_offset; }
};

// Reads and parses a file; throws rechub::Error naming the file for anything structurally wrong:
// too short, header length beyond the end, malformed JSON, unknown dtype, bad shape or offsets,
// tensor data that does not fit its shape, overlapping or missing data, truncated data.
SafetensorsFile read_safetensors_file(const std::string& path);
// Only the header (reads 8 + N bytes); entries are validated against the file size.
SafetensorsFile read_safetensors_header(const std::string& path);

// The JSON header for these tensors (in the given order, data back to back) and metadata.
nlohmann::json safetensors_header(const NamedTensorList& tensors, const std::map<std::string, std::string>& metadata);
// Serialises tensors (moved to the CPU, in the given order) and metadata.
std::string serialize_safetensors(const NamedTensorList& tensors, const std::map<std::string, std::string>& metadata);
// Writes `bytes` to `path` safely: a temporary file in the same directory, fsync, rename, fsync of
// the directory. A failure leaves any existing file at `path` as it was.
void write_file_atomic(const std::string& path, const std::string& bytes);
void write_safetensors(const std::string& path, const NamedTensorList& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// Convenience: every tensor (copies) and the metadata.
NamedTensorList read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

const char* safetensors_dtype(DType t);  // "F32", ...

}  // namespace rechub::nn
