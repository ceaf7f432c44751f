// The CUDA runtime: caching device allocator, copies, streams, cuBLAS handles, pinned buffers and
// the error reporting every kernels/cuda call goes through.
#include "rechub/kernels/cuda/runtime.h"

#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/cublas_api.h"
#include "rechub/kernels/error.h"

namespace rechub::cuda {

namespace detail {

void fail_cuda(cudaError_t e, const char* call, const char* file, int line) {
  RECHUB_FAIL("CUDA error at " << file << ":" << line << ": " << call << " failed: " << cudaGetErrorString(e) << " ("
                               << cudaGetErrorName(e) << ")");
}

void fail_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  RECHUB_FAIL("cuBLAS error at " << file << ":" << line << ": " << call << " failed: " << cublas().status_string(s));
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    RECHUB_FAIL("CUDA error at " << file << ":" << line << ": launch of kernel " << kernel
                                 << " failed: " << cudaGetErrorString(e) << " (" << cudaGetErrorName(e) << ")");
}

}  // namespace detail

namespace {

constexpr int kMaxDevices = 64;

// Size classes: 512-byte multiples up to 1 MiB, then four per power of two, so a dynamic tape
// that allocates the same sizes every step is served from the cache after the first step.
size_t size_class(size_t n) {
  if (n == 0) n = 1;
  if (n <= (size_t(1) << 20)) return (n + 511) / 512 * 512;
  size_t p = 1;
  while (p * 2 <= n) p *= 2;
  const size_t step = p / 4;
  return (n + step - 1) / step * step;
}

std::atomic<bool> g_poison{false};
std::atomic<bool> g_allow_tf32{false};

class CachingAllocator {
 public:
  static CachingAllocator& get() {
    static CachingAllocator* a = new CachingAllocator();  // never destroyed: storages may outlive statics
    return *a;
  }

  void* allocate(size_t n, int dev, size_t* cap) {
    RECHUB_CHECK(dev >= 0 && dev < kMaxDevices, "cuda:" << dev << ": device index out of range");
    const size_t c = size_class(n);
    *cap = c;
    use_device(dev);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      Pool& pool = pools_[dev];
      auto it = pool.free.find(c);
      if (it != pool.free.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        pool.stats.bytes_cached -= c;
      }
    }
    if (!p) {
      cudaError_t e = cudaMalloc(&p, c);
      if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
        (void)cudaGetLastError();
        release(dev);
        e = cudaMalloc(&p, c);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        RECHUB_FAIL("cannot allocate " << n << " bytes on cuda:" << dev << ": cudaMalloc failed: "
                                       << cudaGetErrorString(e) << " (" << cudaGetErrorName(e) << ")");
      }
      std::lock_guard<std::mutex> lk(mu_);
      ++pools_[dev].stats.num_cuda_mallocs;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      AllocatorStats& s = pools_[dev].stats;
      s.bytes_in_use += c;
      if (s.bytes_in_use > s.peak_bytes_in_use) s.peak_bytes_in_use = s.bytes_in_use;
    }
    if (g_poison.load(std::memory_order_relaxed)) RECHUB_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, c, current_stream()));
    return p;
  }

  // The block goes back to the cache at once: every kernel of the device runs on its one stream,
  // so work queued later that reuses the block runs after the work that used it.
  void deallocate(void* p, size_t c, int dev) {
    std::lock_guard<std::mutex> lk(mu_);
    Pool& pool = pools_[dev];
    pool.free[c].push_back(p);
    pool.stats.bytes_in_use -= c;
    pool.stats.bytes_cached += c;
  }

  void release(int dev) {
    std::vector<void*> blocks;
    {
      std::lock_guard<std::mutex> lk(mu_);
      Pool& pool = pools_[dev];
      for (auto& [c, v] : pool.free) blocks.insert(blocks.end(), v.begin(), v.end());
      pool.free.clear();
      pool.stats.bytes_cached = 0;
    }
    if (blocks.empty()) return;
    use_device(dev);
    RECHUB_CUDA_CHECK(cudaDeviceSynchronize());
    for (void* b : blocks) RECHUB_CUDA_CHECK(cudaFree(b));
  }

  AllocatorStats stats(int dev) {
    std::lock_guard<std::mutex> lk(mu_);
    return pools_[dev].stats;
  }

 private:
  struct Pool {
    std::map<size_t, std::vector<void*>> free;
    AllocatorStats stats;
  };
  std::mutex mu_;
  std::array<Pool, kMaxDevices> pools_;
};

