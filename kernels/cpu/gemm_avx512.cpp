// BLIS-style fp32 GEMM for AVX-512 (see gemm.h for the contract).
//
// Every function that touches 512-bit vectors carries RECHUB_AVX512 (a target attribute) instead of
// relying on a global -march flag, so a portable x86-64 build still contains this kernel; gemm.cpp
// calls it only where the CPU and OS support AVX-512F/VL/DQ and FMA.
//
// Structure (per thread, on its sub-problem):
//   for jc in N step NC                      B block  [KC x NC]  -> packed into NR-column panels
//     for pc in K step KC                    (L2 resident)
//       pack B
//       for ic in M step MC                  A block  [MC x KC]  -> packed into row panels of <= MR rows
//         pack A                             (L2 resident; rows split evenly so no panel is tiny)
//         for jr in NC step NR               B micro-panel [KC x NR] stays in L1
//           for ir over row panels           micro-kernel: MR x NR tile in 28 zmm accumulators
// Packed layouts: A panel of r rows: a[k * r + i]; B panel: b[k * NR + j] (64-byte aligned, zero
// padded to NR columns). The micro-kernel broadcasts A and loads two B vectors per k; alpha/beta are
// applied in the store (beta == 0 never reads C), N edges use masked loads/stores.
// Packing copes with all four transpose combinations (16x16 in-register transposes where the source
// runs along k). Where a packed panel would be reused only a few times (the weight-gradient shapes,
// see gemm_serial) the micro-kernel reads op(A) / op(B) in place instead. While a block is being
// multiplied, the source of the next block is prefetched into L2 and the next C tile into L1.
//
// Threading (shared with the AVX2 kernel): gemm_driver.cpp splits the problem over the OpenMP threads
// and calls gemm_serial below on each part.

// GCC 12 flags its own intrinsic headers (`__m512 __Y = __Y;` in _mm512_undefined_ps, used by the
// shuffles below) as -Wmaybe-uninitialized after inlining (GCC PR105593); silence that here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "rechub/kernels/cpu/gemm_driver.h"

#define RECHUB_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define RECHUB_AVX512_INLINE __attribute__((target("avx512f,avx512vl,avx512dq,fma"), always_inline)) inline

