// BLIS-style fp32 GEMM for AVX2 + FMA (see gemm.h for the contract), for the x86 CPUs without AVX-512
// (AMD Zen 2/3, Intel before Skylake-SP, many cloud instances).
//
// Every function that touches 256-bit vectors carries RECHUB_AVX2 (a target attribute), so a portable
// x86-64 build still contains this kernel; gemm.cpp calls it only where the CPU supports AVX2 and FMA.
//
// Structure (per thread, on its sub-problem; gemm_driver.cpp does the threading):
//   for jc in N step NC                      B block  [KC x NC]  -> packed into 16-column panels (L3)
//     for pc in K step KC
//       pack B
//       for ic in M step MC                  A block  [MC x KC]  -> packed into row panels of <= 6 rows (L2)
//         pack A
//         for jr in NC step 16               B micro-panel [KC x 16] stays in L1
//           for ir over row panels           micro-kernel: 6 x 16 tile in 12 ymm accumulators
// The 6 x 16 tile is the register budget of AVX2: 12 accumulators, two B vectors and one broadcast A
// value make 15 of the 16 ymm registers, and each k step issues 12 FMAs against 8 loads, which keeps
// both FMA pipes of Zen 3 / Haswell busy (FMA latency 4 x 2 pipes = 8 independent chains needed).
// Packed layouts: A panel of r rows: a[k * r + i]; B panel: b[k * 16 + j] (32-byte aligned, zero padded
// to 16 columns). alpha/beta are applied in the store (beta == 0 never reads C); column edges use
// masked loads and stores.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "rechub/kernels/cpu/gemm_driver.h"

#define RECHUB_AVX2 __attribute__((target("avx2,fma")))
#define RECHUB_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

namespace rechub::kernels::cpu::detail {
namespace {

constexpr int kMR = 6;            // max rows of a packed A panel / micro-tile
constexpr int kNR = 16;           // columns of a packed B panel / micro-tile (two ymm)
constexpr int64_t kKCMax = 256;   // depth of a packed block: a B micro-panel is 16 KiB (L1)
constexpr int64_t kMCMax = 144;   // rows of a packed A block: 144 KiB at KC = 256 (L2)
constexpr int64_t kNCMax = 1024;  // columns of a packed B block: 1 MiB at KC = 256 (L3)

thread_local Scratch tl_pack_a;
thread_local Scratch tl_pack_b;

// kLaneMask + 8 - n: the first n (0..8) lanes set.
alignas(32) constexpr int32_t kLaneMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
RECHUB_AVX2_INLINE __m256i first_lanes(int64_t n) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + 8 - std::clamp<int64_t>(n, 0, 8)));
}

// ---- 8x8 transpose (in place): r[j] becomes column j -------------------------------------------------
RECHUB_AVX2_INLINE void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Loads an 8 (rows) x 8 (contiguous) tile, rows >= nrows and columns >= ncols read as zero (masked, no
// access), and transposes it: r[j] = column j of the tile.
RECHUB_AVX2_INLINE void load_transposed(const float* src, int64_t ld, int64_t nrows, int64_t ncols, __m256 r[8]) {
  const __m256i cm = first_lanes(ncols);
  if (ncols == 8) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = i < nrows ? _mm256_loadu_ps(src + i * ld) : _mm256_setzero_ps();
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = i < nrows ? _mm256_maskload_ps(src + i * ld, cm) : _mm256_setzero_ps();
  }
  transpose8(r);
}

// ---- packing ---------------------------------------------------------------------------------------------
// Row panels of an A block: mc rows split evenly into ceil(mc / MR) panels of `base` or `base + 1` rows.
struct PanelSplit {
  int64_t count, base, extra;
  explicit PanelSplit(int64_t mc) : count(ceil_div(mc, kMR)), base(mc / count), extra(mc % count) {}
  int64_t rows(int64_t p) const { return base + (p < extra ? 1 : 0); }
  int64_t first_row(int64_t p) const { return p * base + std::min(p, extra); }
};

