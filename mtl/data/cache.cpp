#include "rechub/mtl/data/cache.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/checksum.h"
#include "rechub/mtl/data/csv_parse.h"
#include "rechub/mtl/data/csv_tokenizer.h"
#include "rechub/mtl/data/input_stream.h"

namespace rechub::data {

namespace {

constexpr char kMagic[8] = {'R', 'E', 'C', 'H', 'U', 'B', 'D', 'C'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kFlagZstd = 1;
constexpr uint64_t kHeaderSize = 64;
constexpr uint64_t kMaxRows = uint64_t(1) << 40;
constexpr uint32_t kMaxColumns = 1u << 16;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t flags;
  uint64_t rows;
  uint32_t ncols;
  uint32_t group_bits;
  uint64_t footer_offset;
  uint64_t footer_size;
  uint64_t key_hash;
  uint64_t checksum;  // XXH64 of the header's first 56 bytes, seeded with XXH64 of the rest of the file
};
static_assert(sizeof(Header) == kHeaderSize, "the cache header is 64 bytes");

uint64_t header_checksum(const Header& h, uint64_t body_hash) { return xxh64(&h, 56, body_hash); }

// A failure to write the cache (not a problem with the data): load_csv falls back to memory.
class CacheWriteError : public Error {
 public:
  using Error::Error;
};

class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) { buf_.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { buf_.append(reinterpret_cast<const char*>(&v), 8); }
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    buf_.append(s);
  }
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class ByteReader {
 public:
  ByteReader(const char* p, size_t n, const std::string& name) : p_(p), end_(p + n), name_(name) {}
  uint8_t u8() { return static_cast<uint8_t>(*take(1)); }
  uint32_t u32() {
    uint32_t v;
    std::memcpy(&v, take(4), 4);
    return v;
  }
  uint64_t u64() {
    uint64_t v;
    std::memcpy(&v, take(8), 8);
    return v;
  }
  std::string str() {
    const uint32_t n = u32();
    const char* s = take(n);
    return std::string(s, n);
  }
  size_t left() const { return static_cast<size_t>(end_ - p_); }

 private:
  const char* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw Error(name_ + ": corrupt cache: the footer ends early");
    const char* s = p_;
    p_ += n;
    return s;
  }
  const char* p_;
  const char* end_;
  const std::string& name_;
};

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Streams row groups to a temporary file; commit() writes the footer and header and renames.
class CacheWriter final : public detail::GroupSink {
 public:
  CacheWriter(const std::string& path, size_t ncols, bool compress, int level)
      : path_(path), ncols_(ncols), compress_(compress), level_(level) {
    static std::atomic<uint64_t> counter{0};
    tmp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) throw CacheWriteError("cannot create " + tmp_ + ": " + std::strerror(errno));
    std::setvbuf(f_, nullptr, _IOFBF, size_t(1) << 20);
    const Header zero{};
    raw_write(&zero, sizeof zero);
  }
  ~CacheWriter() override {
    if (f_) std::fclose(f_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  void add_group(const uint32_t* cells, int64_t rows) override {
    const size_t bytes = static_cast<size_t>(rows) * ncols_ * 4;
    if (!compress_) {
      write(cells, bytes);
    } else {
      frame_.resize(ZSTD_compressBound(bytes));
      const size_t n = ZSTD_compress(frame_.data(), frame_.size(), cells, bytes, level_);
      if (ZSTD_isError(n)) throw CacheWriteError(std::string("zstd: ") + ZSTD_getErrorName(n));
      frames_.push_back({offset_, n});
      write(frame_.data(), n);
    }
    rows_ += rows;
  }
  void commit(const std::vector<ColumnSpec>& specs, const std::vector<const Dictionary*>& dicts, const LoadReport& rep,
              const std::string& key) {
    ByteWriter w;
    w.str(key);
    w.str(rep.source);
    w.u64(static_cast<uint64_t>(rep.skipped_rows));
    w.u32(static_cast<uint32_t>(rep.skipped_examples.size()));
    for (const auto& e : rep.skipped_examples) w.str(e);
    for (size_t c = 0; c < specs.size(); ++c) {
      w.str(specs[c].name);
      w.u8(static_cast<uint8_t>(specs[c].role));
      const Dictionary* d = dicts[c];
      const size_t n = is_categorical(specs[c].role) && d ? d->size() : 0;
      w.u64(n);
      for (size_t i = 0; i < n; ++i) {
        w.str(d->value(static_cast<uint32_t>(i)));
        w.u64(static_cast<uint64_t>(d->count(static_cast<uint32_t>(i))));
      }
    }
    if (compress_) {
      w.u64(frames_.size());
      for (const auto& [off, size] : frames_) {
        w.u64(off);
        w.u64(size);
      }
    }
    Header h{};
    std::memcpy(h.magic, kMagic, 8);
    h.version = kVersion;
    h.flags = compress_ ? kFlagZstd : 0;
    h.rows = static_cast<uint64_t>(rows_);
    h.ncols = static_cast<uint32_t>(ncols_);
    h.group_bits = ColumnTable::kGroupBits;
    h.footer_offset = offset_;
    h.footer_size = w.bytes().size();
    h.key_hash = xxh64(key);
    write(w.bytes().data(), w.bytes().size());
    h.checksum = header_checksum(h, hash_.digest());
    if (std::fseek(f_, 0, SEEK_SET) != 0) throw CacheWriteError("cannot seek in " + tmp_ + ": " + std::strerror(errno));
    raw_write(&h, sizeof h);
    if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0)
      throw CacheWriteError("cannot flush " + tmp_ + ": " + std::strerror(errno));
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) throw CacheWriteError("cannot close " + tmp_ + ": " + std::strerror(errno));
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw CacheWriteError("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
    committed_ = true;
  }

 private:
  void raw_write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw CacheWriteError("cannot write " + tmp_ + ": " + std::strerror(errno));
  }
  void write(const void* p, size_t n) {
    raw_write(p, n);
    hash_.update(p, n);
    offset_ += n;
  }

  std::string path_, tmp_;
  size_t ncols_;
  bool compress_;
  int level_;
  std::FILE* f_ = nullptr;
  Xxh64 hash_;
  uint64_t offset_ = kHeaderSize;
  int64_t rows_ = 0;
  std::vector<char> frame_;
  std::vector<std::pair<uint64_t, uint64_t>> frames_;
  bool committed_ = false;
};

