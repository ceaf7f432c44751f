#pragma once
// Dictionary: the distinct raw values of one categorical column, in order of first appearance,
// with their counts. The CSV reader stores a categorical column as 32-bit codes into its
// dictionary (pandas' "factorize"); a vocabulary is later fitted from the counts alone, so the
// binary cache never depends on vocabulary options.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rechub::data {

class Dictionary {
 public:
  // The code of a missing value that is to become the out-of-vocabulary id (never in the table).
  static constexpr uint32_t kMissing = 0xFFFFFFFFu;
  static constexpr uint32_t kMaxSize = 0xFFFFFFF0u;

  // The code of `value`, added (with count 0) when new. Throws rechub::Error past kMaxSize values.
  uint32_t intern(std::string_view value) {
    // Inline fast path: a canonical decimal integer already in the direct table.
    const size_t n = value.size();
    if (n - 1 < 7) {
      uint32_t x = 0;
      bool ok = value[0] != '0' || n == 1;
      for (char c : value) {
        const unsigned d = static_cast<unsigned char>(c) - unsigned('0');
        ok = ok && d <= 9;
        x = x * 10 + d;
      }
      if (ok && x < direct_.size() && direct_[x] != 0) return direct_[x] - 1;
    }
    return intern_slow(value);
  }
  // The code of `value` or -1.
  int64_t find(std::string_view value) const;

  size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }
  const std::string& value(uint32_t code) const { return values_[code]; }
  const std::vector<std::string>& values() const { return values_; }
  int64_t count(uint32_t code) const { return counts_[code]; }
  const std::vector<int64_t>& counts() const { return counts_; }
  void add_count(uint32_t code, int64_t n = 1) { counts_[code] += n; }
  void set_count(uint32_t code, int64_t n) { counts_[code] = n; }

  // Forgets every value but keeps the memory (a parser reuses its dictionaries window after window).
  void clear();

  // Adds every value of `other` (summing counts) and returns the map other-code -> this-code.
  std::vector<uint32_t> merge(const Dictionary& other);

 private:
  uint32_t intern_slow(std::string_view value);
  uint32_t add(std::string_view value, uint64_t hash);
  void grow_slots();

  std::vector<std::string> values_;
  std::vector<int64_t> counts_;
  // Canonical decimal integers below kDirectLimit (the common case: ids that are already
  // label-encoded) are found by direct indexing: direct_[v] = code + 1, 0 = absent.
  std::vector<uint32_t> direct_;
  // Everything else: open addressing over codes (code + 1, 0 = empty), linear probing.
  std::vector<uint32_t> slots_;
  std::vector<uint64_t> hashes_;  // per code, for rehashing without touching the strings
  size_t hashed_ = 0;
};

}  // namespace rechub::data
