// GEMMs through cuBLAS. cuBLAS is column-major; a row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, so the operands swap places and keep their own transpose flags, and the
// row strides become the leading dimensions unchanged.
#include <cstdint>

#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/cublas_api.h"
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/error.h"

namespace rechub::kernels::cuda {

namespace {
int as_int(int64_t v, const char* what) {
  RECHUB_CHECK(v >= 0 && v <= INT32_MAX, "CUDA GEMM: " << what << " = " << v << " exceeds cuBLAS's 32-bit range");
  return static_cast<int>(v);
}
}  // namespace

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
           int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cublasHandle_t h = rechub::cuda::cublas_handle();
  RECHUB_CUBLAS_CHECK(rechub::cuda::cublas().sgemm(
      h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "N"), as_int(M, "M"), as_int(K, "K"),
      &alpha, B, as_int(ldb, "ldb"), A, as_int(lda, "lda"), &beta, C, as_int(ldc, "ldc")));
}

void sgemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                           int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                           int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  cublasHandle_t h = rechub::cuda::cublas_handle();
  RECHUB_CUBLAS_CHECK(rechub::cuda::cublas().sgemm_strided_batched(
      h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "N"), as_int(M, "M"), as_int(K, "K"),
      &alpha, B, as_int(ldb, "ldb"), stride_b, A, as_int(lda, "lda"), stride_a, &beta, C, as_int(ldc, "ldc"), stride_c,
      as_int(batch, "batch")));
}

}  // namespace rechub::kernels::cuda
