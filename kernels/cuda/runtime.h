#pragma once
// The CUDA runtime of rechub: device memory (a caching allocator over cudaMalloc, never managed
// memory), host <-> device copies, one stream per device, pinned host buffers for the data
// loader, and the global math settings. This header needs no CUDA headers.
#include <cstddef>
#include <cstdint>

namespace rechub::cuda {

// Installs the CUDA allocator and copier into core (set_cuda_allocator / set_cuda_copier).
// Runs once at static initialisation of this library; core also calls it before the first
// device allocation, so the registration never depends on the static linker keeping an object.
void ensure_registered();

// Number of visible devices; 0 when the driver or the devices are missing (never throws).
int device_count();
// Makes `index` the calling thread's current device (cheap when it already is).
void use_device(int index);
// Waits for all work queued on the device's stream (the current device when index < 0).
void synchronize(int index = -1);

// TF32 tensor-core GEMMs: faster, ~1e-3 relative error. Off by default (exact fp32 like PyTorch's
// default for matmul on Hopper is "highest" precision).
void set_allow_tf32(bool allow);
bool allow_tf32();

// Debugging aid for the parity tests: while on, every block the allocator hands out is filled
// with 0xFF bytes (NaN as f32, -1 as integers), so an element a kernel forgot to write shows up.
void set_poison_allocations(bool on);

struct AllocatorStats {
  size_t bytes_in_use = 0;       // held by live storages
  size_t bytes_cached = 0;       // freed blocks kept for reuse
  size_t peak_bytes_in_use = 0;
  size_t num_cuda_mallocs = 0;   // cudaMalloc calls so far (a steady training step adds none)
};
AllocatorStats allocator_stats(int index = 0);
// Returns every cached block of every device to the driver (cudaFree).
void release_cached_memory();

// Page-locked host memory (cudaHostAlloc): the loader fills batches here so that the copy to the
// device runs at full PCIe/NVLink speed and can overlap compute.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t nbytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  template <class T> T* as() const { return static_cast<T*>(data_); }
  // Queues a copy of the first `nbytes` to device memory `dst` on the device's stream; returns at
  // once. Call synchronize(device) before reusing this buffer.
  void copy_to_device_async(void* dst, int device, size_t nbytes) const;

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rechub::cuda
