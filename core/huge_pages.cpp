#include "rechub/core/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace rechub {

void* map_huge_pages(size_t bytes) {
  const size_t c = huge_pages_size(bytes == 0 ? 1 : bytes);
  const size_t len = c + kHugePageBytes;  // room to align the start
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<uintptr_t>(m);
  const uintptr_t p = (base + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (p > base) munmap(m, p - base);  // unmap the slack on both sides: the block is [p, p + c)
  if (base + len > p + c) munmap(reinterpret_cast<void*>(p + c), base + len - (p + c));
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(p), c, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  return reinterpret_cast<void*>(p);
}

void unmap_huge_pages(void* p, size_t bytes) noexcept {
  if (p) munmap(p, huge_pages_size(bytes == 0 ? 1 : bytes));
}

}  // namespace rechub
