// The data module's large arrays (BigVector: parsed cells, encoded datasets) take their blocks from
// the same huge-page mappings as the CPU storage allocator (core/huge_pages.h): from 2 MiB on, a
// mapping of its own, 2 MiB aligned, advised for transparent huge pages, never a block inside
// malloc's heap (whose 4 KiB-page neighbours madvise slowed; bench/RESULTS.md, "Huge pages").
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdint>
#include <numeric>

#include "rechub/core/huge_pages.h"
#include "rechub/mtl/data/big_buffer.h"
#include "support/smaps.h"

namespace rechub::data {
namespace {

constexpr uintptr_t kHugePage = uintptr_t(2) << 20;

TEST(BigVector, LargeArraysAreHugePageMappingsOfTheirOwn) {
  // Make malloc serve even large requests from its heap: a large array must still be outside it.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  for (size_t n : {size_t(1) << 19, (size_t(3) << 19) + 7, size_t(5) << 20}) {  // 2 MiB, ~6 MiB, 20 MiB
    SCOPED_TRACE(n);
    BigVector<int32_t> v(n);
    const auto p = reinterpret_cast<uintptr_t>(v.data());
    EXPECT_EQ(p % kHugePage, 0u);
    v.front() = 1;
    v.back() = 2;  // the whole array is mapped
    EXPECT_EQ(v.front() + v.back(), 3);
    const auto vma = testing::vma_of(p);
    ASSERT_TRUE(vma.has_value());
    EXPECT_EQ(vma->path, "") << "the array lies in " << vma->path << ", not in a mapping of its own";
    EXPECT_GE(vma->end - p, n * sizeof(int32_t));
    if (testing::kernel_has_thp()) {
      EXPECT_NE(vma->flags.find(" hg"), std::string::npos) << "VmFlags:" << vma->flags;
    }
  }
  mallopt(M_MMAP_THRESHOLD, 128 << 10);  // glibc's default
}

TEST(BigVector, FreedLargeArraysAreUnmapped) {
  uintptr_t p = 0;
  {
    BigVector<float> v(size_t(3) << 20);  // 12 MiB
    p = reinterpret_cast<uintptr_t>(v.data());
  }
  EXPECT_FALSE(testing::vma_of(p).has_value()) << "the 12 MiB array is still mapped after it was freed";
}

TEST(BigVector, GrowsAcrossTheThresholdKeepingItsValues) {
  // push_back moves the values from malloc blocks into huge-page mappings and between mappings.
  BigVector<int64_t> v;
  const size_t n = (size_t(5) << 20) / sizeof(int64_t) + 3;  // past 5 MiB
  for (size_t i = 0; i < n; ++i) v.push_back(static_cast<int64_t>(i) * 3 - 7);
  ASSERT_EQ(v.size(), n);
  for (size_t i = 0; i < n; i += 997) ASSERT_EQ(v[i], static_cast<int64_t>(i) * 3 - 7) << i;
  EXPECT_EQ(v.back(), static_cast<int64_t>(n - 1) * 3 - 7);
  BigVector<int64_t> copy = v;
  EXPECT_EQ(std::accumulate(copy.begin(), copy.end(), int64_t(0)), std::accumulate(v.begin(), v.end(), int64_t(0)));
  v.resize(10);
  v.shrink_to_fit();  // back to a malloc block
  EXPECT_EQ(v[9], 9 * 3 - 7);
}

TEST(HugePages, MapsWholeAlignedZeroedPagesAndUnmapsThem) {
  EXPECT_EQ(huge_pages_size(1), kHugePage);
  EXPECT_EQ(huge_pages_size(kHugePage), kHugePage);
  EXPECT_EQ(huge_pages_size(kHugePage + 1), 2 * kHugePage);
  const size_t bytes = (size_t(5) << 20) + 5;  // 6 MiB mapped
  auto* p = static_cast<unsigned char*>(map_huge_pages(bytes));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHugePage, 0u);
  size_t nonzero = 0;
  for (size_t i = 0; i < huge_pages_size(bytes); i += 4096) nonzero += p[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  p[huge_pages_size(bytes) - 1] = 7;  // the rounded-up tail is mapped too
  unmap_huge_pages(p, bytes);
  EXPECT_FALSE(testing::vma_of(reinterpret_cast<uintptr_t>(p)).has_value());
}

}  // namespace
}  // namespace rechub::data
