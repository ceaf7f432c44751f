#include "rechub/mtl/data/big_buffer.h"

#include <cstdlib>

#include "rechub/core/huge_pages.h"

namespace rechub::data {

namespace {
// Arrays from this size on are huge-page mappings of their own (core/huge_pages.h), the same
// blocks the CPU storage allocator uses; smaller ones come from malloc.
constexpr size_t kThreshold = kHugePageBytes;
}  // namespace

void* big_allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = bytes >= kThreshold ? map_huge_pages(bytes) : std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  return p;
}

void big_free(void* p, size_t bytes) noexcept {
  if (bytes == 0) bytes = 1;
  if (bytes >= kThreshold)
    unmap_huge_pages(p, bytes);
  else
    std::free(p);
}

}  // namespace rechub::data
