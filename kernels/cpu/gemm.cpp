// fp32/fp64 GEMM entry points of the CPU backend.
//
// sgemm dispatches at run time on active_isa() (kernels/cpu/isa.h; RECHUB_CPU forces a set): the
// BLIS-style AVX-512 kernel (gemm_avx512.cpp) or AVX2 + FMA kernel (gemm_avx2.cpp), both compiled with
// per-function target attributes so a portable build still carries them, otherwise the Eigen path below.
// dgemm always goes through Eigen.
#include "rechub/kernels/cpu/gemm.h"

#include <stdexcept>
#include <string>

#include "rechub/kernels/cpu/isa.h"

// GCC 12 reports its own AVX-512 intrinsic headers (`__m512 __Y = __Y;` in _mm512_undefined_*) as
// -Wmaybe-uninitialized once Eigen's packets are inlined under -march=native (GCC PR105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#pragma GCC diagnostic pop

namespace rechub::kernels::cpu {
namespace detail {
// Defined in gemm_avx512.cpp / gemm_avx2.cpp. Only call where isa_supported() says so.
void sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void sgemm_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
}  // namespace detail

namespace {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// C = beta * C without reading C when beta == 0 (C may hold NaN/garbage then).
template <typename T>
void scale_c(MutMap<T>& c, T beta) {
  if (beta == T(0)) {
    c.setZero();
  } else if (beta != T(1)) {
    c *= beta;
  }
}

template <typename T>
void gemm_eigen_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                     const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  MutMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K <= 0 || alpha == T(0)) {
    scale_c(c, beta);
    return;
  }
  // Stored shapes: A is [M,K] or [K,M]; B is [K,N] or [N,K].
  const ConstMap<T> a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  const ConstMap<T> b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  scale_c(c, beta);
  // Eigen's GEMM accumulates into the destination (setZero above makes beta == 0 NaN-safe).
  if (!trans_a && !trans_b) {
    c.noalias() += alpha * (a * b);
  } else if (!trans_a && trans_b) {
    c.noalias() += alpha * (a * b.transpose());
  } else if (trans_a && !trans_b) {
    c.noalias() += alpha * (a.transpose() * b);
  } else {
    c.noalias() += alpha * (a.transpose() * b.transpose());
  }
}

}  // namespace

void sgemm_eigen(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_eigen_impl<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_eigen_impl<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_isa(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!isa_supported(isa)) throw std::invalid_argument(std::string("sgemm: this CPU cannot run ") + isa_name(isa));
  switch (isa) {
    case Isa::avx512:
      detail::sgemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    case Isa::avx2:
      detail::sgemm_avx2(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    case Isa::generic:
      break;
  }
  sgemm_eigen(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_isa(active_isa(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* sgemm_kernel_name() { return active_isa() == Isa::generic ? "eigen" : isa_name(active_isa()); }

}  // namespace rechub::kernels::cpu
