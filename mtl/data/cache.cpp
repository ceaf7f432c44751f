#include "rechub/mtl/data/cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

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

// The header's own checks (`size`: the whole file's bytes).
Header check_header(const char* data, uint64_t size, const std::string& name) {
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
  return h;
}

std::vector<int64_t> group_sizes(uint64_t rows) {
  constexpr uint64_t G = ColumnTable::kGroupRows;
  std::vector<int64_t> out;
  for (uint64_t g = 0; g * G < rows; ++g) out.push_back(static_cast<int64_t>(std::min(G, rows - g * G)));
  return out;
}

struct Footer {
  std::string key;
  LoadReport rep;
  std::vector<ColumnSpec> specs;
  std::vector<std::shared_ptr<const Dictionary>> dicts;
  std::vector<std::pair<uint64_t, uint64_t>> frames;  // compressed: offset and size per group
};

// The footer's fields, each checked before use.
Footer parse_footer(const Header& h, const char* footer, const std::string& name) {
  const std::string bad = name + ": corrupt cache: ";
  ByteReader r(footer, h.footer_size, name);
  Footer out;
  out.key = r.str();
  LoadReport& rep = out.rep;
  rep.source = r.str();
  rep.skipped_rows = static_cast<int64_t>(r.u64() & 0x7fffffffffffffffULL);
  const uint32_t nex = r.u32();
  if (nex > r.left() / 4) throw Error(bad + "the footer ends early");
  for (uint32_t i = 0; i < nex; ++i) rep.skipped_examples.push_back(r.str());
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
    out.specs.push_back(std::move(s));
    out.dicts.push_back(std::move(d));
  }
  if ((h.flags & kFlagZstd) != 0) {
    const uint64_t ngroups = group_sizes(h.rows).size();
    const uint64_t nframes = r.u64();
    if (nframes != ngroups)
      throw Error(bad + std::to_string(nframes) + " compressed groups listed, " + std::to_string(ngroups) +
                  " expected for " + std::to_string(h.rows) + " rows");
    for (uint64_t g = 0; g < ngroups; ++g) {
      const uint64_t off = r.u64();
      const uint64_t len = r.u64();
      if (off < kHeaderSize || off > h.footer_offset || len > h.footer_offset - off)
        throw Error(bad + "compressed group " + std::to_string(g) + " lies outside the file");
      out.frames.emplace_back(off, len);
    }
  }
  if (r.left() != 0) throw Error(bad + std::to_string(r.left()) + " unexpected bytes after the footer");
  return out;
}

