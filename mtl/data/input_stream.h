#pragma once
// Byte input for the CSV reader: plain files read into a reused buffer, gzip files read through
// zlib, and in-memory buffers, all behind one "window" interface so the parser never cares which.
// (MappedFile maps the binary cache.)
//
// The parser asks for a window of at least `want` bytes from the current position, parses the
// complete records in it and consumes them; an incomplete last record stays for the next window.
// Resident memory is bounded by the window size whatever the file size.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace rechub::data {

// A read-only memory mapping of a whole file (empty files map to an empty view).
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {data_, size_}; }

 private:
  MappedFile() = default;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
// Size and modification time; throws rechub::Error naming the file when it cannot be read.
FileStamp file_stamp(const std::string& path);
bool file_exists(const std::string& path);

struct InputWindow {
  std::string_view bytes;  // from the current position
  bool eof = false;        // the window reaches the end of the input
};

class InputStream {
 public:
  virtual ~InputStream() = default;
  // At least `want` bytes unless the input ends first.
  virtual InputWindow window(size_t want) = 0;
  virtual void consume(size_t n) = 0;
  // Bytes consumed so far (of the decompressed stream for gzip).
  virtual uint64_t position() const = 0;
};

// Opens a file for reading; gzip files (by their magic bytes, not their name) are decompressed.
// Throws rechub::Error naming the file when it cannot be read.
std::unique_ptr<InputStream> open_input(const std::string& path);
// A stream over bytes the caller keeps alive (tests, fuzzing, in-memory CSV).
std::unique_ptr<InputStream> memory_input(std::string_view bytes);

}  // namespace rechub::data
