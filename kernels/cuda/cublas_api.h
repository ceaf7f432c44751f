#pragma once
// Internal to kernels/cuda: cuBLAS, loaded on first use. Linking libcublas (and with it the
// 540 MB libcublasLt) costs every process ~0.4 s at start-up in its static initialisers, even a
// CPU-only run or `rechub --help`; rechub therefore links only the CUDA runtime and opens cuBLAS
// with dlopen the first time a GEMM runs. The functions have cuBLAS's own signatures.
#include <cublas_v2.h>

namespace rechub::cuda {

struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasGetStatusString) status_string;
  decltype(&cublasSgemm_v2) sgemm;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
};

// Loads libcublas.so.<major of the headers> (then libcublas.so) once; throws rechub::Error naming
// the library and dlerror()'s reason when it or one of the functions is missing.
const CublasApi& cublas();

}  // namespace rechub::cuda