struct PerDevice {
  std::mutex mu;
  std::array<cudaStream_t, kMaxDevices> streams{};
  std::array<cudaStream_t, kMaxDevices> copy_streams{};
  std::array<cublasHandle_t, kMaxDevices> handles{};
};
PerDevice& per_device() {
  static PerDevice* p = new PerDevice();
  return *p;
}

}  // namespace

void* device_allocate(size_t nbytes, int dev, size_t* cap) {
  return CachingAllocator::get().allocate(nbytes, dev, cap);
}
void device_deallocate(void* p, size_t cap, int dev) { CachingAllocator::get().deallocate(p, cap, dev); }

void copy_bytes(void* dst, int dst_dev, const void* src, int src_dev, size_t n) {
  if (dst_dev >= 0 && src_dev >= 0) {
    if (dst_dev == src_dev) {
      use_device(dst_dev);
      RECHUB_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, current_stream()));
      return;
    }
    synchronize(src_dev);
    use_device(dst_dev);
    RECHUB_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev, src, src_dev, n, current_stream()));
    synchronize(dst_dev);
    return;
  }
  const int dev = dst_dev >= 0 ? dst_dev : src_dev;
  use_device(dev);
  const cudaMemcpyKind kind = dst_dev >= 0 ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, kind, current_stream()));
  RECHUB_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

int device_count() {
  static const int n = [] {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return c;
  }();
  return n;
}

namespace {
thread_local int t_current_device = -1;
}

void use_device(int index) {
  if (t_current_device == index) return;
  const int n = device_count();
  RECHUB_CHECK(n > 0, "cuda:" << index << " requested but no CUDA device is available (cudaGetDeviceCount found none)");
  RECHUB_CHECK(index >= 0 && index < n,
               "cuda:" << index << " requested but only " << n << " CUDA device(s) are visible");
  RECHUB_CUDA_CHECK(cudaSetDevice(index));
  t_current_device = index;
}

int current_device() {
  if (t_current_device < 0) use_device(0);
  return t_current_device;
}

cudaStream_t current_stream() {
  const int dev = current_device();
  PerDevice& pd = per_device();
  std::lock_guard<std::mutex> lk(pd.mu);
  if (!pd.streams[dev]) RECHUB_CUDA_CHECK(cudaStreamCreateWithFlags(&pd.streams[dev], cudaStreamNonBlocking));
  return pd.streams[dev];
}

cublasHandle_t cublas_handle() {
  const int dev = current_device();
  cudaStream_t s = current_stream();
  PerDevice& pd = per_device();
  std::lock_guard<std::mutex> lk(pd.mu);
  if (!pd.handles[dev]) {
    RECHUB_CUBLAS_CHECK(cublas().create(&pd.handles[dev]));
    RECHUB_CUBLAS_CHECK(cublas().set_stream(pd.handles[dev], s));
  }
  RECHUB_CUBLAS_CHECK(
      cublas().set_math_mode(pd.handles[dev], allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return pd.handles[dev];
}

void synchronize(int index) {
  if (index >= 0) use_device(index);
  RECHUB_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }
void set_poison_allocations(bool on) { g_poison.store(on); }

AllocatorStats allocator_stats(int index) {
  RECHUB_CHECK(index >= 0 && index < kMaxDevices, "allocator_stats: device index " << index << " out of range");
  return CachingAllocator::get().stats(index);
}

void release_cached_memory() {
  for (int d = 0; d < device_count() && d < kMaxDevices; ++d) CachingAllocator::get().release(d);
}

Scratch::Scratch(size_t nbytes) : dev_(current_device()) { p_ = CachingAllocator::get().allocate(nbytes, dev_, &cap_); }
Scratch::~Scratch() {
  if (p_) CachingAllocator::get().deallocate(p_, cap_, dev_);
}

// ---- pinned host memory ----

PinnedBuffer::PinnedBuffer(size_t nbytes) : size_(nbytes) {
  RECHUB_CHECK(device_count() > 0, "PinnedBuffer: no CUDA device is available to pin " << nbytes << " bytes for");
  RECHUB_CUDA_CHECK(cudaHostAlloc(&data_, nbytes == 0 ? 1 : nbytes, cudaHostAllocPortable));
}
PinnedBuffer::~PinnedBuffer() {
  if (data_) (void)cudaFreeHost(data_);
}
PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) (void)cudaFreeHost(data_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}
void PinnedBuffer::copy_to_device_async(void* dst, int device, size_t nbytes) const {
  RECHUB_CHECK(nbytes <= size_, "PinnedBuffer: copy of " << nbytes << " bytes from a buffer of " << size_);
  use_device(device);
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(dst, data_, nbytes, cudaMemcpyHostToDevice, current_stream()));
}

