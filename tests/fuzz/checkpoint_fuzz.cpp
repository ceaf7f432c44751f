// libFuzzer target: load_checkpoint on any bytes, into a fixed model (embeddings, an MLP with
// BatchNorm buffers) and an Adam optimizer with state. The first byte picks the mode: bit 0
// recomputes the two CRC32 checksums of an input that parses as safetensors (otherwise random
// bytes rarely get past them to the structural checks), bit 1 passes the optimizer. Invariant:
// a checkpoint either loads completely (every model tensor and optimizer state tensor equals the
// file's) or is refused with a rechub::Error and the model and optimizer are bit for bit as before.
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <map>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/checkpoint.h"
#include "tests/fuzz/checkpoint_net.h"
#include "tests/fuzz/fuzz_util.h"

using namespace rechub;

namespace {

struct State {
  std::unique_ptr<fuzz::CheckpointNet> net = std::make_unique<fuzz::CheckpointNet>();
  std::unique_ptr<nn::Adam> opt;
  State() {
    opt = std::make_unique<nn::Adam>(std::vector<nn::ParamGroup>{{net->parameters(), 0.01}});
    opt->zero_grad();
    backward(ops::sum(net->forward(from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 0}, {3, 2}))));
    opt->step();
  }
};

std::map<std::string, std::string> bytes_of(const fuzz::CheckpointNet& m, const nn::Optimizer* opt) {
  std::map<std::string, std::string> out;
  auto add = [&](const std::string& k, const Tensor& t) {
    out[k] = std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
  };
  for (auto& [n, t] : m.named_parameters()) add(n, t);
  for (auto& [n, t] : m.named_buffers()) add(n, t);
  if (opt)
    for (auto& [n, t] : opt->state_tensors()) add("optim." + n, t);
  return out;
}

std::string crc(uint32_t c) {
  char b[32];
  std::snprintf(b, sizeof(b), "crc32:%08x", c);
  return b;
}

// Rewrites a parsable safetensors file with correct checksums (as save_checkpoint computes them).
bool fix_checksums(const std::string& in, const std::string& out) {
  try {
    std::map<std::string, std::string> md;
    const nn::NamedTensorList tensors = nn::read_safetensors(in, &md);
    md.erase("rechub.header_checksum");
    md.erase("rechub.data_checksum");
    uLong data = 0;
    for (const auto& [n, t] : tensors)
      data = ::crc32(data, static_cast<const Bytef*>(t.raw_data()), static_cast<uInt>(t.nbytes()));
    const std::string canon = nn::safetensors_header(tensors, md).dump();
    md["rechub.header_checksum"] = crc(static_cast<uint32_t>(
        ::crc32(0, reinterpret_cast<const Bytef*>(canon.data()), static_cast<uInt>(canon.size()))));
    md["rechub.data_checksum"] = crc(static_cast<uint32_t>(data));
    nn::write_safetensors(out, tensors, md);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const std::string raw = fuzz::input_path(".raw.safetensors"), fixed = fuzz::input_path(".fixed.safetensors");
  static State s;
  const bool fix = (data[0] & 1) != 0, with_opt = (data[0] & 2) != 0;
  fuzz::write_input(raw, data + 1, size - 1);
  const std::string* path = &raw;
  if (fix) {
    if (!fix_checksums(raw, fixed)) return 0;
    path = &fixed;
  }
  nn::Optimizer* opt = with_opt ? s.opt.get() : nullptr;
  const auto before = bytes_of(*s.net, s.opt.get());
  try {
    nn::load_checkpoint(*path, *s.net, opt);
  } catch (const Error&) {
    RECHUB_FUZZ_ASSERT(bytes_of(*s.net, s.opt.get()) == before, "a refused checkpoint changed the model or optimizer");
    return 0;
  }
  // Loaded: every model tensor (and the optimizer's state when given) is the file's.
  std::map<std::string, std::string> file;
  for (const auto& [n, t] : nn::read_safetensors(*path))
    file[n] = std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
  for (const auto& [name, bytes] : bytes_of(*s.net, opt)) {
    auto it = file.find(name);
    RECHUB_FUZZ_ASSERT(it != file.end(), "a loaded checkpoint lacks a model tensor");
    RECHUB_FUZZ_ASSERT(it->second == bytes, "a loaded tensor differs from the file's");
  }
  // Restore the fixed starting point, so each input sees the same model.
  s = State();
  return 0;
}
