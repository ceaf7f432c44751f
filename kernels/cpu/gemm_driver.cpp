// Threading layer shared by the blocked fp32 GEMMs (see gemm_driver.h).
#include "kernels/cpu/gemm_driver.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <limits>
#include <new>
#include <vector>

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

thread_local Scratch tl_partial_c;

struct Split {
  int pm = 1, pn = 1, pk = 1;
};

// Picks pm * pn * pk == nt minimising a rough per-thread cycle estimate (compute + packing + K-split
// reduction). Ties favour splitting M, then N.
Split choose_split(const BlockedSgemm& impl, int64_t M, int64_t N, int64_t K, int nt) {
  Split best;
  double best_cost = std::numeric_limits<double>::infinity();
  for (int pk = 1; pk <= nt; ++pk) {
    if (nt % pk != 0) continue;
    for (int pn = 1; pn <= nt / pk; ++pn) {
      if ((nt / pk) % pn != 0) continue;
      const int pm = nt / pk / pn;
      const double m_t = static_cast<double>(ceil_div(M, pm));
      const double n_t = static_cast<double>(round_up(ceil_div(N, pn), impl.n_align));
      const double k_t = static_cast<double>(ceil_div(K, pk));
      const double compute = m_t * n_t * k_t / impl.flops_per_cycle;
      const double pack =
          0.5 * (m_t * k_t * static_cast<double>(ceil_div(static_cast<int64_t>(n_t), impl.nc_max)) + k_t * n_t);
      const double reduce = pk > 1 ? 2000.0 + 0.25 * static_cast<double>(M) * static_cast<double>(N) * pk / nt : 0.0;
      const double cost = compute + pack + reduce;
      if (cost < best_cost * 0.999) {
        best_cost = cost;
        best = Split{pm, pn, pk};
      }
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

struct Partial {
  float* data = nullptr;
  int64_t ld = 0;
};

// Runs inside the parallel region. An exception (scratch allocation) is parked in `error` rather than
// thrown across the region; the thread still takes part in the barrier, and the caller rethrows.
void parallel_body(const BlockedSgemm& impl, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                   std::vector<Partial>& partials, std::exception_ptr& error) {
  const int t = omp_get_thread_num();
  const int nt = omp_get_num_threads();
  const Split s = choose_split(impl, M, N, K, nt);
  const int im = t % s.pm;
  const int in = (t / s.pm) % s.pn;
  const int ik = t / (s.pm * s.pn);

  const int64_t m0 = M * im / s.pm, m1 = M * (im + 1) / s.pm;
  const int64_t n_chunk = round_up(ceil_div(N, s.pn), impl.n_align);
  const int64_t n0 = std::min(N, in * n_chunk), n1 = std::min(N, (in + 1) * n_chunk);
  const int64_t k0 = K * ik / s.pk, k1 = K * (ik + 1) / s.pk;

  const float* a = trans_a ? A + k0 * lda + m0 : A + m0 * lda + k0;
  const float* b = trans_b ? B + n0 * ldb + k0 : B + k0 * ldb + n0;
  try {
    if (ik == 0) {
      if (k1 > k0) {
        impl.serial(trans_a, trans_b, m1 - m0, n1 - n0, k1 - k0, alpha, a, lda, b, ldb, beta, C + m0 * ldc + n0, ldc);
      } else {
        scale_only(m1 - m0, n1 - n0, beta, C + m0 * ldc + n0, ldc);
      }
    } else {
      const int64_t ld = round_up(std::max<int64_t>(n1 - n0, 1), 16);
      float* part = tl_partial_c.get(std::max<int64_t>(m1 - m0, 1) * ld);
      if (k1 > k0) {
        impl.serial(trans_a, trans_b, m1 - m0, n1 - n0, k1 - k0, alpha, a, lda, b, ldb, 0.0f, part, ld);
      } else {
        scale_only(m1 - m0, n1 - n0, 0.0f, part, ld);
      }
      partials[static_cast<size_t>(t)] = Partial{part, ld};
    }
  } catch (...) {
#pragma omp critical(rechub_sgemm_error)
    if (!error) error = std::current_exception();
  }
  if (s.pk == 1) return;

#pragma omp barrier
  bool failed = false;
#pragma omp critical(rechub_sgemm_error)
  failed = static_cast<bool>(error);
  if (failed) return;
  // C += sum of the K-split partials; rows of C shared out over all threads.
  const int64_t r0 = M * t / nt, r1 = M * (t + 1) / nt;
  for (int64_t i = r0; i < r1; ++i) {
    int pmi = 0;
    while (M * (pmi + 1) / s.pm <= i) ++pmi;
    const int64_t mi0 = M * pmi / s.pm;
    for (int pni = 0; pni < s.pn; ++pni) {
      const int64_t c0 = std::min(N, pni * n_chunk), c1 = std::min(N, (pni + 1) * n_chunk);
      float* crow = C + i * ldc + c0;
      for (int g = 1; g < s.pk; ++g) {
        const Partial& p = partials[static_cast<size_t>((g * s.pn + pni) * s.pm + pmi)];
        const float* prow = p.data + (i - mi0) * p.ld;
        for (int64_t j = 0; j < c1 - c0; ++j) crow[j] += prow[j];
      }
    }
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
  std::vector<Partial> partials(static_cast<size_t>(nt));
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  parallel_body(impl, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, partials, error);
  if (error) std::rethrow_exception(error);
}

}  // namespace rechub::kernels::cpu::detail
