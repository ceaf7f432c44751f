// libFuzzer target: the binary cache reader on any bytes. The first byte says whether the
// checksum is verified (without it the structural checks alone must hold). Any input must give a
// table or a rechub::Error, and every cell of a table must be readable.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "rechub/core/error.h"
#include "rechub/mtl/data/cache.h"

using namespace rechub::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool verify = (data[0] & 1) != 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const ColumnTable t = read_cache_bytes(body, "fuzz.rhcache", verify);
    volatile uint64_t sum = 0;
    for (int c = 0; c < t.num_columns(); ++c) {
      const Dictionary& d = t.dictionary(c);
      for (uint32_t k = 0; k < d.size(); ++k) sum = sum + d.value(k).size() + static_cast<uint64_t>(d.count(k));
      for (int64_t r = 0; r < t.rows(); ++r) sum = sum + t.code(r, c);
    }
  } catch (const rechub::Error&) {
  }
  return 0;
}