namespace rechub::kernels::cpu::detail {
namespace {

constexpr int kMR = 14;          // max rows of a packed A panel / micro-tile
constexpr int kNR = 32;          // columns of a packed B panel / micro-tile (two zmm)
constexpr int64_t kKCMax = 256;  // depth of a packed block
constexpr int64_t kMCMax = 336;  // rows of a packed A block
constexpr int64_t kNCMax = 512;  // columns of a packed B block

thread_local Scratch tl_pack_a;
thread_local Scratch tl_pack_b;

inline __mmask16 low_mask(int64_t n) {  // first n (0..16) lanes
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : ((1u << n) - 1u));
}

// ---- 16x16 transpose (in place) -----------------------------------------------------------------
RECHUB_AVX512_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // r[4i + c], 128-bit lane L, now holds rows 4i..4i+3 of column 4L + c.
  __m512 u[16];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    const __m512 u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    u[0 + c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    u[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    u[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    u[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = u[i];
}

// Loads a 16 (rows) x 16 (contiguous) tile, rows >= nrows and columns >= ncols read as zero (masked,
// no access), and transposes it: r[j] = column j of the tile.
RECHUB_AVX512_INLINE void load_transposed(const float* src, int64_t ld, int64_t nrows, int64_t ncols, __m512 r[16]) {
  const __mmask16 cm = low_mask(ncols);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    const int64_t row = std::min<int64_t>(i, nrows - 1);
    r[i] = _mm512_maskz_loadu_ps(i < nrows ? cm : __mmask16{0}, src + row * ld);
  }
  transpose16(r);
}

// ---- packing ------------------------------------------------------------------------------------
// Row panels of an A block: mc rows split evenly into ceil(mc / MR) panels of `base` or `base + 1`
// rows (the first `extra` panels get the extra row), so no panel is much shorter than MR.
struct PanelSplit {
  int64_t count, base, extra;
  explicit PanelSplit(int64_t mc) : count(ceil_div(mc, kMR)), base(mc / count), extra(mc % count) {}
  int64_t rows(int64_t p) const { return base + (p < extra ? 1 : 0); }
  int64_t first_row(int64_t p) const { return p * base + std::min(p, extra); }
};

// Packs op(A)[0:mr, 0:kc] of a non-transposed A (row i at A + i * lda) into out[k * mr + i] by
// transposing 16-deep chunks of the mr rows. Full 16-float stores in increasing address order: each
// tail is overwritten by the next store; the last one spills up to 16 - mr floats past the panel.
RECHUB_AVX512 void pack_a_rows_panel(const float* A, int64_t lda, int64_t mr, int64_t kc, float* out) {
  for (int64_t k = 0; k < kc; k += 16) {
    const int64_t depth = std::min<int64_t>(16, kc - k);
    __m512 r[16];
    load_transposed(A + k, lda, mr, depth, r);
    if (depth == 16) {
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(out + (k + j) * mr, r[j]);
    } else {
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j)
        if (j < depth) _mm512_storeu_ps(out + (k + j) * mr, r[j]);
    }
  }
}

// Packs op(A)[0:mc, 0:kc] (A offset to the block origin) into row panels: panel p (rows r0.., mr rows)
// lives at out + r0 * kc with layout [k * mr + i]. `row_room` is how many floats each stored row of A
// holds from the block origin on (bounds full-width vector loads for trans_a).
//
// Stores are full 16-float vectors written in increasing address order within a panel, so each tail
// is overwritten by the next store; the panel's last store is masked (trans_a, where panels are
// written interleaved) or spills into the next panel before that one is packed / into the buffer's
// 16-float slack (!trans_a, panels written one after another).
RECHUB_AVX512 void pack_a_block(bool trans_a, const float* A, int64_t lda, int64_t mc, int64_t kc, int64_t row_room,
                                float* out) {
  const PanelSplit ps(mc);
  if (trans_a) {
    // op(A)[i, k] = A[k * lda + i]: row k of A holds all mc rows of the block contiguously; walk k
    // outermost so each source line is read once, scattering mr-float runs to the panels.
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A + k * lda;
      const bool last = k + 1 == kc;
      for (int64_t p = 0; p < ps.count; ++p) {
        const int64_t r0 = ps.first_row(p), mr = ps.rows(p);
        const __mmask16 rm = low_mask(mr);
        const __m512 v = r0 + 16 <= row_room ? _mm512_loadu_ps(src + r0) : _mm512_maskz_loadu_ps(rm, src + r0);
        float* dst = out + r0 * kc + k * mr;
        if (last) {
          _mm512_mask_storeu_ps(dst, rm, v);
        } else {
          _mm512_storeu_ps(dst, v);
        }
      }
    }
    return;
  }
  // op(A)[i, k] = A[i * lda + k]: one panel after another.
  for (int64_t p = 0; p < ps.count; ++p) {
    const int64_t r0 = ps.first_row(p);
    pack_a_rows_panel(A + r0 * lda, lda, ps.rows(p), kc, out + r0 * kc);
  }
}

// Packs depth [0, kc) x columns [0, nr) of op(B) (B offset to the block origin) into out[k * 32 + j],
// columns nr..31 zero. nr <= 32. out is 64-byte aligned.
RECHUB_AVX512 void pack_b_panel(bool trans_b, const float* B, int64_t ldb, int64_t kc, int64_t nr, float* out) {
  if (!trans_b) {  // op(B)[k, j] = B[k * ldb + j]: each k is a contiguous run of nr floats.
    const __mmask16 m0 = low_mask(std::min<int64_t>(nr, 16));
    const __mmask16 m1 = low_mask(std::max<int64_t>(nr - 16, 0));
    if (nr == kNR) {
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_store_ps(out + k * kNR, _mm512_loadu_ps(B + k * ldb));
        _mm512_store_ps(out + k * kNR + 16, _mm512_loadu_ps(B + k * ldb + 16));
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_store_ps(out + k * kNR, _mm512_maskz_loadu_ps(m0, B + k * ldb));
        _mm512_store_ps(out + k * kNR + 16, _mm512_maskz_loadu_ps(m1, B + k * ldb + 16));
      }
    }
    return;
  }
  // op(B)[k, j] = B[j * ldb + k]: transpose 16x16 tiles, two per 32-column panel.
  for (int half = 0; half < 2; ++half) {
    const int64_t rows = std::min<int64_t>(16, nr - 16 * half);
    if (rows <= 0) {
      for (int64_t k = 0; k < kc; ++k) _mm512_store_ps(out + k * kNR + 16 * half, _mm512_setzero_ps());
      continue;
    }
    const float* src = B + 16 * half * ldb;
    for (int64_t k = 0; k < kc; k += 16) {
      const int64_t depth = std::min<int64_t>(16, kc - k);
      __m512 r[16];
      load_transposed(src + k, ldb, rows, depth, r);
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j)
        if (j < depth) _mm512_store_ps(out + (k + j) * kNR + 16 * half, r[j]);
    }
  }
}

