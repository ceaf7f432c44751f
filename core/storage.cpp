#include "rechub/core/storage.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "rechub/core/error.h"
#include "rechub/core/huge_pages.h"
#ifdef RECHUB_WITH_CUDA
#include "rechub/kernels/cuda/runtime.h"
#endif

namespace rechub {

namespace {

// Size classes: four per power of two (2^k, 1.25, 1.5, 1.75 * 2^k), 64-byte multiples, so a
// block wastes at most ~25 % and a steady training step reuses the same blocks every time.
// Blocks from this size on get transparent huge pages: embedding tables and their optimizer
// moments, whose rows are read and written scattered (a TLB miss per row on 4 KiB pages; sparse
// Adam ~10 % faster). Smaller blocks (activations, streamed in order) keep 4 KiB pages: with
// 2 MiB alignment, several of them alias in the caches (PLE at batch 1024 lost ~4 %).
constexpr size_t kHugeFrom = size_t(8) << 20;

// A huge-page block is a mapping of its own (core/huge_pages.h), never memory that malloc manages.
bool is_huge(size_t c) { return c >= kHugeFrom; }
void* allocate_block(size_t c) { return is_huge(c) ? map_huge_pages(c) : std::aligned_alloc(64, c); }
void free_block(void* p, size_t c) {
  if (is_huge(c))
    unmap_huge_pages(p, c);
  else
    std::free(p);
}

size_t size_class(size_t n) {
  if (n <= 256) return (n + 63) / 64 * 64;
  if (n >= kHugeFrom) n = huge_pages_size(n);  // whole huge pages
  size_t p = 1;
  while (p * 2 <= n) p *= 2;
  const size_t step = p / 4;
  return (n + step - 1) / step * step;
}

class CpuAllocator {
 public:
  static CpuAllocator& get() {
    static CpuAllocator* a = new CpuAllocator();  // never destroyed: storages may outlive statics
    return *a;
  }
  void* allocate(size_t n, size_t* cap) {
    const size_t c = size_class(n == 0 ? 1 : n);
    *cap = c;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stats_.bytes_in_use += c;
      if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
#ifndef RECHUB_NO_CACHING_ALLOCATOR
      auto it = free_.find(c);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.bytes_cached -= c;
        return p;
      }
#endif
    }
    void* p = allocate_block(c);
    if (!p) {
      std::lock_guard<std::mutex> lk(mu_);
      stats_.bytes_in_use -= c;
      RECHUB_FAIL("out of host memory allocating " << n << " bytes");
    }
    return p;
  }
  void deallocate(void* p, size_t c) {
#ifndef RECHUB_NO_CACHING_ALLOCATOR
    std::lock_guard<std::mutex> lk(mu_);
    stats_.bytes_in_use -= c;
    // Keep at most 2 GiB cached; beyond that give blocks back.
    if (stats_.bytes_cached + c <= (size_t(2) << 30)) {
      free_[c].push_back(p);
      stats_.bytes_cached += c;
      return;
    }
#else
    {
      std::lock_guard<std::mutex> lk(mu_);
      stats_.bytes_in_use -= c;
    }
#endif
    free_block(p, c);
  }
  CpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  void release() {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [c, v] : free_)
      for (void* p : v) free_block(p, c);
    free_.clear();
    stats_.bytes_cached = 0;
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  CpuAllocatorStats stats_;
};

}  // namespace

// Core calls the CUDA backend's memory functions (kernels/cuda/runtime.h); the backend never calls
// core. Without the backend, a GPU device is an Error here.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#ifdef RECHUB_WITH_CUDA
  cuda::copy_bytes(dst, dst_dev.is_cpu() ? -1 : dst_dev.index, src, src_dev.is_cpu() ? -1 : src_dev.index, nbytes);
#else
  RECHUB_FAIL("cannot copy " << src_dev.str() << " -> " << dst_dev.str()
                             << ": this build of rechub has no CUDA backend");
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }
int cuda_device_count() {
#ifdef RECHUB_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    data_ = CpuAllocator::get().allocate(nbytes, &capacity_);
    return;
  }
#ifdef RECHUB_WITH_CUDA
  data_ = cuda::device_allocate(nbytes, device.index, &capacity_);
#else
  RECHUB_FAIL("cannot allocate on " << device.str() << ": this build of rechub has no CUDA backend");
#endif
}

Storage::~Storage() {
  if (!data_) return;
  if (device_.is_cpu()) {
    CpuAllocator::get().deallocate(data_, capacity_);
    return;
  }
#ifdef RECHUB_WITH_CUDA
  cuda::device_deallocate(data_, capacity_, device_.index);
#endif
}

CpuAllocatorStats cpu_allocator_stats() { return CpuAllocator::get().stats(); }
void cpu_allocator_reset_peak() { CpuAllocator::get().reset_peak(); }
void cpu_allocator_release_cache() { CpuAllocator::get().release(); }

}  // namespace rechub
