// cuBLAS through dlopen: see cublas_api.h for why.
#include "rechub/kernels/cuda/cublas_api.h"

#include <dlfcn.h>

#include <string>

#include "rechub/kernels/error.h"

namespace rechub::cuda {

namespace {

void* open_cublas() {
  const std::string versioned = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  std::string why;
  for (const std::string& name : {versioned, std::string("libcublas.so")}) {
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    why += "\n  " + name + ": " + (e ? e : "unknown error");
  }
  RECHUB_FAIL(
      "cannot load cuBLAS, which the CUDA backend's GEMMs need (install the CUDA toolkit's libcublas "
      "or add its folder to LD_LIBRARY_PATH):"
      << why);
}

template <class F>
void resolve(void* lib, const char* name, F& fn) {
  void* p = dlsym(lib, name);
  RECHUB_CHECK(p != nullptr, "cuBLAS was loaded but has no function " << name << " (libcublas older than the headers "
                                                                      << CUBLAS_VER_MAJOR << "." << CUBLAS_VER_MINOR
                                                                      << " rechub was built with?)");
  fn = reinterpret_cast<F>(p);
}

CublasApi load() {
  void* lib = open_cublas();  // kept open for the life of the process
  CublasApi a{};
  resolve(lib, "cublasCreate_v2", a.create);
  resolve(lib, "cublasSetStream_v2", a.set_stream);
  resolve(lib, "cublasSetMathMode", a.set_math_mode);
  resolve(lib, "cublasGetStatusString", a.status_string);
  resolve(lib, "cublasSgemm_v2", a.sgemm);
  resolve(lib, "cublasSgemmStridedBatched", a.sgemm_strided_batched);
  return a;
}

}  // namespace

const CublasApi& cublas() {
  static const CublasApi api = load();  // a failed load throws and is retried by the next call
  return api;
}

}  // namespace rechub::cuda
