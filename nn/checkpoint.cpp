#include "rechub/nn/checkpoint.h"

#include <zlib.h>

#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <tuple>

#include "rechub/core/autograd.h"
#include "rechub/nn/sharded_embedding.h"

namespace rechub::nn {

namespace {

constexpr const char* kVersionKey = "rechub.format_version";
constexpr const char* kHeaderSumKey = "rechub.header_checksum";
constexpr const char* kDataSumKey = "rechub.data_checksum";
constexpr const char* kRecordKey = "rechub.metadata";
constexpr const char* kParamsKey = "rechub.parameters";
constexpr const char* kOptimKey = "rechub.optimizer";
constexpr const char* kOptimPrefix = "optim.";

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

std::string crc_str(uint32_t c) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "crc32:%08x", c);
  return buf;
}

// The header as JSON (sorted keys) without the checksum entries.
uint32_t header_crc(nlohmann::json header) {
  if (header.contains("__metadata__")) {
    header["__metadata__"].erase(kHeaderSumKey);
    header["__metadata__"].erase(kDataSumKey);
  }
  const std::string canon = header.dump();
  return crc32_update(0, canon.data(), canon.size());
}

std::string join_problems(const std::string& head, const std::vector<std::string>& problems) {
  std::ostringstream os;
  os << head << " (" << problems.size() << " problem" << (problems.size() > 1 ? "s" : "") << "):";
  for (const auto& p : problems) os << "\n  - " << p;
  return os.str();
}

// Version and checksums; the data checksum only when the data was read.
void check_integrity(const SafetensorsFile& st, bool with_data, std::vector<std::string>& problems) {
  const auto& md = st.metadata;
  auto v = md.find(kVersionKey);
  if (v == md.end()) {
    problems.push_back("not a rechub checkpoint: __metadata__ has no '" + std::string(kVersionKey) + "'");
  } else if (v->second != std::to_string(kCheckpointFormatVersion)) {
    problems.push_back("format version '" + v->second + "' is not supported (this build reads version " +
                       std::to_string(kCheckpointFormatVersion) + ")");
  }
  auto h = md.find(kHeaderSumKey);
  if (h == md.end()) {
    problems.push_back("the header checksum ('" + std::string(kHeaderSumKey) + "') is missing");
  } else if (h->second != crc_str(header_crc(st.header))) {
    problems.push_back("header checksum mismatch: stored " + h->second + ", computed " +
                       crc_str(header_crc(st.header)) + " (the header was modified or corrupted)");
  }
  if (with_data) {
    auto d = md.find(kDataSumKey);
    uint32_t crc = 0;
    st.for_each_data_piece([&](const char* p, size_t n) { crc = crc32_update(crc, p, n); });
    const std::string got = crc_str(crc);
    if (d == md.end())
      problems.push_back("the data checksum ('" + std::string(kDataSumKey) + "') is missing");
    else if (d->second != got)
      problems.push_back("data checksum mismatch: stored " + d->second + ", computed " + got +
                         " (the tensor data is corrupted)");
  }
}

nlohmann::json parse_record(const SafetensorsFile& st, const char* key, bool required,
                            std::vector<std::string>& problems) {
  auto it = st.metadata.find(key);
  if (it == st.metadata.end()) {
    if (required) problems.push_back("__metadata__ has no '" + std::string(key) + "'");
    return nullptr;
  }
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    problems.push_back("'" + std::string(key) + "' is not valid JSON: " + e.what());
    return nullptr;
  }
}

// The header parsed and the file kept open: the data is read from it in pieces or a tensor at a time.
SafetensorsFile open_checkpoint(const std::string& path) {
  try {
    return read_safetensors_header(path);
  } catch (const Error& e) {
    RECHUB_FAIL("cannot load checkpoint: " << e.what());
  }
}

