#pragma once
// Binary cache of parsed CSV files: after the first parse, later runs memory-map a compact
// columnar file instead of parsing again.
//
// Layout (little-endian):
//   [0, 64)     header: magic "RECHUBDC", version, flags (bit 0: zstd), rows, columns,
//               group bits, footer offset and size, key hash, checksum
//   [64, F)     row groups of ColumnTable::kGroupRows rows, each column-major, 4 bytes a cell
//               (categorical codes or float bits); each group a zstd frame when compressed
//   [F, end)    footer: the key (source path, size, XXH64 of the source's bytes, parse
//               options, columns), the skipped-row
//               report, per column its name, role and dictionary (values and counts), and the
//               group offsets when compressed
// The checksum is XXH64 over everything after the header, chained with the header's own fields.
// An uncompressed cache is used in place through mmap, so a file larger than memory is paged in
// and out by the kernel; a compressed one is decompressed into memory when opened.
//
// Writes go to a temporary file in the same directory, flushed, then renamed over the target.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "rechub/mtl/data/column_table.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/schema.h"

namespace rechub::data {

struct CacheOptions {
  bool enabled = true;
  // Where caches go; empty: next to the source file. An unwritable place only costs the cache.
  std::string dir{};
  bool compress = false;  // zstd per row group (smaller, but opened into memory, not mapped)
  int level = 3;          // zstd level
  bool verify_checksum = true;
  // Messages (stale or corrupt cache rebuilt, cache not writable); default: standard error.
  std::function<void(const std::string&)> log{};
};

// Parses `path` with a cache: maps a valid cache, or parses and writes one. The returned table's
// report() says which (cache, cache_path, cache_message). A cache is valid only for the exact bytes
// it was built from: the source is hashed (XXH64) on every call, so a rewrite that keeps the size
// and mtime is seen,
// and a touched file with the same bytes keeps its cache.
ColumnTable load_csv(const std::string& path, const Schema& schema, const CsvOptions& csv = {},
                     const CacheOptions& cache = {});

// The cache file load_csv uses for these arguments (the name carries a hash of the parse options
// and columns; the source's content hash is checked inside).
std::string cache_path_for(const std::string& path, const Schema& schema, const CsvOptions& csv,
                           const CacheOptions& cache);

// XXH64 of a file's bytes as 16 hex digits (the content key of a cache; throws rechub::Error naming
// the file when it cannot be read).
std::string file_content_xxh64(const std::string& path);

// Writes any table as a cache file (temp file + rename). `key` is stored for load_csv's checks.
void write_cache(const ColumnTable& table, const std::string& path, bool compress = false, int level = 3,
                 const std::string& key = "");
// Opens a cache file; throws rechub::Error saying what is wrong with a corrupt or truncated one.
ColumnTable read_cache(const std::string& path, bool verify_checksum = true);
// The same over bytes in memory (copied), for tests and fuzzing.
ColumnTable read_cache_bytes(std::string_view bytes, const std::string& name, bool verify_checksum = true);

// A cache file read in pieces (pread), never mapped whole: the streaming training path
// (Preprocessor::stream). Opening reads the header and the footer (columns, dictionaries) and,
// with verify_checksum, hashes the file in 1 MiB reads; rows are then read on demand. Resident
// memory and address space stay at the footer plus what the caller asks for, whatever the file
// size. Compressed caches are read one zstd row group at a time (the last one kept).
// read() is safe to call from several threads.
class CacheFile {
 public:
  // Throws rechub::Error naming the file when it is corrupt, truncated or unreadable.
  static std::shared_ptr<const CacheFile> open(const std::string& path, bool verify_checksum = true);
  ~CacheFile();
  CacheFile(const CacheFile&) = delete;
  CacheFile& operator=(const CacheFile&) = delete;

  const std::string& path() const { return path_; }
  int64_t rows() const { return rows_; }
  const std::string& key() const { return key_; }
  // The columns and dictionaries, with no rows (the table's report() says where it came from).
  const ColumnTable& header() const { return header_; }
  // Rows [begin, begin + n) of the columns `cols`, column-major: out[k * n + i] is row begin + i of
  // cols[k]. Throws rechub::Error on a range outside the file or a failed read.
  void read(int64_t begin, int64_t n, const std::vector<int>& cols, uint32_t* out) const;
  // A hint that rows [begin, begin + n) are read soon (posix_fadvise WILLNEED; no effect on results).
  void will_need(int64_t begin, int64_t n) const;
  // Bytes of cells read so far (tests: a rank reads only its rows).
  uint64_t bytes_read() const { return bytes_read_.load(); }

 private:
  CacheFile() = default;
  void pread_all(void* dst, uint64_t n, uint64_t off) const;
  std::string path_;
  int fd_ = -1;
  int64_t rows_ = 0;
  uint32_t ncols_ = 0;
  bool zstd_ = false;
  std::vector<std::pair<uint64_t, uint64_t>> frames_;  // compressed: offset and size per group
  std::string key_;
  ColumnTable header_;
  mutable std::atomic<uint64_t> bytes_read_{0};
  mutable std::mutex mu_;  // compressed: the decompressed group below
  mutable int64_t cached_group_ = -1;
  mutable std::vector<uint32_t> cached_cells_;
};

// load_csv for the streaming path: the same cache lookup (by the source's content) and build, but
// the result is a CacheFile, never a mapping of the whole cache. Throws rechub::Error when caching
// is off or the cache cannot be written (streaming reads the rows from the cache file).
std::shared_ptr<const CacheFile> open_csv_cache(const std::string& path, const Schema& schema,
                                                const CsvOptions& csv = {}, const CacheOptions& cache = {},
                                                LoadReport* report = nullptr);

}  // namespace rechub::data
