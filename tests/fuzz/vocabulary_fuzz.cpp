// libFuzzer target: the fitted preprocessor file (Preprocessor::load: schema, one vocabulary per
// sparse feature, normalisers; what `rechub` saves and checkpoints carry). The first byte picks
// the reader: even, the whole file; odd, one vocabulary object (Vocabulary::from_json). Any input
// gives a value or a rechub::Error. Invariants: a vocabulary maps id k back to itself through its
// value (ids 1..size-1, no value twice), and both readers round-trip their own to_json().
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/vocabulary.h"
#include "tests/fuzz/fuzz_util.h"

using namespace rechub;

namespace {
void check_vocabulary(const data::Vocabulary& v) {
  for (int64_t k = 1; k < v.size(); ++k)
    RECHUB_FUZZ_ASSERT(v.id(v.value(k)) == k, "vocabulary ids are not a bijection");
  const nlohmann::json j = v.to_json();
  data::Vocabulary again;
  try {
    again = data::Vocabulary::from_json(j, "round trip");
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    RECHUB_FUZZ_ASSERT(false, "a vocabulary's own JSON is refused");
  }
  RECHUB_FUZZ_ASSERT(again.to_json() == j, "vocabulary JSON does not round-trip");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    const nlohmann::json j = nlohmann::json::parse(data + 1, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
    try {
      check_vocabulary(data::Vocabulary::from_json(j, "fuzz"));
    } catch (const Error&) {
    }
    return 0;
  }
  static const std::string path = fuzz::input_path(".preprocessor.json");
  fuzz::write_input(path, data + 1, size - 1);
  std::unique_ptr<data::Preprocessor> p;
  try {
    p = std::make_unique<data::Preprocessor>(data::Preprocessor::load(path));
  } catch (const Error&) {
    return 0;
  }
  for (const auto& f : p->schema().sparse) check_vocabulary(p->vocabulary(f.name));
  const nlohmann::json j = p->to_json();
  try {
    const data::Preprocessor again = data::Preprocessor::from_json(j, "round trip");
    RECHUB_FUZZ_ASSERT(again.to_json() == j, "preprocessor JSON does not round-trip");
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    RECHUB_FUZZ_ASSERT(false, "a preprocessor's own JSON is refused");
  }
  return 0;
}