// ---- uploads, events, copy stream ----

namespace {

cudaStream_t copy_stream(int device) {
  use_device(device);
  PerDevice& pd = per_device();
  std::lock_guard<std::mutex> lk(pd.mu);
  if (!pd.copy_streams[device])
    RECHUB_CUDA_CHECK(cudaStreamCreateWithFlags(&pd.copy_streams[device], cudaStreamNonBlocking));
  return pd.copy_streams[device];
}

// The staging ring of one device: a slot is reused only after its previous copy has run (its event).
struct StagingRing {
  static constexpr int kSlots = 8;
  struct Slot {
    PinnedBuffer buf;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  std::mutex mu;
  std::array<Slot, kSlots> slots;
  int next = 0;
};
StagingRing& staging(int device) {
  static std::array<StagingRing*, kMaxDevices>* rings = new std::array<StagingRing*, kMaxDevices>{};
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  auto& r = (*rings)[device];
  if (!r) r = new StagingRing();  // never destroyed: pinned memory may be in flight at exit
  return *r;
}

}  // namespace

void upload(void* dst, int device, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  RECHUB_CHECK(device >= 0 && device < kMaxDevices, "upload: device index " << device << " out of range");
  use_device(device);
  StagingRing& ring = staging(device);
  std::lock_guard<std::mutex> lk(ring.mu);
  StagingRing::Slot& slot = ring.slots[ring.next];
  ring.next = (ring.next + 1) % StagingRing::kSlots;
  if (slot.pending) RECHUB_CUDA_CHECK(cudaEventSynchronize(slot.done));  // its previous copy has run
  slot.pending = false;
  if (slot.buf.size() < nbytes) {
    size_t cap = 1 << 16;
    while (cap < nbytes) cap *= 2;
    slot.buf = PinnedBuffer(cap);
  }
  if (!slot.done) RECHUB_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  std::memcpy(slot.buf.data(), src, nbytes);
  cudaStream_t st = current_stream();
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(dst, slot.buf.data(), nbytes, cudaMemcpyHostToDevice, st));
  RECHUB_CUDA_CHECK(cudaEventRecord(slot.done, st));
  slot.pending = true;
}

Event::~Event() {
  if (ev_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(ev_));
}
Event::Event(Event&& o) noexcept : ev_(o.ev_), device_(o.device_), recorded_(o.recorded_) {
  o.ev_ = nullptr;
  o.recorded_ = false;
}
Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (ev_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(ev_));
    ev_ = o.ev_;
    device_ = o.device_;
    recorded_ = o.recorded_;
    o.ev_ = nullptr;
    o.recorded_ = false;
  }
  return *this;
}
void Event::ensure(int device) {
  use_device(device);
  if (ev_ && device_ != device) {
    (void)cudaEventDestroy(static_cast<cudaEvent_t>(ev_));
    ev_ = nullptr;
  }
  if (!ev_) {
    cudaEvent_t e = nullptr;
    RECHUB_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ev_ = e;
    device_ = device;
  }
}
void Event::record_compute(int device) {
  ensure(device);
  RECHUB_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ev_), current_stream()));
  recorded_ = true;
}
void Event::record_copy(int device) {
  ensure(device);
  RECHUB_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ev_), copy_stream(device)));
  recorded_ = true;
}
void Event::make_compute_wait(int device) const {
  if (!recorded_) return;
  use_device(device);
  RECHUB_CUDA_CHECK(cudaStreamWaitEvent(current_stream(), static_cast<cudaEvent_t>(ev_), 0));
}
void Event::make_copy_wait(int device) const {
  if (!recorded_) return;
  RECHUB_CUDA_CHECK(cudaStreamWaitEvent(copy_stream(device), static_cast<cudaEvent_t>(ev_), 0));
}
void Event::synchronize() const {
  if (recorded_) RECHUB_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(ev_)));
}

void copy_to_device_on_copy_stream(void* dst, int device, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  cudaStream_t st = copy_stream(device);
  RECHUB_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, st));
}

}  // namespace rechub::cuda
