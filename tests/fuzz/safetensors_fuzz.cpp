// libFuzzer target: the safetensors reader (nn/safetensors.h) on any bytes. Any input gives a
// parsed file or a rechub::Error. For a parsed file: every entry's byte range lies in the data
// section and holds exactly shape-product * dtype-size bytes, the ranges tile the data section,
// and every loaded tensor has the entry's shape, dtype and numel; read_safetensors agrees.
#include <cstdio>

#include "rechub/core/error.h"
#include "rechub/nn/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using namespace rechub;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::input_path(".safetensors");
  fuzz::write_input(path, data, size);
  nn::SafetensorsFile st;
  try {
    st = nn::read_safetensors_file(path);
  } catch (const Error&) {
    return 0;
  }
  uint64_t covered = 0;
  for (size_t i = 0; i < st.entries.size(); ++i) {
    const nn::SafetensorsEntry& e = st.entries[i];
    RECHUB_FUZZ_ASSERT(e.begin <= e.end && e.end <= st.data_size(), "entry outside the data section");
    RECHUB_FUZZ_ASSERT(e.begin == covered, "entries do not tile the data section");
    covered = e.end;
    int64_t numel = 1;
    for (int64_t d : e.shape) {
      RECHUB_FUZZ_ASSERT(d >= 0, "negative dimension accepted");
      numel *= d;
    }
    RECHUB_FUZZ_ASSERT(e.end - e.begin == static_cast<uint64_t>(numel) * dtype_size(e.dtype),
                       "byte range does not match shape and dtype");
    const Tensor t = st.tensor(i);
    RECHUB_FUZZ_ASSERT(t.shape() == e.shape && t.dtype() == e.dtype && t.numel() == numel,
                       "loaded tensor does not have the entry's shape");
    RECHUB_FUZZ_ASSERT(t.nbytes() == e.end - e.begin, "loaded tensor size differs from its byte range");
  }
  RECHUB_FUZZ_ASSERT(covered == st.data_size(), "bytes after the last tensor accepted");
  const auto list = nn::read_safetensors(path);
  RECHUB_FUZZ_ASSERT(list.size() == st.entries.size(), "read_safetensors disagrees with read_safetensors_file");
  for (const auto& [name, t] : list) {
    int64_t numel = 1;
    for (int64_t d : t.shape()) numel *= d;
    RECHUB_FUZZ_ASSERT(t.numel() == numel, "tensor size does not match its shape");
  }
  return 0;
}
