#pragma once
#include <cstdint>

#include "rechub/kernels/cpu/isa.h"
namespace rechub::kernels::cpu {
// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C. Row-major; lda/ldb/ldc are leading
// dimensions (row strides) in elements; op(X) = X or X^T. beta == 0 means C is not read (may hold NaN).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
// sgemm on a chosen instruction set (tests and benchmarks run every set the CPU supports); throws
// std::invalid_argument if the CPU cannot run it.
void sgemm_isa(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The portable Eigen path for fp32 (Isa::generic: the fallback where neither AVX2 nor AVX-512 exists).
void sgemm_eigen(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// Which fp32 kernel sgemm uses on this machine: "avx512", "avx2" or "eigen" (see active_isa()).
const char* sgemm_kernel_name();
}  // namespace rechub::kernels::cpu
