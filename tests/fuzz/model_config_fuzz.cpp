// libFuzzer target: a model's config JSON (what checkpoints carry and make_model reads). The first
// byte picks the model kind; the rest is the JSON text. Any input gives a model or a
// rechub::Error. Inputs with a size above 64 are left out: they describe models too large to
// build for every fuzz input, not parsing problems. Invariant: a built model's config_json()
// builds the same model again (same config, same parameter names and shapes).
#include <cmath>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/models/model.h"
#include "tests/fuzz/fuzz_util.h"

using namespace rechub;

namespace {
// Sizes (units, vocabularies, widths, counts) at most 64; seeds may be anything.
bool small_numbers(const nlohmann::json& j, const std::string& key = {}) {
  if (j.is_number()) {
    if (key.find("seed") != std::string::npos) return true;
    const double v = j.get<double>();
    return std::isfinite(v) && std::abs(v) <= 64;
  }
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      if (!small_numbers(it.value(), it.key())) return false;
  } else if (j.is_array()) {
    for (const auto& x : j)
      if (!small_numbers(x, key)) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const auto kinds = models::model_kinds();
  const std::string kind = kinds[data[0] % kinds.size()];
  const nlohmann::json j = nlohmann::json::parse(data + 1, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !small_numbers(j)) return 0;
  std::shared_ptr<models::MultiTaskModel> m;
  try {
    m = models::make_model(kind, j);
  } catch (const Error&) {
    return 0;
  }
  RECHUB_FUZZ_ASSERT(m->kind() == kind, "make_model built another kind");
  const nlohmann::json again = m->config_json();
  std::shared_ptr<models::MultiTaskModel> m2;
  try {
    m2 = models::make_model(kind, again);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    RECHUB_FUZZ_ASSERT(false, "a model's own config_json() is refused");
  }
  RECHUB_FUZZ_ASSERT(m2->config_json() == again, "config_json() does not round-trip");
  const auto a = m->named_parameters(), b = m2->named_parameters();
  RECHUB_FUZZ_ASSERT(a.size() == b.size(), "the rebuilt model has other parameters");
  for (size_t i = 0; i < a.size(); ++i)
    RECHUB_FUZZ_ASSERT(a[i].first == b[i].first && a[i].second.shape() == b[i].second.shape(),
                       "the rebuilt model has other parameters");
  return 0;
}