// The parameter an optimizer state tensor "<parameter>.<key>" belongs to.
std::string state_owner(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     const nlohmann::json& metadata) {
  save_checkpoint(path, model, optimizer, metadata, RowShards{});
}

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     const nlohmann::json& metadata, const RowShards& shards) {
  const bool sharded = shards.active();
  const bool writes = !sharded || shards.comm->rank() == 0;
  // What goes into the file, in order: a tensor whole, or (rows >= 0) this rank's row shard of a
  // table of `rows` rows, which every rank streams to rank 0 in blocks (for_each_gathered_rows).
  struct Item {
    std::string name;
    Tensor t;
    int64_t rows = -1;
  };
  std::vector<Item> items;
  auto add = [&](const std::string& name, const std::string& param, const Tensor& t) {
    const int64_t rows = t.dim() >= 1 ? shards.rows_of(param) : -1;
    items.push_back({name, t.device().is_cpu() ? t : t.to(Device::cpu()), rows});
  };
  nlohmann::json pnames = nlohmann::json::array();
  for (const auto& [name, t] : model.named_parameters()) {
    add(name, name, t.detach());
    pnames.push_back(name);
  }
  for (const auto& [name, t] : model.named_buffers()) add(name, name, t);
  for (const auto& it : items)
    RECHUB_CHECK(it.name.rfind(kOptimPrefix, 0) != 0, "save_checkpoint: model tensor '"
                                                          << it.name << "' starts with '" << kOptimPrefix
                                                          << "', which is reserved for optimizer state");
  std::map<std::string, std::string> md;
  md["format"] = "pt";
  md["rechub.format"] = "rechub-checkpoint";
  md[kVersionKey] = std::to_string(kCheckpointFormatVersion);
  md[kRecordKey] = metadata.dump();
  md[kParamsKey] = pnames.dump();
  if (optimizer) {
    const ParamNames names = param_names(model);
    md[kOptimKey] = optimizer->config_json(&names).dump();
    for (auto& [name, t] : optimizer->state_tensors(&names)) add(kOptimPrefix + name, state_owner(name), t);
  }
  std::vector<SafetensorsSpec> specs;
  for (const auto& it : items) {
    Shape s = it.t.shape();
    if (it.rows >= 0) s[0] = it.rows;
    specs.push_back({it.name, it.t.dtype(), s});
  }
  // The header's checksum leaves both checksum entries out, so it is known now; the data's is
  // written over its placeholder (same length) once the data has gone through.
  md[kDataSumKey] = crc_str(0);
  md[kHeaderSumKey] = crc_str(header_crc(safetensors_header(specs, md)));
  // Rank 0 streams the tensors into the file; a failure there (a full disk, say) is kept until
  // every rank has finished its part of the gathers, so that no rank is left waiting in one.
  std::unique_ptr<SafetensorsWriter> w;
  std::string failure;
  uint32_t data_crc = 0;
  auto guarded = [&](const std::function<void()>& f) {
    if (!writes || !failure.empty()) return;
    try {
      f();
    } catch (const Error& e) {
      failure = e.what();
    }
  };
  guarded([&] { w = std::make_unique<SafetensorsWriter>(path, specs, md); });
  auto sink = [&](const void* p, size_t n) {
    guarded([&] {
      w->append(p, n);
      data_crc = crc32_update(data_crc, p, n);
    });
  };
  for (const auto& it : items) {
    if (it.rows < 0)
      sink(it.t.raw_data(), it.t.nbytes());
    else
      for_each_gathered_rows(*shards.comm, it.t, it.rows, 0, [&](const char* bytes, int64_t, int64_t n) {
        sink(bytes, static_cast<size_t>(n) * (it.t.nbytes() / static_cast<size_t>(std::max<int64_t>(1, it.t.size(0)))));
      });
  }
  guarded([&] {
    w->set_metadata(kDataSumKey, crc_str(data_crc));
    w->commit();
  });
  w.reset();  // an uncommitted temporary file is removed here
  if (sharded) {
    int64_t ok = failure.empty() ? 1 : 0;
    shards.comm->broadcast(&ok, 1, 0);
    RECHUB_CHECK(writes || ok == 1,
                 "save_checkpoint: rank 0 could not write '" << path << "' (its error ends the run)");
  }
  if (!failure.empty()) throw Error(failure);
}

nlohmann::json load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer) {
  return load_checkpoint(path, model, optimizer, RowShards{});
}

