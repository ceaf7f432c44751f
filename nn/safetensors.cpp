#include "rechub/nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace rechub::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts need byte swaps");

namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // safetensors' own limit

bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32")
    out = DType::f32;
  else if (s == "F64")
    out = DType::f64;
  else if (s == "I32")
    out = DType::i32;
  else if (s == "I64")
    out = DType::i64;
  else
    return false;
  return true;
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

std::string read_bytes(const std::string& path, uint64_t max_bytes, uint64_t* file_size) {
  std::ifstream f(path, std::ios::binary);
  RECHUB_CHECK(f.good(), "cannot open '" << path << "': " << std::strerror(errno));
  f.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  if (file_size) *file_size = size;
  const uint64_t n = std::min(size, max_bytes);
  std::string bytes(n, '\0');
  f.read(bytes.data(), static_cast<std::streamsize>(n));
  RECHUB_CHECK(static_cast<uint64_t>(f.gcount()) == n, "'" << path << "': read error after " << f.gcount() << " bytes");
  return bytes;
}

// n bytes at `offset` of the open file, all of them (short reads and EINTR retried).
void pread_all(int fd, const std::string& path, void* dst, size_t n, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    RECHUB_CHECK(r > 0, "'" << path << "': read error at byte " << offset << ": "
                            << (r == 0 ? "the file ended early (truncated while open?)" : std::strerror(errno)));
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

constexpr size_t kPieceBytes = size_t{16} << 20;  // what tensor pieces read from a file hold at most

// Parses the header in `bytes` (which holds at least 8 + N bytes) for a file of `file_size` bytes.
void parse_header(SafetensorsFile& st, uint64_t file_size) {
  const std::string& path = st.path;
  RECHUB_CHECK(st.bytes.size() >= 8,
               "'" << path << "' is " << file_size << " bytes: too short for a safetensors file (truncated?)");
  const uint64_t n = read_u64_le(st.bytes.data());
  RECHUB_CHECK(n <= kMaxHeader, "'" << path << "': header length " << n << " is implausible (corrupt file?)");
  RECHUB_CHECK(8 + n <= file_size, "'" << path << "' is truncated: the header needs " << n << " bytes but only "
                                       << file_size - 8 << " follow the length field");
  st.data_offset = 8 + n;
  try {
    st.header = nlohmann::json::parse(st.bytes.begin() + 8, st.bytes.begin() + 8 + static_cast<int64_t>(n));
  } catch (const nlohmann::json::exception& e) {
    RECHUB_FAIL("'" << path << "': malformed header (not JSON): " << e.what());
  }
  RECHUB_CHECK(st.header.is_object(), "'" << path << "': malformed header: expected a JSON object");
  const uint64_t data_size = file_size - st.data_offset;
  for (auto it = st.header.begin(); it != st.header.end(); ++it) {
    if (it.key() == "__metadata__") {
      RECHUB_CHECK(it.value().is_object(), "'" << path << "': malformed header: __metadata__ must be an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        RECHUB_CHECK(m.value().is_string(),
                     "'" << path << "': malformed header: __metadata__ value '" << m.key() << "' is not a string");
        st.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const auto& e = it.value();
    const std::string where = "'" + path + "': tensor '" + it.key() + "'";
    RECHUB_CHECK(e.is_object() && e.contains("dtype") && e["dtype"].is_string() && e.contains("shape") &&
                     e["shape"].is_array() && e.contains("data_offsets") && e["data_offsets"].is_array() &&
                     e["data_offsets"].size() == 2,
                 where << ": malformed header entry (needs dtype, shape and data_offsets [begin, end])");
    SafetensorsEntry en;
    en.name = it.key();
    RECHUB_CHECK(parse_dtype(e["dtype"].get<std::string>(), en.dtype),
                 where << ": unsupported dtype '" << e["dtype"].get<std::string>() << "' (F32, F64, I32, I64)");
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      RECHUB_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                   where << ": malformed shape " << e["shape"].dump());
      const uint64_t dv = d.get<uint64_t>();
      RECHUB_CHECK(dv == 0 || numel <= std::numeric_limits<uint64_t>::max() / 8 / dv,
                   where << ": shape " << e["shape"].dump() << " is too large");
      numel *= dv;
      en.shape.push_back(static_cast<int64_t>(dv));
    }
    for (const auto& o : e["data_offsets"])
      RECHUB_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0),
                   where << ": malformed data_offsets " << e["data_offsets"].dump());
    en.begin = e["data_offsets"][0].get<uint64_t>();
    en.end = e["data_offsets"][1].get<uint64_t>();
    RECHUB_CHECK(en.begin <= en.end, where << ": data_offsets " << e["data_offsets"].dump() << " are reversed");
    RECHUB_CHECK(en.end - en.begin == numel * dtype_size(en.dtype),
                 where << ": data_offsets " << e["data_offsets"].dump() << " hold " << en.end - en.begin
                       << " bytes but shape " << e["shape"].dump() << " " << e["dtype"].get<std::string>() << " needs "
                       << numel * dtype_size(en.dtype));
    st.entries.push_back(std::move(en));
  }
  // The data section must be covered exactly, without gaps or overlaps (safetensors' own rule).
  std::sort(st.entries.begin(), st.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  uint64_t pos = 0;
  for (const auto& en : st.entries) {
    RECHUB_CHECK(en.begin == pos, "'" << path << "': tensor '" << en.name << "' starts at byte " << en.begin
                                      << " of the data but the previous tensor ends at " << pos
                                      << " (overlapping or missing data)");
    pos = en.end;
  }
  RECHUB_CHECK(pos <= data_size, "'" << path << "' is truncated: the header describes " << pos
                                     << " bytes of tensor data but the file holds " << data_size);
  RECHUB_CHECK(pos == data_size,
               "'" << path << "': " << data_size - pos << " unexpected bytes after the last tensor's data");
}

}  // namespace

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
  }
  return "?";
}

