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
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

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

}  // namespace rechub::data
