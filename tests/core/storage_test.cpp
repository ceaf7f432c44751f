// The CPU allocator's huge-page blocks (8 MiB and more: embedding tables, optimizer moments) are
// mappings of their own, 2 MiB aligned and advised for transparent huge pages, never memory
// inside malloc's heap; they go back to the system with munmap.
#include "rechub/core/storage.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "rechub/core/tensor.h"
#include "support/smaps.h"

namespace rechub {
namespace {

using testing::kernel_has_thp;
using testing::vma_of;

constexpr uintptr_t kHugePage = uintptr_t(2) << 20;

TEST(CpuAllocator, LargeBlocksAreHugePageAlignedMappingsOfTheirOwn) {
  // Make malloc serve even large requests from its heap (glibc raises this threshold by itself
  // once large blocks have been freed): a huge-page block must still be outside it.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  // 7.5 MiB rounds up to the 8 MiB class; the others are not multiples of 2 MiB.
  for (int64_t bytes : {int64_t(15) << 19, (int64_t(12) << 20) + 4, int64_t(30) << 20}) {
    SCOPED_TRACE(bytes);
    Tensor t = empty({bytes / 4}, {.dtype = DType::f32});
    const auto p = reinterpret_cast<uintptr_t>(t.raw_data());
    EXPECT_EQ(p % kHugePage, 0u);
    float* f = t.data<float>();
    f[0] = 1.f;
    f[t.numel() - 1] = 2.f;  // the whole block is mapped
    EXPECT_EQ(f[0] + f[t.numel() - 1], 3.f);
    const auto vma = vma_of(p);
    ASSERT_TRUE(vma.has_value());
    EXPECT_EQ(vma->path, "") << "the block lies in " << vma->path << ", not in a mapping of its own";
    EXPECT_GE(vma->end - p, static_cast<uintptr_t>(bytes));
    if (kernel_has_thp()) {
      EXPECT_NE(vma->flags.find(" hg"), std::string::npos) << "VmFlags:" << vma->flags;
    }
  }
  mallopt(M_MMAP_THRESHOLD, 128 << 10);  // glibc's default
}

TEST(CpuAllocator, SmallerBlocksAreNotAdvisedForHugePages) {
  if (!kernel_has_thp()) GTEST_SKIP() << "this kernel has no transparent huge pages";
  Tensor t = empty({int64_t(1) << 20});  // 4 MiB
  const auto vma = vma_of(reinterpret_cast<uintptr_t>(t.raw_data()));
  ASSERT_TRUE(vma.has_value());
  EXPECT_EQ(vma->flags.find(" hg"), std::string::npos) << "VmFlags:" << vma->flags;
}

TEST(CpuAllocator, ReleasingTheCacheUnmapsHugePageBlocks) {
  uintptr_t p = 0;
  {
    Tensor t = empty({int64_t(4) << 20});  // 16 MiB
    p = reinterpret_cast<uintptr_t>(t.raw_data());
  }  // cached (or, without the caching allocator, unmapped already)
  cpu_allocator_release_cache();
  EXPECT_FALSE(vma_of(p).has_value()) << "the 16 MiB block is still mapped after release";
}

}  // namespace
}  // namespace rechub