namespace {
Shape rows_shape(const SafetensorsFile& st, size_t i, int64_t first, int64_t step) {
  const auto& e = st.entries.at(i);
  RECHUB_CHECK(!e.shape.empty() && first >= 0 && step >= 1, "'" << st.path << "': tensor '" << e.name << "': rows("
                                                                << first << ", " << step << ") of a " << e.shape.size()
                                                                << "-d tensor");
  Shape s = e.shape;
  s[0] = s[0] > first ? (s[0] - first + step - 1) / step : 0;
  return s;
}

void check_out(const SafetensorsFile& st, size_t i, const Shape& shape, const Tensor& out) {
  const auto& e = st.entries.at(i);
  RECHUB_CHECK(out.defined() && out.device().is_cpu() && out.dtype() == e.dtype && out.shape() == shape,
               "'" << st.path << "': tensor '" << e.name << "' (" << safetensors_dtype(e.dtype)
                   << ") cannot be read into a tensor of another dtype, shape or device");
}
}  // namespace

Tensor SafetensorsFile::tensor(size_t i) const {
  Tensor t = empty(entries.at(i).shape, {.dtype = entries.at(i).dtype});
  tensor_into(i, t);
  return t;
}

void SafetensorsFile::tensor_into(size_t i, Tensor& out) const {
  const auto& e = entries.at(i);
  check_out(*this, i, e.shape, out);
  if (e.end == e.begin) return;
  if (holds_data())
    std::memcpy(out.raw_data(), data() + e.begin, e.end - e.begin);
  else
    pread_all(*fd, path, out.raw_data(), e.end - e.begin, data_offset + e.begin);
}

Tensor SafetensorsFile::rows(size_t i, int64_t first, int64_t step) const {
  Tensor t = empty(rows_shape(*this, i, first, step), {.dtype = entries.at(i).dtype});
  rows_into(i, first, step, t);
  return t;
}

