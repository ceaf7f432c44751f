#include "rechub/mtl/data/big_buffer.h"

#include <sys/mman.h>

#include <cstdlib>

namespace rechub::data {

namespace {
constexpr size_t kHuge = size_t(2) << 20;
constexpr size_t kThreshold = size_t(2) << 20;
}  // namespace

void* big_allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  if (bytes >= kThreshold) {
    p = std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
    if (p) ::madvise(p, (bytes + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);  // a hint: failure is harmless
  } else {
    p = std::malloc(bytes);
  }
  if (!p) throw std::bad_alloc();
  return p;
}

void big_free(void* p) noexcept { std::free(p); }

}  // namespace rechub::data
