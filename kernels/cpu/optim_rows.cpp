// Row-sparse Adam and Adagrad for AVX-512 and AVX2 (see optim_rows.h). One loop over the rows with every
// coefficient in a register and the state rows kRowsAhead rows ahead prefetched: calling a per-row
// function from for_rows reloaded the captured pointers and coefficients for every row and ran at half
// this speed. The two sets differ only in the vector type: the loops are written once
// (optim_rows_body.inc) and included once per set with that set's target attribute
// (RECHUB_ROWS_TARGET), so GCC and Clang inline the vector wrappers into them.
#include "rechub/kernels/cpu/optim_rows.h"

#include <immintrin.h>

namespace rechub::kernels::cpu {
namespace {

constexpr int64_t kRowsAhead = 16;

template <class... T>
inline void prefetch_row(int64_t off, int64_t n, T*... rows) {
  for (int64_t j = 0; j < n; j += 16) (__builtin_prefetch(rows + off + j, 1, 3), ...);
}

#define RECHUB_AVX512_ROWS __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define RECHUB_AVX2_ROWS __attribute__((target("avx2,fma")))

// One vector type per set: width, load/store, arithmetic, exact sqrt.
struct V512 {
  using reg = __m512;
  static constexpr int64_t kWidth = 16;
  RECHUB_AVX512_ROWS static reg set1(float x) { return _mm512_set1_ps(x); }
  RECHUB_AVX512_ROWS static reg load(const float* p) { return _mm512_loadu_ps(p); }
  RECHUB_AVX512_ROWS static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  RECHUB_AVX512_ROWS static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  RECHUB_AVX512_ROWS static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  RECHUB_AVX512_ROWS static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  RECHUB_AVX512_ROWS static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  // The zero-masked form with a full mask avoids a GCC 12 -Wmaybe-uninitialized false positive.
  RECHUB_AVX512_ROWS static reg sqrt(reg a) { return _mm512_maskz_sqrt_ps(0xFFFF, a); }
};
struct V256 {
  using reg = __m256;
  static constexpr int64_t kWidth = 8;
  RECHUB_AVX2_ROWS static reg set1(float x) { return _mm256_set1_ps(x); }
  RECHUB_AVX2_ROWS static reg load(const float* p) { return _mm256_loadu_ps(p); }
  RECHUB_AVX2_ROWS static void store(float* p, reg x) { _mm256_storeu_ps(p, x); }
  RECHUB_AVX2_ROWS static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  RECHUB_AVX2_ROWS static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  RECHUB_AVX2_ROWS static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  RECHUB_AVX2_ROWS static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  RECHUB_AVX2_ROWS static reg sqrt(reg a) { return _mm256_sqrt_ps(a); }
};

#define RECHUB_ROWS_TARGET RECHUB_AVX512_ROWS
namespace avx512 {
#include "rechub/kernels/cpu/optim_rows_body.inc"
}  // namespace avx512
#undef RECHUB_ROWS_TARGET

#define RECHUB_ROWS_TARGET RECHUB_AVX2_ROWS
namespace avx2 {
#include "rechub/kernels/cpu/optim_rows_body.inc"
}  // namespace avx2
#undef RECHUB_ROWS_TARGET

RECHUB_AVX512_ROWS void adam_rows_avx512(float* p, float* m, float* v, const float* g, const int64_t* idx, int64_t lo,
                                         int64_t hi, int64_t n, const SparseAdamCoef& c) {
  avx512::adam_rows<V512>(p, m, v, g, idx, lo, hi, n, c);
}
RECHUB_AVX2_ROWS void adam_rows_avx2(float* p, float* m, float* v, const float* g, const int64_t* idx, int64_t lo,
                                     int64_t hi, int64_t n, const SparseAdamCoef& c) {
  avx2::adam_rows<V256>(p, m, v, g, idx, lo, hi, n, c);
}
RECHUB_AVX512_ROWS void adagrad_rows_avx512(float* p, float* sum, const float* g, const int64_t* idx, int64_t lo,
                                            int64_t hi, int64_t n, float clr, float eps, float wd, bool has_wd) {
  avx512::adagrad_rows<V512>(p, sum, g, idx, lo, hi, n, clr, eps, wd, has_wd);
}
RECHUB_AVX2_ROWS void adagrad_rows_avx2(float* p, float* sum, const float* g, const int64_t* idx, int64_t lo,
                                        int64_t hi, int64_t n, float clr, float eps, float wd, bool has_wd) {
  avx2::adagrad_rows<V256>(p, sum, g, idx, lo, hi, n, clr, eps, wd, has_wd);
}

}  // namespace

bool sparse_adam_rows(Isa isa, float* p, float* m, float* v, const float* g, const int64_t* idx, int64_t lo, int64_t hi,
                      int64_t n, const SparseAdamCoef& c) {
  if (isa == Isa::avx512 && n % 16 == 0 && isa_supported(Isa::avx512)) {
    adam_rows_avx512(p, m, v, g, idx, lo, hi, n, c);
    return true;
  }
  if (isa != Isa::generic && n % 8 == 0 && isa_supported(Isa::avx2)) {
    adam_rows_avx2(p, m, v, g, idx, lo, hi, n, c);
    return true;
  }
  return false;
}

bool sparse_adagrad_rows(Isa isa, float* p, float* sum, const float* g, const int64_t* idx, int64_t lo, int64_t hi,
                         int64_t n, float clr, float eps, float wd, bool has_wd) {
  if (isa == Isa::avx512 && n % 16 == 0 && isa_supported(Isa::avx512)) {
    adagrad_rows_avx512(p, sum, g, idx, lo, hi, n, clr, eps, wd, has_wd);
    return true;
  }
  if (isa != Isa::generic && n % 8 == 0 && isa_supported(Isa::avx2)) {
    adagrad_rows_avx2(p, sum, g, idx, lo, hi, n, clr, eps, wd, has_wd);
    return true;
  }
  return false;
}

}  // namespace rechub::kernels::cpu