void SafetensorsFile::rows_into(size_t i, int64_t first, int64_t step, Tensor& out) const {
  const auto& e = entries.at(i);
  check_out(*this, i, rows_shape(*this, i, first, step), out);
  const int64_t R = e.shape[0], local = out.size(0);
  if (local == 0 || e.end == e.begin) return;
  const size_t row_bytes = static_cast<size_t>((e.end - e.begin) / static_cast<uint64_t>(R));
  auto* dst = static_cast<char*>(out.raw_data());
  if (holds_data()) {
    for (int64_t k = 0; k < local; ++k)
      std::memcpy(dst + static_cast<size_t>(k) * row_bytes,
                  data() + e.begin + static_cast<size_t>(first + k * step) * row_bytes, row_bytes);
    return;
  }
  // Whole rows in pieces of at most kPieceBytes (one row at least), keeping every step-th.
  const int64_t piece = std::max<int64_t>(1, static_cast<int64_t>(kPieceBytes / row_bytes));
  std::vector<char> buf;
  int64_t k = 0;
  for (int64_t a = first; a < R && k < local; a += piece) {
    const int64_t b = std::min(R, a + piece);
    buf.resize(static_cast<size_t>(b - a) * row_bytes);
    pread_all(*fd, path, buf.data(), buf.size(), data_offset + e.begin + static_cast<uint64_t>(a) * row_bytes);
    for (; k < local && first + k * step < b; ++k)
      std::memcpy(dst + static_cast<size_t>(k) * row_bytes,
                  buf.data() + static_cast<size_t>(first + k * step - a) * row_bytes, row_bytes);
  }
}

void SafetensorsFile::for_each_data_piece(const std::function<void(const char*, size_t)>& fn) const {
  const uint64_t n = data_size();
  if (holds_data()) {
    for (uint64_t a = 0; a < n; a += kPieceBytes)
      fn(data() + a, static_cast<size_t>(std::min<uint64_t>(kPieceBytes, n - a)));
    return;
  }
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(kPieceBytes, n)));
  for (uint64_t a = 0; a < n; a += kPieceBytes) {
    const auto m = static_cast<size_t>(std::min<uint64_t>(kPieceBytes, n - a));
    pread_all(*fd, path, buf.data(), m, data_offset + a);
    fn(buf.data(), m);
  }
}

SafetensorsFile read_safetensors_file(const std::string& path) {
  SafetensorsFile st;
  st.path = path;
  uint64_t size = 0;
  st.bytes = read_bytes(path, std::numeric_limits<uint64_t>::max(), &size);
  st.file_size = size;
  parse_header(st, size);
  return st;
}

SafetensorsFile read_safetensors_header(const std::string& path) {
  SafetensorsFile st;
  st.path = path;
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  RECHUB_CHECK(raw >= 0, "cannot open '" << path << "': " << std::strerror(errno));
  st.fd = std::shared_ptr<const int>(new int(raw), [](const int* f) {
    ::close(*f);
    delete f;
  });
  struct stat sb {};
  RECHUB_CHECK(::fstat(raw, &sb) == 0, "cannot stat '" << path << "': " << std::strerror(errno));
  RECHUB_CHECK(S_ISREG(sb.st_mode), "'" << path << "' is not a regular file");
  const auto size = static_cast<uint64_t>(sb.st_size);
  st.file_size = size;
  st.bytes.resize(static_cast<size_t>(std::min<uint64_t>(size, 8)));
  pread_all(raw, path, st.bytes.data(), st.bytes.size(), 0);
  if (st.bytes.size() == 8) {
    const uint64_t n = read_u64_le(st.bytes.data());
    if (n <= kMaxHeader && 8 + n <= size) {
      st.bytes.resize(static_cast<size_t>(8 + n));
      pread_all(raw, path, st.bytes.data() + 8, static_cast<size_t>(n), 8);
    }
  }
  parse_header(st, size);
  return st;
}

uint64_t SafetensorsSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

nlohmann::json safetensors_header(const std::vector<SafetensorsSpec>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t pos = 0;
  for (const auto& t : tensors) {
    RECHUB_CHECK(!t.name.empty() && t.name != "__metadata__", "safetensors: invalid tensor name '" << t.name << "'");
    RECHUB_CHECK(!header.contains(t.name), "safetensors: tensor name '" << t.name << "' appears twice");
    const uint64_t nb = t.nbytes();
    header[t.name] = {{"dtype", safetensors_dtype(t.dtype)}, {"shape", t.shape}, {"data_offsets", {pos, pos + nb}}};
    pos += nb;
  }
  return header;
}

namespace {
std::vector<SafetensorsSpec> specs_of(const NamedTensorList& tensors) {
  std::vector<SafetensorsSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    RECHUB_CHECK(t.defined() && !t.is_sparse(), "safetensors: tensor '" << name << "' must be a defined dense tensor");
    specs.push_back({name, t.dtype(), t.shape()});
  }
  return specs;
}
}  // namespace