struct OpenedCache {
  ColumnTable table;
  std::string key;
};

// Owned cells of a decompressed (or copied) cache, alive as long as any table uses them.
struct OwnedCells {
  std::shared_ptr<const void> source;
  std::vector<BigVector<uint32_t>> groups;
};

// Checks and opens a cache image. Every field is checked before use: any byte sequence gives a
// table or a rechub::Error, never a crash.
OpenedCache open_image(std::shared_ptr<const void> keep, const char* data, size_t size, const std::string& name,
                       bool verify) {
  const std::string bad = name + ": corrupt cache: ";
  if (size < kHeaderSize)
    throw Error(bad + "the file is " + std::to_string(size) + " bytes, shorter than the 64-byte header");
  Header h;
  std::memcpy(&h, data, sizeof h);
  if (std::memcmp(h.magic, kMagic, 8) != 0) throw Error(bad + "not a rechub data cache (wrong magic bytes)");
  if (h.version != kVersion)
    throw Error(name + ": cache format version " + std::to_string(h.version) + " (this build reads version " +
                std::to_string(kVersion) + ")");
  if ((h.flags & ~kFlagZstd) != 0) throw Error(bad + "unknown flags " + std::to_string(h.flags));
  if (h.group_bits != static_cast<uint32_t>(ColumnTable::kGroupBits))
    throw Error(bad + "row groups of 2^" + std::to_string(h.group_bits) + " rows (expected 2^" +
                std::to_string(ColumnTable::kGroupBits) + ")");
  if (h.ncols == 0 || h.ncols > kMaxColumns) throw Error(bad + "implausible column count " + std::to_string(h.ncols));
  if (h.rows > kMaxRows) throw Error(bad + "implausible row count " + std::to_string(h.rows));
  if (h.footer_offset < kHeaderSize || h.footer_offset > size || h.footer_size != size - h.footer_offset)
    throw Error(bad + "truncated or extended: the header puts the footer at " + std::to_string(h.footer_offset) + "+" +
                std::to_string(h.footer_size) + " bytes, the file has " + std::to_string(size));
  const bool zstd = (h.flags & kFlagZstd) != 0;
  const uint64_t cells_bytes = h.rows * h.ncols * 4;
  if (!zstd && kHeaderSize + cells_bytes != h.footer_offset)
    throw Error(bad + "truncated: " + std::to_string(h.rows) + " rows x " + std::to_string(h.ncols) + " columns need " +
                std::to_string(cells_bytes) + " bytes of cells, the file has " +
                std::to_string(h.footer_offset - kHeaderSize));
  if (verify) {
    const uint64_t body = xxh64(data + kHeaderSize, size - kHeaderSize);
    if (header_checksum(h, body) != h.checksum)
      throw Error(bad + "checksum mismatch (the file was modified or damaged)");
  }

  ByteReader r(data + h.footer_offset, h.footer_size, name);
  OpenedCache out;
  out.key = r.str();
  LoadReport rep;
  rep.source = r.str();
  rep.skipped_rows = static_cast<int64_t>(r.u64() & 0x7fffffffffffffffULL);
  const uint32_t nex = r.u32();
  if (nex > r.left() / 4) throw Error(bad + "the footer ends early");
  for (uint32_t i = 0; i < nex; ++i) rep.skipped_examples.push_back(r.str());
  std::vector<ColumnSpec> specs;
  std::vector<std::shared_ptr<const Dictionary>> dicts;
  for (uint32_t c = 0; c < h.ncols; ++c) {
    ColumnSpec s;
    s.name = r.str();
    const uint8_t role = r.u8();
    if (role > static_cast<uint8_t>(ColumnRole::mapped_label))
      throw Error(bad + "column '" + detail::display_value(s.name) + "' has an unknown role " + std::to_string(role));
    s.role = static_cast<ColumnRole>(role);
    const uint64_t n = r.u64();
    if (n > r.left() / 12 || (!is_categorical(s.role) && n != 0) || n > Dictionary::kMaxSize)
      throw Error(bad + "column '" + detail::display_value(s.name) + "' has an implausible dictionary size " +
                  std::to_string(n));
    auto d = std::make_shared<Dictionary>();
    for (uint64_t i = 0; i < n; ++i) {
      const std::string v = r.str();
      const uint64_t count = r.u64();
      const uint32_t code = d->intern(v);
      if (code != i)
        throw Error(bad + "column '" + detail::display_value(s.name) + "' lists the value '" +
                    detail::display_value(v) + "' twice");
      d->set_count(code, static_cast<int64_t>(count & 0x7fffffffffffffffULL));
    }
    specs.push_back(std::move(s));
    dicts.push_back(std::move(d));
  }

  constexpr uint64_t G = ColumnTable::kGroupRows;
  const uint64_t ngroups = (h.rows + G - 1) / G;
  std::vector<const uint32_t*> groups;
  std::vector<int64_t> group_rows;
  std::shared_ptr<const void> backing = keep;
  for (uint64_t g = 0; g < ngroups; ++g) group_rows.push_back(static_cast<int64_t>(std::min(G, h.rows - g * G)));
  if (!zstd) {
    const char* cells = data + kHeaderSize;
    for (uint64_t g = 0; g < ngroups; ++g)
      groups.push_back(reinterpret_cast<const uint32_t*>(cells + g * G * h.ncols * 4));
  } else {
    const uint64_t nframes = r.u64();
    if (nframes != ngroups)
      throw Error(bad + std::to_string(nframes) + " compressed groups listed, " + std::to_string(ngroups) +
                  " expected for " + std::to_string(h.rows) + " rows");
    auto owned = std::make_shared<OwnedCells>();
    owned->source = keep;
    for (uint64_t g = 0; g < ngroups; ++g) {
      const uint64_t off = r.u64();
      const uint64_t len = r.u64();
      if (off < kHeaderSize || off > h.footer_offset || len > h.footer_offset - off)
        throw Error(bad + "compressed group " + std::to_string(g) + " lies outside the file");
      const uint64_t want = static_cast<uint64_t>(group_rows[g]) * h.ncols * 4;
      const unsigned long long content = ZSTD_getFrameContentSize(data + off, len);
      if (content != want)
        throw Error(bad + "compressed group " + std::to_string(g) + " does not hold " + std::to_string(want) +
                    " bytes");
      BigVector<uint32_t> cells(want / 4);
      const size_t got = ZSTD_decompress(cells.data(), want, data + off, len);
      if (ZSTD_isError(got) || got != want)
        throw Error(bad + "compressed group " + std::to_string(g) + ": " +
                    (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size"));
      owned->groups.push_back(std::move(cells));
    }
    for (const auto& cells : owned->groups) groups.push_back(cells.data());
    backing = owned;
  }
  if (r.left() != 0) throw Error(bad + std::to_string(r.left()) + " unexpected bytes after the footer");
  out.table = ColumnTable(std::move(specs), std::move(dicts), std::move(groups), std::move(group_rows),
                          std::move(backing), std::move(rep));
  return out;
}

OpenedCache open_cache_file(const std::string& path, bool verify) {
  auto file = MappedFile::open(path);
  return open_image(file, file->data(), file->size(), path, verify);
}

std::string source_key(const std::string& path, const Schema& schema, const CsvOptions& csv) {
  // Everything that changes the parsed cells, except the file's size and mtime.
  nlohmann::json o = csv_options_to_json(csv);
  o.erase("threads");
  o.erase("window_bytes");
  o.erase("max_errors");
  std::string k = "rechub-data-cache v1\nsource=" + std::filesystem::absolute(path).lexically_normal().string() +
                  "\ncsv=" + o.dump() + "\ncolumns=";
  for (const auto& c : schema.columns) k += c + '\x1f';
  k += "\nspecs=";
  for (const auto& s : column_specs(schema)) {
    k += s.name + ":" + column_role_name(s.role);
    if (s.missing_ok) k += ":missing=skip:" + s.missing_value;  // the labels read differently
    k += '\x1f';
  }
  return k;
}

// The source's bytes decide, not its size and mtime: a rewrite of the same size with the old
// mtime restored (cp -p, rsync -t, touch -r) must not bring back the old rows. Hashing a mapped
// file runs at memory speed, far below the cost of parsing it.
std::string content_hash(const std::string& path) {
  const auto file = MappedFile::open(path);
  Xxh64 h;
  constexpr size_t kStep = size_t(64) << 20;
  for (size_t at = 0; at < file->size(); at += kStep) h.update(file->data() + at, std::min(kStep, file->size() - at));
  return hex64(h.digest());
}

// No mtime: a touched file with the same bytes keeps its cache.
std::string full_key(const std::string& base, const FileStamp& st, const std::string& content) {
  return base + "\nsize=" + std::to_string(st.size) + "\ncontent_xxh64=" + content;
}

std::string key_field(const std::string& key, const std::string& field) {
  const std::string tag = "\n" + field + "=";
  const size_t at = key.find(tag);
  if (at == std::string::npos) return "?";
  const size_t b = at + tag.size();
  return key.substr(b, key.find('\n', b) - b);
}

void default_log(const std::string& msg) { std::fprintf(stderr, "rechub: %s\n", msg.c_str()); }

}  // namespace

std::string cache_path_for(const std::string& path, const Schema& schema, const CsvOptions& csv,
                           const CacheOptions& cache) {
  namespace fs = std::filesystem;
  const fs::path src(path);
  const fs::path dir =
      cache.dir.empty() ? (src.has_parent_path() ? src.parent_path() : fs::path(".")) : fs::path(cache.dir);
  const std::string hash = hex64(xxh64(source_key(path, schema, csv))).substr(0, 12);
  return (dir / (src.filename().string() + "." + hash + (cache.compress ? ".zst" : "") + ".rhcache")).string();
}

void write_cache(const ColumnTable& table, const std::string& path, bool compress, int level, const std::string& key) {
  try {
    CacheWriter w(path, static_cast<size_t>(table.num_columns()), compress, level);
    for (int64_t g = 0; g < table.num_groups(); ++g) w.add_group(table.group_column(g, 0), table.group_rows(g));
    std::vector<const Dictionary*> dicts;
    for (int c = 0; c < table.num_columns(); ++c) dicts.push_back(&table.dictionary(c));
    w.commit(table.specs(), dicts, table.report(), key);
  } catch (const CacheWriteError& e) {
    throw Error(path + ": cannot write the cache: " + e.what());
  }
}

ColumnTable read_cache(const std::string& path, bool verify_checksum) {
  return open_cache_file(path, verify_checksum).table;
}

ColumnTable read_cache_bytes(std::string_view bytes, const std::string& name, bool verify_checksum) {
  // Copied into 8-byte aligned storage: cells are read as 32-bit words in place.
  auto buf = std::make_shared<std::vector<uint64_t>>((bytes.size() + 7) / 8);
  if (!bytes.empty()) std::memcpy(buf->data(), bytes.data(), bytes.size());
  return open_image(buf, reinterpret_cast<const char*>(buf->data()), bytes.size(), name, verify_checksum).table;
}

std::string file_content_xxh64(const std::string& path) { return content_hash(path); }

ColumnTable load_csv(const std::string& path, const Schema& schema, const CsvOptions& csv, const CacheOptions& cache) {
  validate_schema(schema);
  validate_csv_options(csv);
  if (!cache.enabled) return read_csv(path, schema, csv);
  const auto log = cache.log ? cache.log : std::function<void(const std::string&)>(default_log);
  const FileStamp st = file_stamp(path);
  const std::string cpath = cache_path_for(path, schema, csv, cache);
  const std::string content = content_hash(path);
  const std::string key = full_key(source_key(path, schema, csv), st, content);
  const auto specs = column_specs(schema);

  CacheStatus status = CacheStatus::built;
  std::string message;
  if (file_exists(cpath)) {
    try {
      OpenedCache oc = open_cache_file(cpath, cache.verify_checksum);
      if (oc.key == key && oc.table.specs().size() == specs.size()) {
        bool same = true;
        for (size_t c = 0; c < specs.size(); ++c)
          same = same && oc.table.spec(static_cast<int>(c)).name == specs[c].name &&
                 oc.table.spec(static_cast<int>(c)).role == specs[c].role;
        if (same) {
          oc.table.report().cache = CacheStatus::loaded;
          oc.table.report().cache_path = cpath;
          oc.table.report().source = path;
          return std::move(oc.table);
        }
      }
      status = CacheStatus::rebuilt_stale;
      const std::string was_size = key_field(oc.key, "size"), was_content = key_field(oc.key, "content_xxh64");
      if (was_size != std::to_string(st.size) || was_content != content)
        message = "cache " + cpath + " is stale: the source changed (size " + was_size + " -> " +
                  std::to_string(st.size) + " bytes, content XXH64 " + was_content + " -> " + content + "); rebuilding";
      else
        message = "cache " + cpath + " is stale: it was built with other parse options or columns; rebuilding";
    } catch (const Error& e) {
      status = CacheStatus::rebuilt_corrupt;
      message = std::string(e.what()) + "; rebuilding " + cpath;
    }
    log(message);
  }

  std::unique_ptr<CacheWriter> writer;
  try {
    if (!cache.dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(cache.dir, ec);  // a failure shows up when the file is created
    }
    writer = std::make_unique<CacheWriter>(cpath, specs.size(), cache.compress, cache.level);
  } catch (const CacheWriteError& e) {
    ColumnTable t = read_csv(path, schema, csv);
    t.report().cache = CacheStatus::unwritable;
    t.report().cache_message = std::string("cache not written: ") + e.what();
    log(path + ": " + t.report().cache_message);
    return t;
  }
  try {
    auto in = open_input(path);
    detail::ParseOutput out = detail::parse_csv_stream(*in, path, specs, schema.columns, csv, *writer);
    LoadReport rep;
    rep.source = path;
    rep.skipped_rows = out.skipped_rows;
    rep.skipped_examples = out.skipped_examples;
    std::vector<const Dictionary*> dicts;
    for (const auto& d : out.dicts) dicts.push_back(d.get());
    writer->commit(specs, dicts, rep, key);
  } catch (const CacheWriteError& e) {
    writer.reset();
    ColumnTable t = read_csv(path, schema, csv);
    t.report().cache = CacheStatus::unwritable;
    t.report().cache_message = std::string("cache not written: ") + e.what();
    log(path + ": " + t.report().cache_message);
    return t;
  }
  writer.reset();
  OpenedCache oc = open_cache_file(cpath, false);
  oc.table.report().cache = status;
  oc.table.report().cache_path = cpath;
  oc.table.report().cache_message = message;
  oc.table.report().source = path;
  return std::move(oc.table);
}

}  // namespace rechub::data
