#include "rechub/nn/safetensors.h"

#include <fcntl.h>
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

Tensor SafetensorsFile::tensor(size_t i) const {
  const auto& e = entries.at(i);
  Tensor t = empty(e.shape, {.dtype = e.dtype});
  if (e.end > e.begin) std::memcpy(t.raw_data(), data() + e.begin, e.end - e.begin);
  return t;
}

SafetensorsFile read_safetensors_file(const std::string& path) {
  SafetensorsFile st;
  st.path = path;
  uint64_t size = 0;
  st.bytes = read_bytes(path, std::numeric_limits<uint64_t>::max(), &size);
  parse_header(st, size);
  return st;
}

SafetensorsFile read_safetensors_header(const std::string& path) {
  SafetensorsFile st;
  st.path = path;
  uint64_t size = 0;
  st.bytes = read_bytes(path, 8, &size);
  if (st.bytes.size() == 8) {
    const uint64_t n = read_u64_le(st.bytes.data());
    if (n <= kMaxHeader && 8 + n <= size) st.bytes = read_bytes(path, 8 + n, &size);
  }
  parse_header(st, size);
  st.bytes.resize(static_cast<size_t>(st.data_offset));  // no data held
  return st;
}

nlohmann::json safetensors_header(const NamedTensorList& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t pos = 0;
  for (const auto& [name, t] : tensors) {
    RECHUB_CHECK(!name.empty() && name != "__metadata__", "safetensors: invalid tensor name '" << name << "'");
    RECHUB_CHECK(!header.contains(name), "safetensors: tensor name '" << name << "' appears twice");
    RECHUB_CHECK(t.defined() && !t.is_sparse(), "safetensors: tensor '" << name << "' must be a defined dense tensor");
    const uint64_t nb = t.nbytes();
    header[name] = {{"dtype", safetensors_dtype(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {pos, pos + nb}}};
    pos += nb;
  }
  return header;
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

void write_file_atomic(const std::string& path, const std::string& bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  static std::atomic<uint64_t> counter{0};
  std::ostringstream tmp_name;  // hidden, unique per process and call, in the target's directory
  tmp_name << '.' << target.filename().string() << ".tmp." << ::getpid() << '.' << counter.fetch_add(1);
  const std::string tmp = (dir / tmp_name.str()).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  RECHUB_CHECK(fd >= 0, "cannot write '" << path << "': creating the temporary file '" << tmp
                                         << "' failed: " << std::strerror(errno));
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    RECHUB_FAIL("cannot write '" << path << "': " << what << " failed: " << std::strerror(err));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    RECHUB_FAIL("cannot write '" << path << "': close failed: " << std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    RECHUB_FAIL("cannot write '" << path << "': renaming the temporary file failed: " << std::strerror(err));
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_safetensors(const std::string& path, const NamedTensorList& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

NamedTensorList read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  const SafetensorsFile st = read_safetensors_file(path);
  NamedTensorList out;
  for (size_t i = 0; i < st.entries.size(); ++i) out.emplace_back(st.entries[i].name, st.tensor(i));
  if (metadata) *metadata = st.metadata;
  return out;
}

}  // namespace rechub::nn
