#pragma once
// Storage: one allocation on one device, shared by a tensor and its views. The CPU allocator
// caches freed blocks by size class (a dynamic tape allocates the same sizes every step) and
// returns 64-byte aligned memory.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "rechub/core/device.h"

namespace rechub {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // Bumped by every in-place change; autograd compares it with the value seen when a tensor was
  // saved for backward, to catch "modified after it was used" bugs.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  size_t capacity_ = 0;
  Device device_;
  std::atomic<uint64_t> version_{0};
};

// Byte copies between devices: CPU-to-CPU is memcpy, anything touching a GPU goes through the
// CUDA backend's copy (kernels/cuda/runtime.h); an Error without that backend.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

struct CpuAllocatorStats {
  size_t bytes_in_use = 0;  // held by live storages
  size_t bytes_cached = 0;  // freed blocks kept for reuse
  size_t peak_bytes_in_use = 0;
};
CpuAllocatorStats cpu_allocator_stats();
void cpu_allocator_reset_peak();
// Returns every cached block to the system.
void cpu_allocator_release_cache();

}  // namespace rechub