nlohmann::json load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer, const RowShards& shards) {
  const bool sharded = shards.active();
  const int rank = sharded ? shards.comm->rank() : 0, world = sharded ? shards.comm->size() : 1;
  // The header, then the data read from the open file: once for its checksum and once into the
  // tensors, a piece or a tensor at a time, so that a sharded table is never whole in memory.
  const SafetensorsFile st = open_checkpoint(path);
  std::vector<std::string> problems;
  check_integrity(st, true, problems);
  nlohmann::json record = parse_record(st, kRecordKey, true, problems);

  std::map<std::string, size_t> in_file;
  for (size_t i = 0; i < st.entries.size(); ++i) in_file[st.entries[i].name] = i;
  std::vector<std::tuple<Tensor, size_t, bool>> copies;  // model tensor <- entry (its rows of it)
  std::set<std::string> expected;
  auto expect = [&](const std::string& name, const Tensor& local, const char* what) {
    expected.insert(name);
    const int64_t rows = shards.rows_of(name);
    Shape shape = local.shape();
    if (rows >= 0) shape[0] = rows;  // the file holds the whole table
    auto it = in_file.find(name);
    if (it == in_file.end()) {
      problems.push_back(std::string("missing ") + what + " '" + name + "' " + shape_str(shape) + " " +
                         dtype_name(local.dtype()));
      return;
    }
    const auto& e = st.entries[it->second];
    if (e.shape != shape || e.dtype != local.dtype()) {
      problems.push_back(std::string(what) + " '" + name + "': the checkpoint has " + shape_str(e.shape) + " " +
                         dtype_name(e.dtype) + ", the model expects " + shape_str(shape) + " " +
                         dtype_name(local.dtype()));
      return;
    }
    copies.emplace_back(local, it->second, rows >= 0);
  };
  for (const auto& [name, t] : model.named_parameters()) expect(name, t, "parameter");
  for (const auto& [name, t] : model.named_buffers()) expect(name, t, "buffer");
  NamedTensorList optim_state;
  for (const auto& e : st.entries) {
    if (e.name.rfind(kOptimPrefix, 0) == 0) continue;
    if (!expected.count(e.name))
      problems.push_back("unexpected tensor '" + e.name + "' " + shape_str(e.shape) +
                         " (not a parameter or buffer of the model)");
  }
  nlohmann::json optim_record;
  ParamNames names = param_names(model);
  if (optimizer) {
    optim_record = parse_record(st, kOptimKey, false, problems);
    if (st.metadata.find(kOptimKey) == st.metadata.end()) {
      problems.push_back("the checkpoint holds no optimizer state but an optimizer was given to load into");
    } else if (!optim_record.is_null()) {
      for (size_t i = 0; i < st.entries.size(); ++i)
        if (st.entries[i].name.rfind(kOptimPrefix, 0) == 0) {
          const std::string name = st.entries[i].name.substr(std::string(kOptimPrefix).size());
          const auto& e = st.entries[i];
          const int64_t rows = shards.rows_of(state_owner(name));
          const bool of_rows = rows >= 0 && !e.shape.empty() && e.shape[0] == rows;
          optim_state.emplace_back(name, of_rows ? st.rows(i, rank, world) : st.tensor(i));  // this rank's rows
        }
      try {
        for (auto& p : optimizer->check_state(optim_state, optim_record, &names)) problems.push_back(p);
      } catch (const Error& e) {
        problems.push_back(e.what());
      }
    }
  }
  if (!problems.empty())
    RECHUB_FAIL(join_problems("cannot load checkpoint '" + path + "'; the model" +
                                  std::string(optimizer ? " and optimizer were" : " was") + " left unchanged",
                              problems));
  {
    NoGradGuard ng;
    for (auto& [t, i, rows_of] : copies) {
      Tensor dst = t;
      if (dst.device().is_cpu()) {  // straight into the model's tensor: no second copy of a table
        if (rows_of)
          st.rows_into(i, rank, world, dst);
        else
          st.tensor_into(i, dst);
        dst.bump_version();  // an in-place write, as copy_ counts it (caches keyed on versions see it)
      } else {
        dst.copy_(st.tensor(i));
      }
    }
  }
  if (optimizer) optimizer->load_state(optim_state, optim_record, &names);
  return record;
}

nlohmann::json read_checkpoint_metadata(const std::string& path) {
  const SafetensorsFile st = open_checkpoint(path);
  std::vector<std::string> problems;
  check_integrity(st, false, problems);
  nlohmann::json record = parse_record(st, kRecordKey, true, problems);
  if (!problems.empty()) RECHUB_FAIL(join_problems("cannot read the metadata of checkpoint '" + path + "'", problems));
  return record;
}

CheckpointContents read_checkpoint(const std::string& path, const RowShards& shards) {
  const SafetensorsFile st = open_checkpoint(path);
  std::vector<std::string> problems;
  check_integrity(st, true, problems);
  CheckpointContents c;
  c.metadata = parse_record(st, kRecordKey, true, problems);
  c.optimizer = parse_record(st, kOptimKey, false, problems);
  const nlohmann::json pn = parse_record(st, kParamsKey, true, problems);
  if (!problems.empty()) RECHUB_FAIL(join_problems("cannot read checkpoint '" + path + "'", problems));
  if (pn.is_array())
    for (const auto& n : pn)
      if (n.is_string()) c.parameter_names.push_back(n.get<std::string>());
  // A table in shards.rows (or its optimizer state) as this rank's rows: read row by row.
  auto read = [&](size_t i, const std::string& param) {
    const auto& e = st.entries[i];
    const int64_t rows = shards.rows_of(param);
    if (rows >= 0 && !e.shape.empty() && e.shape[0] == rows)
      return st.rows(i, shards.comm->rank(), shards.comm->size());
    return st.tensor(i);
  };
  for (size_t i = 0; i < st.entries.size(); ++i) {
    const std::string& n = st.entries[i].name;
    if (n.rfind(kOptimPrefix, 0) == 0) {
      const std::string name = n.substr(std::string(kOptimPrefix).size());
      c.optimizer_state.emplace_back(name, read(i, state_owner(name)));
    } else {
      c.tensors.emplace_back(n, read(i, n));
    }
  }
  return c;
}

}  // namespace rechub::nn