// ---- micro-kernel --------------------------------------------------------------------------------
// C[0:MR, 0:16*NV] = alpha * sum_k a[k*a_step + i] * b[k*b_step + j] + beta * C; the last vector of
// each row is limited to the lanes in last_mask. beta == 0: C is not read. a/b are packed panels
// (a_step = MR, b_step = 32) or, where packing would not pay off, the operands themselves
// (a_step = lda of a transposed A, b_step = ldb of a plain B; see gemm_serial).
template <int MR, int NV>
RECHUB_AVX512 void micro_kernel(int64_t kc, const float* __restrict a, int64_t a_step, const float* __restrict b,
                                int64_t b_step, float* __restrict c, int64_t ldc, float alpha, float beta,
                                unsigned last_mask) {
  __m512 acc[MR][NV];
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();

  const float* pa = a;
  const float* pb = b;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(pb + 16 * v);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(pa[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    pa += a_step;
    pb += b_step;
  }

  const __m512 va = _mm512_set1_ps(alpha);
  const __mmask16 lm = static_cast<__mmask16>(last_mask);
  if (lm == 0xFFFF) {
    if (beta == 0.0f) {
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + i * ldc + 16 * v, _mm512_mul_ps(va, acc[i][v]));
    } else {
      const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          float* p = c + i * ldc + 16 * v;
          _mm512_storeu_ps(p, _mm512_fmadd_ps(va, acc[i][v], _mm512_mul_ps(vb, _mm512_loadu_ps(p))));
        }
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + 16 * v;
        const __mmask16 m = v == NV - 1 ? lm : __mmask16{0xFFFF};
        __m512 x = _mm512_mul_ps(va, acc[i][v]);
        if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, p), x);
        _mm512_mask_storeu_ps(p, m, x);
      }
  }
}

using MicroKernel = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, float, float,
                             unsigned);

template <int NV, int... I>
constexpr std::array<MicroKernel, kMR> kernel_row(std::integer_sequence<int, I...>) {
  return {&micro_kernel<I + 1, NV>...};
}
// kKernels[nv - 1][mr - 1]
const std::array<std::array<MicroKernel, kMR>, 2> kKernels = {kernel_row<1>(std::make_integer_sequence<int, kMR>{}),
                                                              kernel_row<2>(std::make_integer_sequence<int, kMR>{})};

// ---- software prefetch of the next block -------------------------------------------------------
// While one block is being multiplied, the source rows of the block that will be packed next are
// pulled towards L2 a few cache lines per micro-kernel call, so packing does not wait on DRAM.
struct Region {
  const char* base = nullptr;
  int64_t rows = 0, row_bytes = 0, ld_bytes = 0;
  int64_t lines() const { return rows * (row_bytes / 64 + 2); }
};