// Packs op(A)[0:mc, 0:kc] (A offset to the block origin) into row panels: panel p (first row r0, mr rows)
// lives at out + r0 * kc with layout [k * mr + i]. `row_room` is how many floats each stored row of A
// holds from the block origin on (bounds full-width loads for trans_a). Stores are full 8-float vectors in
// increasing address order, each tail overwritten by the next store; the last store of a panel spills up
// to 8 - mr floats into the next panel before that one is packed, or into the buffer's 8-float slack.
RECHUB_AVX2 void pack_a_block(bool trans_a, const float* A, int64_t lda, int64_t mc, int64_t kc, int64_t row_room,
                              float* out) {
  const PanelSplit ps(mc);
  if (trans_a) {
    // op(A)[i, k] = A[k * lda + i]: panel p's rows are contiguous in every row k of A.
    for (int64_t p = 0; p < ps.count; ++p) {
      const int64_t r0 = ps.first_row(p), mr = ps.rows(p);
      const float* src = A + r0;
      float* dst = out + r0 * kc;
      if (r0 + 8 <= row_room) {
        for (int64_t k = 0; k < kc; ++k) _mm256_storeu_ps(dst + k * mr, _mm256_loadu_ps(src + k * lda));
      } else {
        const __m256i rm = first_lanes(mr);
        for (int64_t k = 0; k < kc; ++k) _mm256_storeu_ps(dst + k * mr, _mm256_maskload_ps(src + k * lda, rm));
      }
    }
    return;
  }
  // op(A)[i, k] = A[i * lda + k]: transpose 8-deep chunks of the panel's rows.
  for (int64_t p = 0; p < ps.count; ++p) {
    const int64_t r0 = ps.first_row(p), mr = ps.rows(p);
    const float* src = A + r0 * lda;
    float* dst = out + r0 * kc;
    for (int64_t k = 0; k < kc; k += 8) {
      const int64_t depth = std::min<int64_t>(8, kc - k);
      __m256 r[8];
      load_transposed(src + k, lda, mr, depth, r);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        if (j < depth) _mm256_storeu_ps(dst + (k + j) * mr, r[j]);
    }
  }
}

// Packs depth [0, kc) x columns [0, nr) of op(B) (B offset to the block origin) into out[k * 16 + j],
// columns nr..15 zero. nr <= 16; out is 32-byte aligned.
RECHUB_AVX2 void pack_b_panel(bool trans_b, const float* B, int64_t ldb, int64_t kc, int64_t nr, float* out) {
  if (!trans_b) {  // op(B)[k, j] = B[k * ldb + j]: each k is a contiguous run of nr floats.
    if (nr == kNR) {
      for (int64_t k = 0; k < kc; ++k) {
        _mm256_store_ps(out + k * kNR, _mm256_loadu_ps(B + k * ldb));
        _mm256_store_ps(out + k * kNR + 8, _mm256_loadu_ps(B + k * ldb + 8));
      }
    } else {
      const __m256i m0 = first_lanes(nr), m1 = first_lanes(nr - 8);
      for (int64_t k = 0; k < kc; ++k) {
        _mm256_store_ps(out + k * kNR, _mm256_maskload_ps(B + k * ldb, m0));
        _mm256_store_ps(out + k * kNR + 8, _mm256_maskload_ps(B + k * ldb + 8, m1));
      }
    }
    return;
  }
  // op(B)[k, j] = B[j * ldb + k]: transpose 8x8 tiles, two per 16-column panel.
  for (int half = 0; half < 2; ++half) {
    const int64_t rows = std::min<int64_t>(8, nr - 8 * half);
    if (rows <= 0) {
      for (int64_t k = 0; k < kc; ++k) _mm256_store_ps(out + k * kNR + 8 * half, _mm256_setzero_ps());
      continue;
    }
    const float* src = B + 8 * half * ldb;
    for (int64_t k = 0; k < kc; k += 8) {
      const int64_t depth = std::min<int64_t>(8, kc - k);
      __m256 r[8];
      load_transposed(src + k, ldb, rows, depth, r);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        if (j < depth) _mm256_store_ps(out + (k + j) * kNR + 8 * half, r[j]);
    }
  }
}