// One compressed group into `cells` (want bytes), checked.
void decompress_group(const char* frame, uint64_t len, uint64_t want, uint32_t* cells, int64_t g,
                      const std::string& name) {
  const std::string bad = name + ": corrupt cache: ";
  const unsigned long long content = ZSTD_getFrameContentSize(frame, len);
  if (content != want)
    throw Error(bad + "compressed group " + std::to_string(g) + " does not hold " + std::to_string(want) + " bytes");
  const size_t got = ZSTD_decompress(cells, want, frame, len);
  if (ZSTD_isError(got) || got != want)
    throw Error(bad + "compressed group " + std::to_string(g) + ": " +
                (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size"));
}

// Checks and opens a cache image. Every field is checked before use: any byte sequence gives a
// table or a rechub::Error, never a crash.
OpenedCache open_image(std::shared_ptr<const void> keep, const char* data, size_t size, const std::string& name,
                       bool verify) {
  const std::string bad = name + ": corrupt cache: ";
  const Header h = check_header(data, size, name);
  if (verify) {
    const uint64_t body = xxh64(data + kHeaderSize, size - kHeaderSize);
    if (header_checksum(h, body) != h.checksum)
      throw Error(bad + "checksum mismatch (the file was modified or damaged)");
  }
  Footer f = parse_footer(h, data + h.footer_offset, name);
  OpenedCache out;
  out.key = std::move(f.key);
  std::vector<int64_t> group_rows = group_sizes(h.rows);
  const uint64_t ngroups = group_rows.size();
  std::vector<const uint32_t*> groups;
  std::shared_ptr<const void> backing = keep;
  if (f.frames.empty()) {
    constexpr uint64_t G = ColumnTable::kGroupRows;
    const char* cells = data + kHeaderSize;
    for (uint64_t g = 0; g < ngroups; ++g)
      groups.push_back(reinterpret_cast<const uint32_t*>(cells + g * G * h.ncols * 4));
  } else {
    auto owned = std::make_shared<OwnedCells>();
    owned->source = keep;
    for (uint64_t g = 0; g < ngroups; ++g) {
      const uint64_t want = static_cast<uint64_t>(group_rows[g]) * h.ncols * 4;
      BigVector<uint32_t> cells(want / 4);
      decompress_group(data + f.frames[g].first, f.frames[g].second, want, cells.data(), static_cast<int64_t>(g), name);
      owned->groups.push_back(std::move(cells));
    }
    for (const auto& cells : owned->groups) groups.push_back(cells.data());
    backing = owned;
  }
  out.table = ColumnTable(std::move(f.specs), std::move(f.dicts), std::move(groups), std::move(group_rows),
                          std::move(backing), std::move(f.rep));
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
  // Read in pieces, not mapped: the streaming path must not take the file's size in address space.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  Xxh64 h;
  std::vector<char> buf(size_t(4) << 20);
  for (;;) {
    const ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const std::string e = std::strerror(errno);
      ::close(fd);
      throw Error(path + ": cannot read: " + e);
    }
    if (got == 0) break;
    h.update(buf.data(), static_cast<size_t>(got));
  }
  ::close(fd);
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

namespace {

// Where load_csv and open_csv_cache stand after looking for a cache.
struct CachePlan {
  std::string cpath, key, content;
  FileStamp st;
  CacheStatus status = CacheStatus::built;
  std::string message;
  bool valid = false;  // the existing cache holds these exact rows
};

// Looks for a valid cache. `open(cpath)` opens an existing one and returns its key and columns
// (throwing rechub::Error for a corrupt one); a stale or corrupt one is logged.
template <class Open>
CachePlan find_cache(const std::string& path, const Schema& schema, const CsvOptions& csv, const CacheOptions& cache,
                     const std::function<void(const std::string&)>& log, Open open) {
  CachePlan p;
  p.st = file_stamp(path);
  p.cpath = cache_path_for(path, schema, csv, cache);
  p.content = content_hash(path);
  p.key = full_key(source_key(path, schema, csv), p.st, p.content);
  if (!file_exists(p.cpath)) return p;
  const auto specs = column_specs(schema);
  try {
    const auto [key, have] = open(p.cpath);
    if (key == p.key && have.size() == specs.size()) {
      bool same = true;
      for (size_t c = 0; c < specs.size(); ++c)
        same = same && have[c].name == specs[c].name && have[c].role == specs[c].role;
      if (same) {
        p.status = CacheStatus::loaded;
        p.valid = true;
        return p;
      }
    }
    p.status = CacheStatus::rebuilt_stale;
    const std::string was_size = key_field(key, "size"), was_content = key_field(key, "content_xxh64");
    if (was_size != std::to_string(p.st.size) || was_content != p.content)
      p.message = "cache " + p.cpath + " is stale: the source changed (size " + was_size + " -> " +
                  std::to_string(p.st.size) + " bytes, content XXH64 " + was_content + " -> " + p.content +
                  "); rebuilding";
    else
      p.message = "cache " + p.cpath + " is stale: it was built with other parse options or columns; rebuilding";
  } catch (const Error& e) {
    p.status = CacheStatus::rebuilt_corrupt;
    p.message = std::string(e.what()) + "; rebuilding " + p.cpath;
  }
  log(p.message);
  return p;
}

// Parses the CSV into a new cache at plan.cpath (streaming: a row group at a time). Throws
// CacheWriteError when the cache cannot be written, rechub::Error for bad data.
void build_cache(const std::string& path, const Schema& schema, const CsvOptions& csv, const CacheOptions& cache,
                 const CachePlan& plan) {
  const auto specs = column_specs(schema);
  if (!cache.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(cache.dir, ec);  // a failure shows up when the file is created
  }
  CacheWriter writer(plan.cpath, specs.size(), cache.compress, cache.level);
  auto in = open_input(path);
  detail::ParseOutput out = detail::parse_csv_stream(*in, path, specs, schema.columns, csv, writer);
  LoadReport rep;
  rep.source = path;
  rep.skipped_rows = out.skipped_rows;
  rep.skipped_examples = out.skipped_examples;
  std::vector<const Dictionary*> dicts;
  for (const auto& d : out.dicts) dicts.push_back(d.get());
  writer.commit(specs, dicts, rep, plan.key);
}

}  // namespace

ColumnTable load_csv(const std::string& path, const Schema& schema, const CsvOptions& csv, const CacheOptions& cache) {
  validate_schema(schema);
  validate_csv_options(csv);
  if (!cache.enabled) return read_csv(path, schema, csv);
  const auto log = cache.log ? cache.log : std::function<void(const std::string&)>(default_log);
  std::optional<OpenedCache> found;
  const CachePlan plan = find_cache(path, schema, csv, cache, log, [&](const std::string& cpath) {
    found = open_cache_file(cpath, cache.verify_checksum);
    return std::pair<std::string, std::vector<ColumnSpec>>(found->key, found->table.specs());
  });
  if (!plan.valid) {
    try {
      build_cache(path, schema, csv, cache, plan);
    } catch (const CacheWriteError& e) {
      ColumnTable t = read_csv(path, schema, csv);
      t.report().cache = CacheStatus::unwritable;
      t.report().cache_message = std::string("cache not written: ") + e.what();
      log(path + ": " + t.report().cache_message);
      return t;
    }
    found = open_cache_file(plan.cpath, false);
  }
  found->table.report().cache = plan.status;
  found->table.report().cache_path = plan.cpath;
  found->table.report().cache_message = plan.message;
  found->table.report().source = path;
  return std::move(found->table);
}

std::shared_ptr<const CacheFile> open_csv_cache(const std::string& path, const Schema& schema, const CsvOptions& csv,
                                                const CacheOptions& cache, LoadReport* report) {
  validate_schema(schema);
  validate_csv_options(csv);
  if (!cache.enabled)
    throw Error(path + ": streaming reads the training rows from the binary cache, and caching is off");
  const auto log = cache.log ? cache.log : std::function<void(const std::string&)>(default_log);
  std::shared_ptr<const CacheFile> found;
  const CachePlan plan = find_cache(path, schema, csv, cache, log, [&](const std::string& cpath) {
    found = CacheFile::open(cpath, cache.verify_checksum);
    return std::pair<std::string, std::vector<ColumnSpec>>(found->key(), found->header().specs());
  });
  if (!plan.valid) {
    try {
      build_cache(path, schema, csv, cache, plan);
    } catch (const CacheWriteError& e) {
      throw Error(path + ": streaming reads the training rows from the binary cache, which cannot be written: " +
                  e.what() + " (give a writable cache directory)");
    }
    found = CacheFile::open(plan.cpath, false);
  }
  if (report) {
    *report = found->header().report();
    report->rows = found->rows();
    report->cache = plan.status;
    report->cache_path = plan.cpath;
    report->cache_message = plan.message;
    report->source = path;
  }
  return found;
}

// CacheFile

std::shared_ptr<const CacheFile> CacheFile::open(const std::string& path, bool verify_checksum) {
  std::shared_ptr<CacheFile> f(new CacheFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(f->fd_, &st) != 0) throw Error(path + ": cannot stat: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, not a file");
  const auto size = static_cast<uint64_t>(st.st_size);
  char head[kHeaderSize] = {};
  if (size >= kHeaderSize) f->pread_all(head, kHeaderSize, 0);
  const Header h = check_header(head, size, path);
  if (verify_checksum) {
    ::posix_fadvise(f->fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    Xxh64 body;
    std::vector<char> buf(size_t(1) << 20);
    for (uint64_t at = kHeaderSize; at < size;) {
      const uint64_t n = std::min<uint64_t>(buf.size(), size - at);
      f->pread_all(buf.data(), n, at);
      body.update(buf.data(), n);
      at += n;
    }
    if (header_checksum(h, body.digest()) != h.checksum)
      throw Error(path + ": corrupt cache: checksum mismatch (the file was modified or damaged)");
  }
  std::vector<char> footer(h.footer_size);
  f->pread_all(footer.data(), h.footer_size, h.footer_offset);
  Footer ft = parse_footer(h, footer.data(), path);
  f->rows_ = static_cast<int64_t>(h.rows);
  f->ncols_ = h.ncols;
  f->zstd_ = (h.flags & kFlagZstd) != 0;
  f->frames_ = std::move(ft.frames);
  f->key_ = std::move(ft.key);
  ft.rep.rows = f->rows_;
  f->header_ = ColumnTable(std::move(ft.specs), std::move(ft.dicts), {}, {}, nullptr, std::move(ft.rep));
  f->bytes_read_ = 0;
  return f;
}

CacheFile::~CacheFile() {
  if (fd_ >= 0) ::close(fd_);
}

void CacheFile::pread_all(void* dst, uint64_t n, uint64_t off) const {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(path_ + ": cannot read: " + std::strerror(errno));
    if (got == 0) throw Error(path_ + ": corrupt cache: the file ends early (truncated while in use?)");
    p += got;
    off += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

void CacheFile::read(int64_t begin, int64_t n, const std::vector<int>& cols, uint32_t* out) const {
  RECHUB_CHECK(begin >= 0 && n >= 0 && begin + n <= rows_,
               path_ << ": rows [" << begin << ", " << begin + n << ") are outside the cache's " << rows_ << " rows");
  for (const int c : cols) RECHUB_CHECK(c >= 0 && static_cast<uint32_t>(c) < ncols_, path_ << ": no column " << c);
  constexpr int64_t G = ColumnTable::kGroupRows;
  const auto nc = static_cast<uint64_t>(ncols_);
  for (int64_t at = begin; at < begin + n;) {
    const int64_t g = at / G, in_group = at - g * G;
    const int64_t grows = std::min(G, rows_ - g * G);
    const int64_t m = std::min(begin + n - at, grows - in_group);
    const auto o = static_cast<size_t>(at - begin);
    if (!zstd_) {
      const uint64_t base = kHeaderSize + static_cast<uint64_t>(g) * static_cast<uint64_t>(G) * nc * 4;
      for (size_t k = 0; k < cols.size(); ++k) {
        const uint64_t off =
            base +
            (static_cast<uint64_t>(cols[k]) * static_cast<uint64_t>(grows) + static_cast<uint64_t>(in_group)) * 4;
        pread_all(out + k * static_cast<size_t>(n) + o, static_cast<uint64_t>(m) * 4, off);
      }
      bytes_read_ += static_cast<uint64_t>(m) * cols.size() * 4;
    } else {
      std::lock_guard<std::mutex> lk(mu_);
      if (cached_group_ != g) {
        const auto [off, len] = frames_[static_cast<size_t>(g)];
        std::vector<char> frame(len);
        pread_all(frame.data(), len, off);
        bytes_read_ += len;
        cached_cells_.resize(static_cast<size_t>(grows) * nc);
        cached_group_ = -1;
        decompress_group(frame.data(), len, static_cast<uint64_t>(grows) * nc * 4, cached_cells_.data(), g, path_);
        cached_group_ = g;
      }
      for (size_t k = 0; k < cols.size(); ++k)
        std::memcpy(out + k * static_cast<size_t>(n) + o,
                    cached_cells_.data() + static_cast<size_t>(cols[k]) * static_cast<size_t>(grows) +
                        static_cast<size_t>(in_group),
                    static_cast<size_t>(m) * 4);
    }
    at += m;
  }
}

void CacheFile::will_need(int64_t begin, int64_t n) const {
  if (zstd_ || n <= 0 || begin < 0 || begin + n > rows_) return;
  constexpr int64_t G = ColumnTable::kGroupRows;
  const uint64_t nc = ncols_;
  // Whole groups: a group's columns lie one after another.
  const int64_t g0 = begin / G, g1 = (begin + n - 1) / G;
  const uint64_t from = kHeaderSize + static_cast<uint64_t>(g0) * G * nc * 4;
  const uint64_t to =
      kHeaderSize + (static_cast<uint64_t>(g1) * G + static_cast<uint64_t>(std::min(G, rows_ - g1 * G))) * nc * 4;
  ::posix_fadvise(fd_, static_cast<off_t>(from), static_cast<off_t>(to - from), POSIX_FADV_WILLNEED);
}

}  // namespace rechub::data
