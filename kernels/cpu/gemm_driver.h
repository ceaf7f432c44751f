#pragma once
// What every instruction set's blocked fp32 GEMM shares (internal to kernels/cpu/gemm*.cpp):
// thread-local packing scratch and the threading layer that splits one GEMM over the OpenMP threads.
// Each instruction set supplies only a single-threaded blocked GEMM (packing + micro-kernel), as BLIS
// writes one micro-kernel per set under a common frame.
#include <cstdint>

namespace rechub::kernels::cpu::detail {

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Thread-local scratch, 64-byte aligned, grown on demand and reused across calls.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch();
  float* get(int64_t count);  // throws std::bad_alloc

 private:
  float* ptr_ = nullptr;
  int64_t capacity_ = 0;
};

// C[M,N] = alpha op(A) op(B) + beta C on one thread (the contract of kernels/cpu/gemm.h).
using SerialSgemm = void (*)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

struct BlockedSgemm {
  SerialSgemm serial;
  int64_t n_align;         // column split granularity (a multiple of the vector width)
  double flops_per_cycle;  // per thread, for the split cost model
  int64_t nc_max;          // columns of one packed B block (packing cost in the model)
};

// Splits the problem over omp_get_max_threads() threads (one thread inside a parallel region, or when
// the problem is small) along M or N by a small cost model; never along K, so every element of C is
// computed by one thread in an order that does not depend on the thread count.
void sgemm_threaded(const BlockedSgemm& impl, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace rechub::kernels::cpu::detail