nlohmann::json safetensors_header(const NamedTensorList& tensors, const std::map<std::string, std::string>& metadata) {
  return safetensors_header(specs_of(tensors), metadata);
}

std::string serialize_safetensors(const NamedTensorList& tensors, const std::map<std::string, std::string>& metadata) {
  std::string h = safetensors_header(tensors, metadata).dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.nbytes();
  std::string out;
  out.reserve(8 + h.size() + total);
  const uint64_t n = h.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += h;
  for (const auto& [name, t0] : tensors) {
    const Tensor t = t0.device().is_cpu() ? t0 : t0.to(Device::cpu());
    out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  }
  return out;
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  namespace fs = std::filesystem;
  const fs::path target(path_);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  static std::atomic<uint64_t> counter{0};
  std::ostringstream tmp_name;  // hidden, unique per process and call, in the target's directory
  tmp_name << '.' << target.filename().string() << ".tmp." << ::getpid() << '.' << counter.fetch_add(1);
  tmp_ = (dir / tmp_name.str()).string();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  RECHUB_CHECK(fd_ >= 0, "cannot write '" << path_ << "': creating the temporary file '" << tmp_
                                          << "' failed: " << std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::fail(const char* what) {
  const int err = errno;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  tmp_.clear();
  RECHUB_FAIL("cannot write '" << path_ << "': " << what << " failed: " << std::strerror(err));
}

void AtomicFileWriter::write(const void* data, size_t n) {
  RECHUB_CHECK(fd_ >= 0, "cannot write '" << path_ << "': the file was already committed or failed");
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFileWriter::pwrite(const void* data, size_t n, uint64_t offset) {
  RECHUB_CHECK(fd_ >= 0, "cannot write '" << path_ << "': the file was already committed or failed");
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

void AtomicFileWriter::commit() {
  RECHUB_CHECK(fd_ >= 0, "cannot write '" << path_ << "': the file was already committed or failed");
  if (::fsync(fd_) != 0) fail("fsync");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("renaming the temporary file");
  tmp_.clear();
  // Make the rename itself durable.
  namespace fs = std::filesystem;
  const fs::path target(path_);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFileWriter f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<SafetensorsSpec> tensors,
                                     std::map<std::string, std::string> metadata)
    : file_(path), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  for (const auto& t : tensors_) expected_ += t.nbytes();
  const std::string h = header_bytes();
  header_size_ = h.size();
  file_.write(&header_size_, 8);
  file_.write(h.data(), h.size());
}

std::string SafetensorsWriter::header_bytes() const {
  std::string h = safetensors_header(tensors_, metadata_).dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

void SafetensorsWriter::append(const void* data, size_t n) {
  RECHUB_CHECK(written_ + n <= expected_, "cannot write '" << file_.path() << "': " << written_ + n
                                                           << " bytes of tensor data given, the header describes "
                                                           << expected_);
  file_.write(data, n);
  written_ += n;
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  auto it = metadata_.find(key);
  RECHUB_CHECK(it != metadata_.end() && it->second.size() == value.size(),
               "SafetensorsWriter::set_metadata: '" << key
                                                    << "' must be a metadata key given at construction, and the new "
                                                       "value as long as the old (the header is already written)");
  it->second = value;
}

void SafetensorsWriter::commit() {
  RECHUB_CHECK(written_ == expected_, "cannot write '" << file_.path() << "': " << written_
                                                       << " bytes of tensor data given, the header describes "
                                                       << expected_);
  const std::string h = header_bytes();
  RECHUB_CHECK(h.size() == header_size_, "cannot write '" << file_.path() << "': the header changed length");
  file_.pwrite(h.data(), h.size(), 8);
  file_.commit();
}

void write_safetensors(const std::string& path, const NamedTensorList& tensors,
                       const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w(path, specs_of(tensors), metadata);
  for (const auto& [name, t0] : tensors) {
    const Tensor t = t0.device().is_cpu() ? t0 : t0.to(Device::cpu());
    w.append(t.raw_data(), t.nbytes());
  }
  w.commit();
}

NamedTensorList read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  const SafetensorsFile st = read_safetensors_file(path);
  NamedTensorList out;
  for (size_t i = 0; i < st.entries.size(); ++i) out.emplace_back(st.entries[i].name, st.tensor(i));
  if (metadata) *metadata = st.metadata;
  return out;
}

}  // namespace rechub::nn
