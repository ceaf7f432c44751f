#include "rechub/mtl/data/vocabulary.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"

namespace rechub::data {

Vocabulary Vocabulary::fit(const std::vector<std::pair<std::string, int64_t>>& counts, int64_t min_freq,
                           int64_t max_size) {
  std::vector<const std::pair<std::string, int64_t>*> kept;
  const int64_t floor = min_freq < 1 ? 1 : min_freq;
  for (const auto& c : counts)
    if (c.second >= floor) kept.push_back(&c);
  std::sort(kept.begin(), kept.end(), [](const auto* a, const auto* b) {
    return a->second != b->second ? a->second > b->second : a->first < b->first;
  });
  if (max_size > 0 && static_cast<int64_t>(kept.size()) > max_size - 1) kept.resize(static_cast<size_t>(max_size - 1));
  Vocabulary v;
  v.values_.reserve(kept.size());
  for (const auto* c : kept) {
    const uint32_t code = v.index_.intern(c->first);
    if (code != v.values_.size()) throw Error("Vocabulary::fit: the value '" + c->first + "' is counted twice");
    v.values_.push_back(c->first);
  }
  return v;
}

nlohmann::json Vocabulary::to_json() const { return {{"values", values_}}; }

Vocabulary Vocabulary::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object() || !j.contains("values") || !j["values"].is_array())
    throw Error(origin + ": a vocabulary must be an object with a \"values\" array");
  Vocabulary v;
  for (const auto& e : j["values"]) {
    if (!e.is_string()) throw Error(origin + ": vocabulary values must be strings");
    const std::string s = e.get<std::string>();
    if (v.index_.intern(s) != v.values_.size()) throw Error(origin + ": the vocabulary lists '" + s + "' twice");
    v.values_.push_back(s);
  }
  return v;
}

const char* normalization_name(Normalization n) {
  switch (n) {
    case Normalization::none:
      return "none";
    case Normalization::min_max:
      return "min_max";
    case Normalization::standard:
      return "standard";
    case Normalization::log_standard:
      return "log_standard";
  }
  return "?";
}

Normalization normalization_from_name(const std::string& name) {
  if (name == "none") return Normalization::none;
  if (name == "min_max" || name == "minmax") return Normalization::min_max;
  if (name == "standard" || name == "zscore") return Normalization::standard;
  if (name == "log_standard") return Normalization::log_standard;
  throw Error("unknown normalisation '" + name + "' (use none, min_max, standard or log_standard)");
}

void Normalizer::Accumulator::add(const float* values, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = values[i];
    if (x != x) continue;
    if (n_ == 0) min_ = max_ = x;
    min_ = std::min(min_, x);
    max_ = std::max(max_, x);
    ++n_;
    const double d = x - mean_;
    mean_ += d / static_cast<double>(n_);
    m2_ += d * (x - mean_);
    const double lx = signed_log1p(x), ld = lx - log_mean_;
    log_mean_ += ld / static_cast<double>(n_);
    log_m2_ += ld * (lx - log_mean_);
  }
}

Normalizer Normalizer::Accumulator::finish(Normalization kind, MissingFill fill) const {
  Normalizer z;
  z.kind = kind;
  z.fill = fill == MissingFill::mean && n_ > 0 ? static_cast<float>(mean_) : 0.0f;
  if (n_ == 0) return z;
  if (kind == Normalization::min_max) {
    z.shift = min_;
    z.scale = max_ > min_ ? 1.0 / (max_ - min_) : 1.0;
  } else if (kind == Normalization::standard) {
    const double sd = std::sqrt(m2_ / static_cast<double>(n_));
    z.shift = mean_;
    z.scale = sd > 0 ? 1.0 / sd : 1.0;
  } else if (kind == Normalization::log_standard) {
    const double sd = std::sqrt(log_m2_ / static_cast<double>(n_));
    z.shift = log_mean_;
    z.scale = sd > 0 ? 1.0 / sd : 1.0;
  }
  return z;
}

Normalizer Normalizer::fit(const float* values, int64_t n, Normalization kind, MissingFill fill) {
  Accumulator a;
  a.add(values, n);
  return a.finish(kind, fill);
}

nlohmann::json Normalizer::to_json() const {
  return {{"kind", normalization_name(kind)}, {"shift", shift}, {"scale", scale}, {"fill", fill}};
}

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw Error(origin + ": a normaliser must be a JSON object");
  Normalizer z;
  try {
    z.kind = normalization_from_name(j.at("kind").get<std::string>());
    z.shift = j.at("shift").get<double>();
    z.scale = j.at("scale").get<double>();
    z.fill = j.at("fill").get<float>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(origin + ": bad normaliser: " + e.what());
  } catch (const Error& e) {
    throw Error(origin + ": " + e.what());
  }
  if (!std::isfinite(z.shift) || !std::isfinite(z.scale) || !std::isfinite(z.fill))
    throw Error(origin + ": a normaliser's shift, scale and fill must be finite");
  return z;
}

}  // namespace rechub::data
