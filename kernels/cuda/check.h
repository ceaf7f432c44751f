#pragma once
// Internal to kernels/cuda: error checking of every CUDA and cuBLAS call, the per-device stream
// and cuBLAS handle, scratch memory and launch helpers. Each failed call becomes a rechub::Error
// naming the call site, the call and the driver's error string:
//   "CUDA error at kernels/cuda/gemm.cpp:41: cudaMemcpyAsync(...) failed: invalid argument"
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rechub::cuda {

namespace detail {
[[noreturn]] void fail_cuda(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t s, const char* call, const char* file, int line);
}  // namespace detail

#define RECHUB_CUDA_CHECK(call)                                                       \
  do {                                                                                \
    const cudaError_t rechub_cuda_err_ = (call);                                      \
    if (rechub_cuda_err_ != cudaSuccess)                                              \
      ::rechub::cuda::detail::fail_cuda(rechub_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define RECHUB_CUBLAS_CHECK(call)                                                        \
  do {                                                                                   \
    const cublasStatus_t rechub_cublas_st_ = (call);                                     \
    if (rechub_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::rechub::cuda::detail::fail_cublas(rechub_cublas_st_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: a bad configuration surfaces here with the kernel's name.
#define RECHUB_CUDA_LAUNCH_CHECK(kernel_name) ::rechub::cuda::detail::check_launch(kernel_name, __FILE__, __LINE__)
namespace detail {
void check_launch(const char* kernel, const char* file, int line);
}

// The stream every rechub kernel and copy of the current device runs on (non-blocking, created
// on first use). One stream per device keeps the caching allocator's reuse stream-ordered.
cudaStream_t current_stream();
cublasHandle_t cublas_handle();
int current_device();

// Device memory from the caching allocator for a kernel's temporaries, returned on destruction.
class Scratch {
 public:
  explicit Scratch(size_t nbytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
  int dev_ = 0;
};

// Grid size for a grid-stride loop over n items with `block` threads (capped; never 0).
inline unsigned grid_for(int64_t n, int block = 256) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 16) g = 65535LL * 16;
  return static_cast<unsigned>(g);
}

}  // namespace rechub::cuda
