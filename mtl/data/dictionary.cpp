#include "rechub/mtl/data/dictionary.h"

#include <algorithm>
#include <cstring>

#include "rechub/core/error.h"

namespace rechub::data {

namespace {

constexpr uint32_t kDirectLimit = 1u << 20;

inline uint64_t mix(uint64_t h) {
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  return h;
}

// Short tokens (ids, category names): 8 bytes at a time, then a final avalanche.
inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0x94d049bb133111ebULL);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = mix(h ^ w) * 0x9E3779B97F4A7C15ULL;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = mix(h ^ w);
  return h ^ (h >> 32);
}

// "0", "17", "1048575": digits only, no sign, no leading zero, below the direct limit.
inline bool small_int(std::string_view t, uint32_t& v) {
  if (t.empty() || t.size() > 7 || (t[0] == '0' && t.size() > 1)) return false;
  uint32_t x = 0;
  for (char c : t) {
    const unsigned d = static_cast<unsigned char>(c) - '0';
    if (d > 9) return false;
    x = x * 10 + d;
  }
  if (x >= kDirectLimit) return false;
  v = x;
  return true;
}

}  // namespace

uint32_t Dictionary::add(std::string_view value, uint64_t hash) {
  if (values_.size() >= kMaxSize)
    throw Error("a categorical column has more than " + std::to_string(kMaxSize) + " distinct values");
  const auto code = static_cast<uint32_t>(values_.size());
  values_.emplace_back(value);
  counts_.push_back(0);
  hashes_.push_back(hash);
  return code;
}

void Dictionary::grow_slots() {
  const size_t cap = slots_.empty() ? 64 : slots_.size() * 2;
  slots_.assign(cap, 0);
  const size_t mask = cap - 1;
  for (size_t code = 0; code < values_.size(); ++code) {
    if (hashes_[code] == 0) continue;  // stored in the direct table
    size_t i = hashes_[code] & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = static_cast<uint32_t>(code + 1);
  }
}

uint32_t Dictionary::intern_slow(std::string_view value) {
  uint32_t v;
  if (small_int(value, v)) {
    if (v >= direct_.size()) {
      size_t n = direct_.empty() ? 1024 : direct_.size();
      while (n <= v) n *= 2;
      direct_.resize(n < kDirectLimit ? n : kDirectLimit, 0);
    }
    uint32_t& slot = direct_[v];
    if (slot == 0) slot = add(value, 0) + 1;
    return slot - 1;
  }
  uint64_t h = hash_bytes(value.data(), value.size());
  if (h == 0) h = 1;  // 0 marks a direct entry in hashes_
  if ((hashed_ + 1) * 2 > slots_.size()) grow_slots();
  const size_t mask = slots_.size() - 1;
  size_t i = h & mask;
  while (slots_[i] != 0) {
    const uint32_t code = slots_[i] - 1;
    if (hashes_[code] == h && values_[code] == value) return code;
    i = (i + 1) & mask;
  }
  const uint32_t code = add(value, h);
  slots_[i] = code + 1;
  ++hashed_;
  return code;
}

int64_t Dictionary::find(std::string_view value) const {
  uint32_t v;
  if (small_int(value, v)) {
    if (v >= direct_.size() || direct_[v] == 0) return -1;
    return direct_[v] - 1;
  }
  if (slots_.empty()) return -1;
  uint64_t h = hash_bytes(value.data(), value.size());
  if (h == 0) h = 1;
  const size_t mask = slots_.size() - 1;
  size_t i = h & mask;
  while (slots_[i] != 0) {
    const uint32_t code = slots_[i] - 1;
    if (hashes_[code] == h && values_[code] == value) return code;
    i = (i + 1) & mask;
  }
  return -1;
}

void Dictionary::clear() {
  for (size_t code = 0; code < values_.size(); ++code) {
    uint32_t v;
    if (hashes_[code] == 0 && small_int(values_[code], v)) direct_[v] = 0;
  }
  std::fill(slots_.begin(), slots_.end(), 0u);
  values_.clear();
  counts_.clear();
  hashes_.clear();
  hashed_ = 0;
}

std::vector<uint32_t> Dictionary::merge(const Dictionary& other) {
  std::vector<uint32_t> map(other.size());
  for (size_t c = 0; c < other.size(); ++c) {
    const uint32_t code = intern(other.values_[c]);
    counts_[code] += other.counts_[c];
    map[c] = code;
  }
  return map;
}

}  // namespace rechub::data
