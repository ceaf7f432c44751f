#pragma once
// The CUDA runtime of rechub: device memory (a caching allocator over cudaMalloc, never managed
// memory), host <-> device copies, one stream per device, pinned host buffers for the data
// loader, and the global math settings. This header needs no CUDA headers.
#include <cstddef>
#include <cstdint>

namespace rechub::cuda {

// Device memory and copies, for core's Storage (core calls these; nothing here calls core).
// A block of at least nbytes on device `index` from the caching allocator; *capacity gets its size.
void* device_allocate(size_t nbytes, int index, size_t* capacity);
void device_deallocate(void* p, size_t capacity, int index);
// nbytes from src to dst; a device index < 0 means host memory (pageable, owned by the caller, so
// a copy that touches it completes before returning; device-to-device copies stay queued).
void copy_bytes(void* dst, int dst_index, const void* src, int src_index, size_t nbytes);

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
  size_t bytes_in_use = 0;  // held by live storages
  size_t bytes_cached = 0;  // freed blocks kept for reuse
  size_t peak_bytes_in_use = 0;
  size_t num_cuda_mallocs = 0;  // cudaMalloc calls so far (a steady training step adds none)
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
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  // Queues a copy of the first `nbytes` to device memory `dst` on the device's stream; returns at
  // once. Call synchronize(device) before reusing this buffer.
  void copy_to_device_async(void* dst, int device, size_t nbytes) const;

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Host -> device copy of `nbytes` from ordinary (pageable) host memory through a ring of pinned
// staging buffers of the device: `src` is copied into the next staging buffer (the host waits only
// if that buffer's previous copy has not run yet), the copy is queued on the device's compute
// stream, stream-ordered with the kernels (so `dst` may be a block the caching allocator just
// recycled), and the call returns without waiting for it; `src` may be reused at once.
void upload(void* dst, int device, const void* src, size_t nbytes);

// A CUDA event (opaque; no CUDA headers here) for ordering the copy stream against the compute
// stream of a device.
class Event {
 public:
  Event() = default;
  ~Event();
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record_compute(int device);  // at the current end of the device's compute stream
  void record_copy(int device);     // at the current end of the device's copy stream
  // GPU-side waits (the host does not block): later work of that stream runs after the event.
  void make_compute_wait(int device) const;
  void make_copy_wait(int device) const;
  // The host waits for the event (returns at once when never recorded).
  void synchronize() const;
  bool recorded() const { return recorded_; }

 private:
  void ensure(int device);
  void* ev_ = nullptr;
  int device_ = -1;
  bool recorded_ = false;
};

// The device's copy stream (a second non-blocking stream, created on first use): queues a copy of
// `nbytes` from pinned host memory `src` to device memory `dst` and returns. The caller orders it:
// make the copy stream wait for the compute stream first when `dst` was allocated from the caching
// allocator (an Event recorded on the compute stream), record an Event on the copy stream after,
// make the compute stream wait for it before kernels read `dst`, and keep `src` untouched until
// that event has completed.
void copy_to_device_on_copy_stream(void* dst, int device, const void* src, size_t nbytes);

}  // namespace rechub::cuda