class Prefetcher {
 public:
  void clear() {
    count_ = cur_ = 0;
    total_lines_ = 0;
    reset_position();
  }
  void add(const Region& r) {
    if (count_ < 3 && r.rows > 0 && r.row_bytes > 0) {
      regions_[count_++] = r;
      total_lines_ += r.lines();
      if (count_ == 1) reset_position();
    }
  }
  int64_t total_lines() const { return total_lines_; }
  RECHUB_AVX512 void pump(int64_t lines) {
    while (lines-- > 0 && cur_ < count_) {
      _mm_prefetch(addr_, _MM_HINT_T1);
      addr_ += 64;
      if (addr_ >= row_end_) {
        const Region& r = regions_[cur_];
        if (++row_ >= r.rows) {
          ++cur_;
          row_ = 0;
        }
        reset_position();
      }
    }
  }

 private:
  void reset_position() {
    if (cur_ >= count_) return;
    const Region& r = regions_[cur_];
    const char* start = r.base + row_ * r.ld_bytes;
    addr_ = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(start) & ~uintptr_t{63});
    row_end_ = start + r.row_bytes;
  }
  Region regions_[3];
  int count_ = 0, cur_ = 0;
  int64_t row_ = 0, total_lines_ = 0;
  const char* addr_ = nullptr;
  const char* row_end_ = nullptr;
};

// Source rows of op(A)[i0:i0+m, p0:p0+k] and op(B)[p0:p0+k, j0:j0+n].
Region a_region(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t k) {
  const int64_t ldb = lda * int64_t{sizeof(float)};
  if (trans_a) return Region{reinterpret_cast<const char*>(A + p0 * lda + i0), k, m * 4, ldb};
  return Region{reinterpret_cast<const char*>(A + i0 * lda + p0), m, k * 4, ldb};
}
Region b_region(bool trans_b, const float* B, int64_t ldb, int64_t p0, int64_t k, int64_t j0, int64_t n) {
  const int64_t ld = ldb * int64_t{sizeof(float)};
  if (trans_b) return Region{reinterpret_cast<const char*>(B + j0 * ldb + p0), n, k * 4, ld};
  return Region{reinterpret_cast<const char*>(B + p0 * ldb + j0), k, n * 4, ld};
}

// Pulls the C tile rows [0, mr) x [0, ncols) into L1 ahead of the micro-kernel that updates it.
RECHUB_AVX512_INLINE void prefetch_c_tile(const float* c, int64_t ldc, int64_t mr, int64_t ncols) {
  for (int64_t i = 0; i < mr; ++i) {
    const char* row = reinterpret_cast<const char*>(c + i * ldc);
    _mm_prefetch(row, _MM_HINT_T0);
    _mm_prefetch(row + (ncols * 4 - 1), _MM_HINT_T0);
    if (ncols > 16) _mm_prefetch(row + 64, _MM_HINT_T0);
  }
}

// ---- a few rows against B read in place ---------------------------------------------------------
// With M <= kSmallM rows (serving one request) and a plain B (C = op(A) B with B [K, N], such as
// weights kept transposed for inference), each element of B is used M times: packing it would cost
// more than the multiply. The rows are computed against B read in place, kSmallNV vectors of columns
// at a time: with one row, the blocked path's two accumulators per row leave the FMA latency exposed,
// and up to eight keep both pipes busy. Depth blocks (kc_blk) and the order of the products summed
// into each element are those of the blocked path, so a row of C has the same bits whether it is
// computed alone or in a batch.
constexpr int64_t kSmallM = 4;
constexpr int kSmallNV[kSmallM] = {8, 8, 6, 6};  // column vectors per tile by rows (accumulators <= 24)

template <int MR, int... V>
constexpr std::array<MicroKernel, 8> small_row(std::integer_sequence<int, V...>) {
  return {&micro_kernel<MR, V + 1>...};
}
// kSmallKernels[mr - 1][nv - 1]
const std::array<std::array<MicroKernel, 8>, kSmallM> kSmallKernels = {
    small_row<1>(std::make_integer_sequence<int, 8>{}), small_row<2>(std::make_integer_sequence<int, 8>{}),
    small_row<3>(std::make_integer_sequence<int, 8>{}), small_row<4>(std::make_integer_sequence<int, 8>{})};

