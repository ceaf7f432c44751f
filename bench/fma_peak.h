#pragma once
// The FMA peak of an instruction set on this machine, measured, never assumed: independent chains of
// vfmadd on registers only (no memory traffic), run on `threads` threads at once. Benchmarks report
// their GFLOP/s as a percentage of the peak of the set rechub dispatched to (kernels/cpu/isa.h).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "rechub/kernels/cpu/isa.h"

namespace rechub::bench {

constexpr int kFmaChains = 12;  // independent chains: > latency (4) x pipes (2) on Zen 3/4, Intel
constexpr int64_t kFmaPeakInner = 1 << 20;

__attribute__((target("avx512f,fma"), noinline)) inline float fma_chains_avx512(int64_t iters, float seed) {
  __m512 acc[kFmaChains];
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 12
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_set1_ps(seed + static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < kFmaChains; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it, PR105593)
  _mm512_store_ps(lanes, s);
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

__attribute__((target("avx2,fma"), noinline)) inline float fma_chains_avx2(int64_t iters, float seed) {
  __m256 acc[kFmaChains];
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
#pragma GCC unroll 12
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 s = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < kFmaChains; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

// Lanes of one FMA of the set (the generic set is measured with AVX2's FMA where it exists: Eigen's
// fallback compiles for the build's -march, and a CPU without FMA has no "FMA peak").
inline int fma_lanes(kernels::cpu::Isa isa) { return isa == kernels::cpu::Isa::avx512 ? 16 : 8; }

// One run of `inner` iterations on `threads` threads at once; total GFLOP/s. 0 where the CPU lacks the set.
inline double fma_gflops(kernels::cpu::Isa isa, int threads, int64_t inner) {
  using kernels::cpu::Isa;
  if (isa == Isa::avx512 && !kernels::cpu::isa_supported(Isa::avx512)) return 0.0;
  if (isa != Isa::avx512 && !kernels::cpu::isa_supported(Isa::avx2)) return 0.0;
  float sink = 0.0f;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  sink += isa == Isa::avx512 ? fma_chains_avx512(inner, static_cast<float>(omp_get_thread_num()))
                             : fma_chains_avx2(inner, static_cast<float>(omp_get_thread_num()));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink;
  (void)keep;
  return threads * static_cast<double>(inner) * 2.0 * fma_lanes(isa) * kFmaChains / s * 1e-9;
}

// Peak GFLOP/s of `isa` on `threads` threads: the best of five ~0.1-0.2 s runs.
inline double fma_peak_gflops(kernels::cpu::Isa isa, int threads) {
  double best = 0.0;
  for (int r = 0; r < 5; ++r) best = std::max(best, fma_gflops(isa, threads, 16 * kFmaPeakInner));
  return best;
}

}  // namespace rechub::bench
