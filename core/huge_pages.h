#pragma once
// Blocks of memory that ask for transparent huge pages, each a mapping of its own, 2 MiB aligned,
// never memory that malloc manages: madvise(MADV_HUGEPAGE) on blocks from std::aligned_alloc
// (inside malloc's heap) made the 4 KiB-page blocks around them 3-5x slower to stream on our CI
// host (bench/RESULTS.md, "Huge pages"). The CPU storage allocator (core/storage.cpp) takes its
// large blocks from here, and so do the data module's large arrays (mtl/data/big_buffer.h).
#include <cstddef>

namespace rechub {

inline constexpr size_t kHugePageBytes = size_t(2) << 20;

// `bytes` (> 0) rounded up to whole huge pages: what map_huge_pages maps for that request.
inline size_t huge_pages_size(size_t bytes) { return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes; }

// A mapping of huge_pages_size(bytes) bytes, 2 MiB aligned, zero-filled, advised MADV_HUGEPAGE
// (advice only: the kernel may still use 4 KiB pages). nullptr when the system refuses the mapping.
void* map_huge_pages(size_t bytes);
// Gives back a block from map_huge_pages(bytes), with the same `bytes`.
void unmap_huge_pages(void* p, size_t bytes) noexcept;

}  // namespace rechub
