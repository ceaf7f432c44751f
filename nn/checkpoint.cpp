#include "rechub/nn/checkpoint.h"

#include <zlib.h>

#include <cstdio>
#include <map>
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
    const std::string got = crc_str(crc32_update(0, st.data(), st.data_size()));
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

SafetensorsFile open_checkpoint(const std::string& path, bool with_data) {
  try {
    return with_data ? read_safetensors_file(path) : read_safetensors_header(path);
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
  // A sharded parameter (or its per-row optimizer state) whole, on rank 0; every rank takes part.
  auto whole = [&](const std::string& param, const Tensor& t) {
    if (!sharded || t.dim() == 0) return t;
    auto it = shards.rows.find(param);
    if (it == shards.rows.end()) return t;
    return gather_row_shards(*shards.comm, t, it->second, 0);
  };
  NamedTensorList tensors;
  nlohmann::json pnames = nlohmann::json::array();
  for (const auto& [name, t] : model.named_parameters()) {
    tensors.emplace_back(name, whole(name, t.detach()));
    pnames.push_back(name);
  }
  for (const auto& [name, t] : model.named_buffers()) tensors.emplace_back(name, t);
  for (const auto& [name, t] : tensors)
    RECHUB_CHECK(name.rfind(kOptimPrefix, 0) != 0, "save_checkpoint: model tensor '"
                                                       << name << "' starts with '" << kOptimPrefix
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
    for (auto& [name, t] : optimizer->state_tensors(&names))
      tensors.emplace_back(kOptimPrefix + name, whole(state_owner(name), t));
  }
  if (!writes) return;
  // CPU copies once, so the checksum and the file see the same bytes.
  for (auto& [name, t] : tensors)
    if (!t.device().is_cpu()) t = t.to(Device::cpu());
  uint32_t data_crc = 0;
  for (const auto& [name, t] : tensors) data_crc = crc32_update(data_crc, t.raw_data(), t.nbytes());
  md[kHeaderSumKey] = crc_str(header_crc(safetensors_header(tensors, md)));
  md[kDataSumKey] = crc_str(data_crc);
  write_safetensors(path, tensors, md);
}

nlohmann::json load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer) {
  return load_checkpoint(path, model, optimizer, RowShards{});
}

nlohmann::json load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer, const RowShards& shards) {
  const bool sharded = shards.active();
  const int rank = sharded ? shards.comm->rank() : 0, world = sharded ? shards.comm->size() : 1;
  // The rows over all ranks of a sharded parameter, -1 for the others.
  auto whole_rows = [&](const std::string& param) -> int64_t {
    if (!sharded) return -1;
    auto it = shards.rows.find(param);
    return it == shards.rows.end() ? -1 : it->second;
  };
  const SafetensorsFile st = open_checkpoint(path, true);
  std::vector<std::string> problems;
  check_integrity(st, true, problems);
  nlohmann::json record = parse_record(st, kRecordKey, true, problems);

  std::map<std::string, size_t> in_file;
  for (size_t i = 0; i < st.entries.size(); ++i) in_file[st.entries[i].name] = i;
  std::vector<std::tuple<Tensor, size_t, bool>> copies;  // model tensor <- entry (its rows of it)
  std::set<std::string> expected;
  auto expect = [&](const std::string& name, const Tensor& local, const char* what) {
    expected.insert(name);
    const int64_t rows = whole_rows(name);
    Tensor t = local;
    if (rows >= 0) {  // the file holds the whole table
      Shape s = local.shape();
      s[0] = rows;
      t = empty(s, {.dtype = local.dtype()});
    }
    auto it = in_file.find(name);
    if (it == in_file.end()) {
      problems.push_back(std::string("missing ") + what + " '" + name + "' " + shape_str(t.shape()) + " " +
                         dtype_name(t.dtype()));
      return;
    }
    const auto& e = st.entries[it->second];
    if (e.shape != t.shape() || e.dtype != t.dtype()) {
      problems.push_back(std::string(what) + " '" + name + "': the checkpoint has " + shape_str(e.shape) + " " +
                         dtype_name(e.dtype) + ", the model expects " + shape_str(t.shape()) + " " +
                         dtype_name(t.dtype()));
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
          Tensor t = st.tensor(i);
          const int64_t rows = whole_rows(state_owner(name));
          if (rows >= 0 && t.dim() >= 1 && t.size(0) == rows) t = row_shard_of(t, rank, world);  // this rank's rows
          optim_state.emplace_back(name, t);
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
      dst.copy_(rows_of ? row_shard_of(st.tensor(i), rank, world) : st.tensor(i));
    }
  }
  if (optimizer) optimizer->load_state(optim_state, optim_record, &names);
  return record;
}

nlohmann::json read_checkpoint_metadata(const std::string& path) {
  const SafetensorsFile st = open_checkpoint(path, false);
  std::vector<std::string> problems;
  check_integrity(st, false, problems);
  nlohmann::json record = parse_record(st, kRecordKey, true, problems);
  if (!problems.empty()) RECHUB_FAIL(join_problems("cannot read the metadata of checkpoint '" + path + "'", problems));
  return record;
}

CheckpointContents read_checkpoint(const std::string& path) {
  const SafetensorsFile st = open_checkpoint(path, true);
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
  for (size_t i = 0; i < st.entries.size(); ++i) {
    const std::string& n = st.entries[i].name;
    if (n.rfind(kOptimPrefix, 0) == 0)
      c.optimizer_state.emplace_back(n.substr(std::string(kOptimPrefix).size()), st.tensor(i));
    else
      c.tensors.emplace_back(n, st.tensor(i));
  }
  return c;
}

}  // namespace rechub::nn
