#pragma once
// Vocabulary: raw values of a sparse feature -> contiguous ids, fitted on the training split.
// Id 0 is reserved for out-of-vocabulary values (unseen in training, rarer than min_freq, or
// missing); ids 1..size()-1 go to the kept values, most frequent first (ties in byte order), so
// the ids depend on the training data only, not on its row order.
//
// Normalizer: a dense feature's fill value for missing entries and its affine normalisation,
// fitted on the training split.
#include <cmath>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rechub/mtl/data/dictionary.h"

namespace rechub::data {

class Vocabulary {
 public:
  Vocabulary() = default;  // only the OOV id
  // Keeps the values with count >= min_freq (and count > 0); max_size > 0 caps size() (the OOV id
  // included) by keeping the most frequent.
  static Vocabulary fit(const std::vector<std::pair<std::string, int64_t>>& counts, int64_t min_freq,
                        int64_t max_size = 0);

  int64_t size() const { return static_cast<int64_t>(values_.size()) + 1; }
  // The id of a raw value: 0 when it is not in the vocabulary.
  int64_t id(std::string_view value) const {
    const int64_t c = index_.find(value);
    return c < 0 ? 0 : c + 1;
  }
  // The raw value of id 1..size()-1.
  const std::string& value(int64_t id) const { return values_[static_cast<size_t>(id - 1)]; }

  nlohmann::json to_json() const;  // {"values": [id 1, id 2, ...]}
  static Vocabulary from_json(const nlohmann::json& j, const std::string& origin = "<json>");

 private:
  std::vector<std::string> values_;
  Dictionary index_;  // value -> id - 1
};

// log_standard: standard on sign(x) log(1 + |x|), for heavy-tailed counts and amounts (capital
// gains up to 99,999 next to ages): the log keeps one extreme row from setting the scale.
enum class Normalization : uint8_t { none, min_max, standard, log_standard };
const char* normalization_name(Normalization n);
// "none", "min_max", "standard", "log_standard"
Normalization normalization_from_name(const std::string& name);

enum class MissingFill : uint8_t { mean, zero };

struct Normalizer {
  Normalization kind = Normalization::none;
  double shift = 0;  // y = (x - shift) * scale
  double scale = 1;
  float fill = 0;  // the raw value that stands for a missing one (NaN)

  float apply(float raw) const {
    double x = raw != raw ? fill : raw;  // NaN: missing
    if (kind == Normalization::log_standard) x = signed_log1p(x);
    return static_cast<float>((x - shift) * scale);
  }
  static double signed_log1p(double x) { return x < 0 ? -std::log1p(-x) : std::log1p(x); }
  // From the training values (NaN = missing, ignored). min_max maps [min, max] to [0, 1],
  // standard to mean 0, std 1, log_standard does so after signed_log1p; a constant column keeps
  // scale 1.
  static Normalizer fit(const float* values, int64_t n, Normalization kind, MissingFill fill);
  // Streaming fit over several blocks.
  class Accumulator {
   public:
    void add(const float* values, int64_t n);
    Normalizer finish(Normalization kind, MissingFill fill) const;

   private:
    int64_t n_ = 0;
    double mean_ = 0, m2_ = 0;          // Welford
    double log_mean_ = 0, log_m2_ = 0;  // the same on signed_log1p(x)
    double min_ = 0, max_ = 0;
  };

  nlohmann::json to_json() const;
  static Normalizer from_json(const nlohmann::json& j, const std::string& origin = "<json>");
};

}  // namespace rechub::data
