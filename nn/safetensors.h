#pragma once
// The safetensors file layout (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON header
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string", ...}}
// padded with spaces to a multiple of 8, then the raw little-endian tensor bytes (offsets are
// relative to the end of the header). Files open with safetensors.torch.load_file / numpy.
// dtypes: F32, F64, I32, I64.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
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

// A parsed file: the header's entries (in data order), metadata, and either the data bytes in
// memory (read_safetensors_file) or the open file to read them from (read_safetensors_header).
struct SafetensorsFile {
  std::string path;
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  nlohmann::json header;  // as parsed, __metadata__ included
  std::string bytes;      // the whole file, or only its header (8 + N bytes) when opened by header
  uint64_t data_offset = 0;
  uint64_t file_size = 0;
  std::shared_ptr<const int> fd;  // the file opened by header (closed with the last copy); null when held whole
  bool holds_data() const { return fd == nullptr; }
  // A CPU tensor holding a copy of entry i's data (from memory or read from the file).
  Tensor tensor(size_t i) const;
  // Rows first, first + step, first + 2·step, ... of entry i, a table [rows, ...]: the row shard
  // that nn::row_shard_of takes, read from the file in pieces of at most 16 MiB when opened by
  // header, so the whole table is never in memory.
  Tensor rows(size_t i, int64_t first, int64_t step) const;
  // The same, read straight into `out` (a CPU tensor of entry i's dtype and of the shape the
  // call gives): no temporary copy, for loading into a model's own tensors.
  void tensor_into(size_t i, Tensor& out) const;
  void rows_into(size_t i, int64_t first, int64_t step, Tensor& out) const;
  // The data section in order, in pieces of at most 16 MiB (for a checksum), without holding it.
  void for_each_data_piece(const std::function<void(const char*, size_t)>& fn) const;
  const char* data() const { return bytes.data() + data_offset; }
  uint64_t data_size() const { return file_size - data_offset; }
};

// Reads and parses a file; throws rechub::Error naming the file for anything structurally wrong:
// too short, header length beyond the end, malformed JSON, unknown dtype, bad shape or offsets,
// tensor data that does not fit its shape, overlapping or missing data, truncated data.
SafetensorsFile read_safetensors_file(const std::string& path);
// Only the header (reads 8 + N bytes) and the file kept open for tensor(), rows() and
// for_each_data_piece(); entries are validated against the file size.
SafetensorsFile read_safetensors_header(const std::string& path);

// A tensor's name, dtype and shape: what the header says of it.
struct SafetensorsSpec {
  std::string name;
  DType dtype = DType::f32;
  Shape shape = {};
  uint64_t nbytes() const;
};
// The JSON header for these tensors (in the given order, data back to back) and metadata.
nlohmann::json safetensors_header(const std::vector<SafetensorsSpec>& tensors,
                                  const std::map<std::string, std::string>& metadata);
nlohmann::json safetensors_header(const NamedTensorList& tensors, const std::map<std::string, std::string>& metadata);

// A file written atomically: a hidden temporary file in the target's directory, written in pieces
// (write, and pwrite to go back), then fsync, rename and an fsync of the directory on commit().
// Destroyed without commit(), it removes the temporary file and leaves `path` as it was.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  void write(const void* data, size_t n);
  void pwrite(const void* data, size_t n, uint64_t offset);
  void commit();
  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(const char* what);
  std::string path_, tmp_;
  int fd_ = -1;
};

// A safetensors file written tensor by tensor, so that no copy of the whole file is ever in
// memory: the header first, then each tensor's bytes in the order of `tensors` (append, in any
// pieces). A metadata value may be replaced before commit() by one of the same length (a checksum
// of the data, say). commit() checks that every byte arrived and writes the file atomically.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<SafetensorsSpec> tensors,
                    std::map<std::string, std::string> metadata);
  void append(const void* data, size_t n);
  void set_metadata(const std::string& key, const std::string& value);
  void commit();

 private:
  std::string header_bytes() const;  // the padded JSON header
  AtomicFileWriter file_;
  std::vector<SafetensorsSpec> tensors_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_size_ = 0, expected_ = 0, written_ = 0;
};
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