// ---- micro-kernel ----------------------------------------------------------------------------------------
// C[0:MR, 0:ncols] = alpha * sum_k a[k * MR + i] * b[k * 16 + j] + beta * C, ncols <= 16. beta == 0: C is
// not read.
template <int MR>
RECHUB_AVX2 void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c,
                              int64_t ldc, float alpha, float beta, int64_t ncols) {
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
    }
    a += MR;
    b += kNR;
  }

  const __m256 va = _mm256_set1_ps(alpha);
  if (ncols == kNR) {
    if (beta == 0.0f) {
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc0[i]));
        _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc1[i]));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        float* p = c + i * ldc;
        _mm256_storeu_ps(p, _mm256_fmadd_ps(va, acc0[i], _mm256_mul_ps(vb, _mm256_loadu_ps(p))));
        _mm256_storeu_ps(p + 8, _mm256_fmadd_ps(va, acc1[i], _mm256_mul_ps(vb, _mm256_loadu_ps(p + 8))));
      }
    }
    return;
  }
  const __m256i m0 = first_lanes(ncols), m1 = first_lanes(ncols - 8);
  const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* p = c + i * ldc;
    __m256 x0 = _mm256_mul_ps(va, acc0[i]), x1 = _mm256_mul_ps(va, acc1[i]);
    if (beta != 0.0f) {
      x0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(p, m0), x0);
      x1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(p + 8, m1), x1);
    }
    _mm256_maskstore_ps(p, m0, x0);
    _mm256_maskstore_ps(p + 8, m1, x1);
  }
}

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int64_t);

template <int... I>
constexpr std::array<MicroKernel, kMR> kernel_table(std::integer_sequence<int, I...>) {
  return {&micro_kernel<I + 1>...};
}
constexpr std::array<MicroKernel, kMR> kKernels = kernel_table(std::make_integer_sequence<int, kMR>{});

// ---- a few rows against B read in place ------------------------------------------------------------------
// With M <= kSmallM rows (serving one request) and a plain B (C = op(A) B with B [K, N], such as weights
// kept transposed for inference), each element of B is used M times: packing it would cost more than the
// multiply. The rows are computed against B read in place, NV vectors of 8 columns at a time: with one
// row, the micro-kernel's two accumulators per row leave the FMA latency exposed, and eight keep both
// pipes busy. Depth blocks (kc_blk), the order of the products summed into each element and the store
// (the full-tile formula where the micro-kernel's 16 columns are whole) are those of the blocked path, so
// a row of C has the same bits whether it is computed alone or in a batch.
constexpr int64_t kSmallM = 4;
constexpr int kSmallNV[kSmallM] = {8, 4, 3, 2};  // column vectors per tile by rows (<= 16 ymm in use)

// C[0:MR, 0:8*NV] = alpha * sum_k a[k * a_step + i] * b[k * b_step + j] + beta * C, with b read for
// 8 * NV columns per k (in place, or a zero-padded tail copy); only the first `ncols` columns are stored.
template <int MR, int NV>
RECHUB_AVX2 void row_kernel(int64_t kc, const float* __restrict a, int64_t a_step, const float* __restrict b,
                            int64_t b_step, float* __restrict c, int64_t ldc, float alpha, float beta, int64_t ncols) {
  __m256 acc[MR][NV];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += a_step;
    b += b_step;
  }
  // The stores of micro_kernel: a whole tile with its full-tile formula, else masked.
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const bool whole = ncols == 8 * NV;
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* p = c + i * ldc + 8 * v;
      if (whole) {
        __m256 x = _mm256_mul_ps(va, acc[i][v]);
        if (beta != 0.0f) x = _mm256_fmadd_ps(va, acc[i][v], _mm256_mul_ps(vb, _mm256_loadu_ps(p)));
        _mm256_storeu_ps(p, x);
      } else {
        const __m256i m = first_lanes(ncols - 8 * v);
        __m256 x = _mm256_mul_ps(va, acc[i][v]);
        if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_maskload_ps(p, m), x);
        _mm256_maskstore_ps(p, m, x);
      }
    }
}

using RowKernel = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, float, float,
                           int64_t);
template <int MR, int... V>
constexpr std::array<RowKernel, 8> small_row(std::integer_sequence<int, V...>) {
  return {&row_kernel<MR, V + 1>...};
}
// kSmallKernels[mr - 1][nv - 1]
constexpr std::array<std::array<RowKernel, 8>, kSmallM> kSmallKernels = {
    small_row<1>(std::make_integer_sequence<int, 8>{}), small_row<2>(std::make_integer_sequence<int, 8>{}),
    small_row<3>(std::make_integer_sequence<int, 8>{}), small_row<4>(std::make_integer_sequence<int, 8>{})};