RECHUB_AVX512 void gemm_small_m(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kc_blk = ceil_div(K, ceil_div(K, kKCMax));
  // Whole 32-column panels (and a last panel of exactly 16) are read in place; the blocked path's
  // last partial panel is copied, zero padded, and stored with its mask, as the blocked path does.
  const int64_t rest = N % kNR;
  const int64_t whole = rest == 16 ? N : N - rest, tail = N - whole;
  const int nv_max = kSmallNV[M - 1];
  const std::array<MicroKernel, 8>& kernels = kSmallKernels[static_cast<size_t>(M - 1)];
  // op(A) as the micro-kernel reads it (a[k * a_step + i]): in place for a transposed A or one row,
  // else copied into [k * M + i].
  float* ap = !trans_a && M > 1 ? tl_pack_a.get(kc_blk * M) : nullptr;
  float* bt = tail > 0 ? tl_pack_b.get(kc_blk * kNR) : nullptr;
  const __mmask16 m0 = low_mask(tail), m1 = low_mask(std::max<int64_t>(tail - 16, 0));
  const int tail_nv = tail > 16 ? 2 : 1;
  const unsigned tail_mask = low_mask(tail > 16 ? tail - 16 : tail);
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
    for (int64_t j = 0; j < whole; j += 16 * int64_t{nv_max}) {
      const int64_t nv = std::min<int64_t>(nv_max, (whole - j) / 16);
      kernels[static_cast<size_t>(nv - 1)](kc, a, a_step, b + j, ldb, C + j, ldc, alpha, beta_eff, 0xFFFFu);
    }
    if (tail > 0) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = b + k * ldb + whole;
        _mm512_store_ps(bt + k * kNR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(bt + k * kNR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
      kernels[static_cast<size_t>(tail_nv - 1)](kc, a, a_step, bt, kNR, C + whole, ldc, alpha, beta_eff, tail_mask);
    }
  }
}

// ---- single-threaded blocked GEMM on a sub-problem ----------------------------------------------
// Strides (in floats) at which an operand may be read in place by the micro-kernel: multiples of 2 KiB
// put its rows into a handful of L1/L2 sets, and those operands are always packed.
inline bool in_place_stride_ok(int64_t ld) { return ld % 512 != 0; }

