#pragma once
// XXH64 (Yann Collet's xxHash, 64-bit variant): the checksum of binary caches. Fast enough to
// verify a multi-gigabyte cache at memory speed, and a published algorithm with known test vectors
// (XXH64("", 0) = 0xEF46DB3751D8E999), so a cache can be checked by other tools.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rechub::data {

uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);
inline uint64_t xxh64(std::string_view s, uint64_t seed = 0) { return xxh64(s.data(), s.size(), seed); }

// Streaming form: update() in pieces of any size gives the same digest as one xxh64() call.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t len);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buf_len_ = 0;
};

}  // namespace rechub::data