RECHUB_AVX2 void gemm_small_m(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kc_blk = ceil_div(K, ceil_div(K, kKCMax));
  // Whole 16-column panels are read in place; the micro-kernel's last partial panel (< 16 columns) is
  // copied, zero padded, and stored as it stores one.
  const int64_t whole = N / kNR * kNR, tail = N - whole;
  const int nv_max = kSmallNV[M - 1];
  const std::array<RowKernel, 8>& kernels = kSmallKernels[static_cast<size_t>(M - 1)];
  // op(A) as the kernel reads it (a[k * a_step + i]): in place for a transposed A or one row, else
  // copied into [k * M + i].
  float* ap = !trans_a && M > 1 ? tl_pack_a.get(kc_blk * M) : nullptr;
  float* bt = tail > 0 ? tl_pack_b.get(kc_blk * kNR) : nullptr;
  const __m256i m0 = first_lanes(tail), m1 = first_lanes(tail - 8);
  for (int64_t pc = 0; pc < K; pc += kc_blk) {
    const int64_t kc = std::min(kc_blk, K - pc);
    const float beta_eff = pc == 0 ? beta : 1.0f;
    const float* a = trans_a ? A + pc * lda : A + pc;
    int64_t a_step = trans_a ? lda : 1;
    if (ap != nullptr) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < kc; ++k) ap[k * M + i] = A[i * lda + pc + k];
      a = ap;
      a_step = M;
    }
    const float* b = B + pc * ldb;
    for (int64_t j = 0; j < whole; j += 8 * int64_t{nv_max}) {
      const int64_t nv = std::min<int64_t>(nv_max, (whole - j) / 8);
      kernels[static_cast<size_t>(nv - 1)](kc, a, a_step, b + j, ldb, C + j, ldc, alpha, beta_eff, 8 * nv);
    }
    if (tail > 0) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = b + k * ldb + whole;
        _mm256_store_ps(bt + k * kNR, _mm256_maskload_ps(src, m0));
        _mm256_store_ps(bt + k * kNR + 8, _mm256_maskload_ps(src + 8, m1));
      }
      kernels[1](kc, a, a_step, bt, kNR, C + whole, ldc, alpha, beta_eff, tail);
    }
  }
}

// ---- single-threaded blocked GEMM on a sub-problem -------------------------------------------------------
// A/B/C point at the sub-problem origin of op(A), op(B), C.
RECHUB_AVX2 void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  if (!trans_b && M <= kSmallM) {
    gemm_small_m(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int64_t kc_blk = ceil_div(K, ceil_div(K, kKCMax));
  // Blocks of whole 6-row panels where M allows, so the micro-kernel runs at its full height.
  const int64_t mc_blk = std::min(M, round_up(ceil_div(M, ceil_div(M, kMCMax)), kMR));
  const int64_t nc_blk = round_up(ceil_div(N, ceil_div(N, kNCMax)), kNR);

  float* bp = tl_pack_b.get(kc_blk * nc_blk);
  float* ap = tl_pack_a.get(kc_blk * mc_blk + 8);

  for (int64_t jc = 0; jc < N; jc += nc_blk) {
    const int64_t nc = std::min(nc_blk, N - jc);
    const int64_t n_panels = ceil_div(nc, kNR);
    for (int64_t pc = 0; pc < K; pc += kc_blk) {
      const int64_t kc = std::min(kc_blk, K - pc);
      for (int64_t jp = 0; jp < n_panels; ++jp) {
        const int64_t j = jc + jp * kNR;
        const float* src = trans_b ? B + j * ldb + pc : B + pc * ldb + j;
        pack_b_panel(trans_b, src, ldb, kc, std::min<int64_t>(kNR, N - j), bp + jp * kc * kNR);
      }
      const float beta_eff = pc == 0 ? beta : 1.0f;

      for (int64_t ic = 0; ic < M; ic += mc_blk) {
        const int64_t mc = std::min(mc_blk, M - ic);
        const PanelSplit ps(mc);
        pack_a_block(trans_a, trans_a ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, M - ic, ap);
        for (int64_t jp = 0; jp < n_panels; ++jp) {
          const int64_t j = jc + jp * kNR;
          const int64_t ncols = std::min<int64_t>(kNR, N - j);
          const float* bpanel = bp + jp * kc * kNR;
          for (int64_t p = 0; p < ps.count; ++p) {
            const int64_t i = ps.first_row(p), mr = ps.rows(p);
            kKernels[static_cast<size_t>(mr - 1)](kc, ap + i * kc, bpanel, C + (ic + i) * ldc + j, ldc, alpha, beta_eff,
                                                  ncols);
          }
        }
      }
    }
  }
}

}  // namespace

void sgemm_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static constexpr BlockedSgemm kImpl{&gemm_serial, kNR, 16.0, kNCMax};
  sgemm_threaded(kImpl, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace rechub::kernels::cpu::detail
