// libFuzzer target: the schema file (load_schema: a schema object, or a data config with a
// "schema" member). Any input gives a validated schema or a rechub::Error. Invariant: a loaded
// schema written with schema_to_json reads back to the same JSON and validates.
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/schema.h"
#include "tests/fuzz/fuzz_util.h"

using namespace rechub;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::input_path(".schema.json");
  fuzz::write_input(path, data, size);
  data::Schema s;
  try {
    s = data::load_schema(path);
    data::validate_schema(s);
  } catch (const Error&) {
    return 0;
  }
  const nlohmann::json j = data::schema_to_json(s);
  data::Schema again;
  try {
    again = data::schema_from_json(j, "round trip");
    data::validate_schema(again);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    RECHUB_FUZZ_ASSERT(false, "a loaded schema's own JSON is refused");
  }
  RECHUB_FUZZ_ASSERT(data::schema_to_json(again) == j, "schema JSON does not round-trip");
  return 0;
}
