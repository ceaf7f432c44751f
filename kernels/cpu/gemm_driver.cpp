// Threading layer shared by the blocked fp32 GEMMs (see gemm_driver.h).
#include "rechub/kernels/cpu/gemm_driver.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <limits>
#include <new>

namespace rechub::kernels::cpu::detail {

Scratch::~Scratch() { std::free(ptr_); }

float* Scratch::get(int64_t count) {
  if (count > capacity_) {
    std::free(ptr_);
    ptr_ = nullptr;
    const int64_t grown = std::max<int64_t>(count, capacity_ + capacity_ / 2);
    const auto bytes = static_cast<size_t>(round_up(grown * int64_t{sizeof(float)}, 64));
    ptr_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (ptr_ == nullptr) {
      capacity_ = 0;
      throw std::bad_alloc();
    }
    capacity_ = grown;
  }
  return ptr_;
}

namespace {

constexpr double kMinFlopsPerThread = 4.0e6;

struct Split {
  int pm = 1, pn = 1;
};

// Picks pm * pn == nt minimising a rough per-thread cycle estimate (compute + packing). Ties favour
// splitting M. The depth K is never split: every element of C is then summed by one thread in the
// same order (depth blocks of a size that depends on K only) for any thread count, so results do
// not depend on it (a K split would add partial products in an order set by the thread count).
Split choose_split(const BlockedSgemm& impl, int64_t M, int64_t N, int64_t K, int nt) {
  Split best;
  double best_cost = std::numeric_limits<double>::infinity();
  for (int pn = 1; pn <= nt; ++pn) {
    if (nt % pn != 0) continue;
    const int pm = nt / pn;
    const double m_t = static_cast<double>(ceil_div(M, pm));
    const double n_t = static_cast<double>(round_up(ceil_div(N, pn), impl.n_align));
    const double k_t = static_cast<double>(K);
    const double compute = m_t * n_t * k_t / impl.flops_per_cycle;
    const double pack =
        0.5 * (m_t * k_t * static_cast<double>(ceil_div(static_cast<int64_t>(n_t), impl.nc_max)) + k_t * n_t);
    const double cost = compute + pack;
    if (cost < best_cost * 0.999) {
      best_cost = cost;
      best = Split{pm, pn};
    }
  }
  return best;
}

void scale_only(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + N, 0.0f);
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

// Runs inside the parallel region. An exception (scratch allocation) is parked in `error` rather than
// thrown across the region, and the caller rethrows.
void parallel_body(const BlockedSgemm& impl, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                   std::exception_ptr& error) {
  const int t = omp_get_thread_num();
  const int nt = omp_get_num_threads();
  const Split s = choose_split(impl, M, N, K, nt);
  const int im = t % s.pm;
  const int in = t / s.pm;

  const int64_t m0 = M * im / s.pm, m1 = M * (im + 1) / s.pm;
  const int64_t n_chunk = round_up(ceil_div(N, s.pn), impl.n_align);
  const int64_t n0 = std::min(N, in * n_chunk), n1 = std::min(N, (in + 1) * n_chunk);
  if (m1 <= m0 || n1 <= n0) return;
  const float* a = trans_a ? A + m0 : A + m0 * lda;
  const float* b = trans_b ? B + n0 * ldb : B + n0;
  try {
    impl.serial(trans_a, trans_b, m1 - m0, n1 - n0, K, alpha, a, lda, b, ldb, beta, C + m0 * ldc + n0, ldc);
  } catch (...) {
#pragma omp critical(rechub_sgemm_error)
    if (!error) error = std::current_exception();
  }
}

}  // namespace

void sgemm_threaded(const BlockedSgemm& impl, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_only(M, N, beta, C, ldc);
    return;
  }
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  nt = static_cast<int>(std::clamp<double>(flops / kMinFlopsPerThread, 1.0, static_cast<double>(std::max(nt, 1))));
  if (nt <= 1) {
    impl.serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  parallel_body(impl, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, error);
  if (error) std::rethrow_exception(error);
}

}  // namespace rechub::kernels::cpu::detail