// A/B/C point at the sub-problem origin of op(A), op(B), C.
//
// Packing costs a read and a write of every element and, when the operand streams from memory, is not
// overlapped with arithmetic. It pays for itself when the packed panel is reused many times. The
// weight-gradient shapes (dW = X^T dY: trans_a, small M and N, long K) reuse each B panel only for the
// few rows of one A block and each A panel only for N / 32 column panels, so there the micro-kernel
// reads op(A) (trans_a: each k is a contiguous run of rows) and op(B) (!trans_b: each k is a
// contiguous run of columns) in place, and the next depth block is prefetched into L2 instead.
RECHUB_AVX512 void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  if (!trans_b && M <= kSmallM) {
    gemm_small_m(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int64_t kc_blk = ceil_div(K, ceil_div(K, kKCMax));
  const int64_t mc_blk = ceil_div(M, ceil_div(M, kMCMax));
  const int64_t nc_blk = round_up(ceil_div(N, ceil_div(N, kNCMax)), kNR);
  // In-place B: one A block only (each B panel is used by at most MC rows). In-place A: at most 8
  // column panels use each A panel.
  const bool direct_b = !trans_b && M <= kMCMax && in_place_stride_ok(ldb);
  const bool direct_a = trans_a && direct_b && nc_blk <= 8 * kNR && in_place_stride_ok(lda);

  float* bp = tl_pack_b.get(kc_blk * nc_blk);
  float* ap = direct_a ? nullptr : tl_pack_a.get(kc_blk * mc_blk + 16);
  Prefetcher pf;

  for (int64_t jc = 0; jc < N; jc += nc_blk) {
    const int64_t nc = std::min(nc_blk, N - jc);
    const int64_t n_panels = ceil_div(nc, kNR);
    for (int64_t pc = 0; pc < K; pc += kc_blk) {
      const int64_t kc = std::min(kc_blk, K - pc);
      for (int64_t jp = 0; jp < n_panels; ++jp) {
        const int64_t j = jc + jp * kNR;
        const int64_t ncols = std::min<int64_t>(kNR, N - j);
        if (direct_b && ncols == kNR) continue;  // read in place; only a partial panel is packed
        const float* src = trans_b ? B + j * ldb + pc : B + pc * ldb + j;
        pack_b_panel(trans_b, src, ldb, kc, ncols, bp + jp * kc * kNR);
      }
      const float beta_eff = pc == 0 ? beta : 1.0f;

      for (int64_t ic = 0; ic < M; ic += mc_blk) {
        const int64_t mc = std::min(mc_blk, M - ic);
        const PanelSplit ps(mc);
        if (!direct_a) {
          pack_a_block(trans_a, trans_a ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, M - ic, ap);
        }

        // What gets packed (or read in place) after this block: the next A block, else the next depth
        // (or column) block's B and first A block.
        pf.clear();
        if (ic + mc < M) {
          pf.add(a_region(trans_a, A, lda, ic + mc, std::min(mc_blk, M - ic - mc), pc, kc));
        } else if (pc + kc < K) {
          const int64_t kn = std::min(kc_blk, K - pc - kc);
          pf.add(b_region(trans_b, B, ldb, pc + kc, kn, jc, nc));
          pf.add(a_region(trans_a, A, lda, 0, std::min(mc_blk, M), pc + kc, kn));
        } else if (jc + nc < N) {
          pf.add(b_region(trans_b, B, ldb, 0, std::min(kc_blk, K), jc + nc, std::min(nc_blk, N - jc - nc)));
          pf.add(a_region(trans_a, A, lda, 0, std::min(mc_blk, M), 0, std::min(kc_blk, K)));
        }
        const int64_t pf_per_call = ceil_div(pf.total_lines(), ps.count * n_panels);

        for (int64_t jp = 0; jp < n_panels; ++jp) {
          const int64_t j = jc + jp * kNR;
          const int64_t ncols = std::min<int64_t>(kNR, N - j);
          const int nv = ncols > 16 ? 2 : 1;
          const unsigned last_mask = low_mask(ncols > 16 ? ncols - 16 : ncols);
          const bool b_in_place = direct_b && ncols == kNR;
          const float* bpanel = b_in_place ? B + pc * ldb + j : bp + jp * kc * kNR;
          const int64_t b_step = b_in_place ? ldb : kNR;
          for (int64_t p = 0; p < ps.count; ++p) {
            const int64_t i = ps.first_row(p), mr = ps.rows(p);
            float* ctile = C + (ic + i) * ldc + j;
            // Next tile down the same column panel (or the top of the next one).
            if (p + 1 < ps.count) {
              prefetch_c_tile(ctile + mr * ldc, ldc, ps.rows(p + 1), ncols);
            } else if (jp + 1 < n_panels) {
              prefetch_c_tile(C + ic * ldc + j + kNR, ldc, ps.rows(0), std::min<int64_t>(kNR, N - j - kNR));
            }
            pf.pump(pf_per_call);
            const float* apanel = direct_a ? A + pc * lda + ic + i : ap + i * kc;
            kKernels[nv - 1][mr - 1](kc, apanel, direct_a ? lda : mr, bpanel, b_step, ctile, ldc, alpha, beta_eff,
                                     last_mask);
          }
        }
      }
    }
  }
}

}  // namespace

void sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // Column splits on whole 32-column panels, so every tile is computed as on one thread.
  static constexpr BlockedSgemm kImpl{&gemm_serial, kNR, 32.0, kNCMax};
  sgemm_threaded(kImpl, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace rechub::kernels::cpu::detail
