// Elementwise passes of the fused expert block and the gate mix (see experts.h for the layout).
//
// Row-wise passes split rows over threads; passes that reduce over rows (batch statistics, bias
// and BatchNorm gradients) split columns instead, so each thread owns its accumulators and the
// result does not depend on the thread count. Partial sums are kept in T over blocks of
// kSumBlock rows and folded into double, which keeps f32 sums over large batches accurate
// without paying for double arithmetic in the inner loop.
#include "rechub/kernels/cpu/experts.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "rechub/kernels/cpu/parallel.h"

namespace rechub::kernels::cpu {
namespace {

constexpr int64_t kSumBlock = 64;

// Splits [0, cols) into one chunk per thread (multiples of 16 columns) when the work pays.
template <class F>
void parallel_columns(int64_t rows, int64_t cols, F&& f) {
  const int64_t nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt == 1 || rows * cols <= kParallelGrain || cols < 32) {
    f(int64_t{0}, cols);
    return;
  }
#pragma omp parallel
  {
    const int64_t n = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = ((cols + n - 1) / n + 15) / 16 * 16;
    const int64_t lo = std::min(cols, t * chunk), hi = std::min(cols, lo + chunk);
    if (lo < hi) f(lo, hi);
  }
}

template <ExpertAct A, class T>
inline T act_value(T y) {
  if constexpr (A == ExpertAct::relu) return y > T(0) ? y : T(0);
  if constexpr (A == ExpertAct::leaky_relu) return y > T(0) ? y : T(kLeakyReluSlope) * y;
  if constexpr (A == ExpertAct::sigmoid) return T(1) / (T(1) + std::exp(-y));
  if constexpr (A == ExpertAct::tanh) return std::tanh(y);
  return y;
}

// Calls f.template operator()<A>() for the runtime activation.
template <class F>
void with_act(ExpertAct a, F&& f) {
  switch (a) {
    case ExpertAct::identity:
      f.template operator()<ExpertAct::identity>();
      break;
    case ExpertAct::relu:
      f.template operator()<ExpertAct::relu>();
      break;
    case ExpertAct::leaky_relu:
      f.template operator()<ExpertAct::leaky_relu>();
      break;
    case ExpertAct::sigmoid:
      f.template operator()<ExpertAct::sigmoid>();
      break;
    case ExpertAct::tanh:
      f.template operator()<ExpertAct::tanh>();
      break;
  }
}

// Calls f.template operator()<G, M>() with G = (gamma != null), M = (mask != null) as constants, so the
// inner loops carry no test of a pointer: with one, GCC 12 vectorised them only for AVX-512 (masked
// loads) and ran a scalar loop with a branch per element under AVX2.
template <class F>
void with_affine_mask(bool g, bool m, F&& f) {
  if (g) {
    if (m)
      f.template operator()<true, true>();
    else
      f.template operator()<true, false>();
  } else {
    if (m)
      f.template operator()<false, true>();
    else
      f.template operator()<false, false>();
  }
}

// dy = da * mask * act'(y) for one element; s is the normalised value, y = g * s + b (G) or y = s;
// m is the element's dropout mask value (M). The same operations as with a mask of 1 and no affine.
template <ExpertAct A, bool G, bool M, class T>
inline T act_grad(T da, T s, T g, T b, T a, T m) {
  // Selects between values computed unconditionally (a division by a safe denominator, not a
  // conditional division), so the loops if-convert and vectorise for every set.
  T d;
  if constexpr (A == ExpertAct::relu || A == ExpertAct::leaky_relu) {
    const T y = G ? g * s + b : s;
    const T off = A == ExpertAct::relu ? T(0) : T(kLeakyReluSlope);
    d = y > T(0) ? T(1) : off;
  } else if constexpr (A == ExpertAct::sigmoid || A == ExpertAct::tanh) {
    T ap = a;
    if constexpr (M) {
      const T q = a / (m != T(0) ? m : T(1));
      ap = m != T(0) ? q : T(0);
    }
    d = A == ExpertAct::sigmoid ? ap * (T(1) - ap) : T(1) - ap * ap;
  } else {
    d = T(1);
  }
  return da * d * (M ? m : T(1));
}

}  // namespace

template <class T>
void column_mean_var(int64_t rows, int64_t cols, const T* z, int64_t ld, double* mean, double* var) {
  if (rows <= 0) {
    for (int64_t c = 0; c < cols; ++c) mean[c] = var[c] = 0;
    return;
  }
  parallel_columns(rows, cols, [&](int64_t c0, int64_t c1) {
    const int64_t n = c1 - c0;
    std::vector<T> shift(z + c0, z + c1), p1(n), p2(n);
    std::vector<double> s1(n, 0.0), s2(n, 0.0);
    for (int64_t r0 = 0; r0 < rows; r0 += kSumBlock) {
      std::fill(p1.begin(), p1.end(), T(0));
      std::fill(p2.begin(), p2.end(), T(0));
      const int64_t r1 = std::min(rows, r0 + kSumBlock);
      T* __restrict q1 = p1.data();
      T* __restrict q2 = p2.data();
      const T* __restrict sh = shift.data();
      for (int64_t r = r0; r < r1; ++r) {
        const T* __restrict zr = z + r * ld + c0;
#pragma omp simd
        for (int64_t c = 0; c < n; ++c) {
          const T d = zr[c] - sh[c];
          q1[c] += d;
          q2[c] += d * d;
        }
      }
      for (int64_t c = 0; c < n; ++c) {
        s1[c] += q1[c];
        s2[c] += q2[c];
      }
    }
    const double inv = 1.0 / static_cast<double>(rows);
    for (int64_t c = 0; c < n; ++c) {
      const double m = s1[c] * inv;
      mean[c0 + c] = static_cast<double>(shift[c]) + m;
      var[c0 + c] = std::max(0.0, s2[c] * inv - m * m);
    }
  });
}

template <class T>
void normalize_activate(int64_t rows, int64_t cols, T* z, const T* shift, const T* scale, const T* gamma, const T* beta,
                        ExpertAct act, const T* mask, T* out) {
  with_act(act, [&]<ExpertAct A>() {
    parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        T* __restrict zr = z + r * cols;
        T* __restrict orow = out + r * cols;
        const T* __restrict mr = mask ? mask + r * cols : nullptr;
        if (gamma) {
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) {
            const T s = (zr[c] - shift[c]) * scale[c];
            zr[c] = s;
            orow[c] = act_value<A>(gamma[c] * s + beta[c]);
          }
        } else {
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) {
            const T s = (zr[c] - shift[c]) * scale[c];
            zr[c] = s;
            orow[c] = act_value<A>(s);
          }
        }
        if (mr) {
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) orow[c] *= mr[c];
        }
      }
    });
  });
}

template <class T>
void activation_backward(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                         ExpertAct act, const T* a, const T* mask, T* dy, double* sum_dy, double* sum_dys) {
  with_act(act, [&]<ExpertAct A>() {
    with_affine_mask(gamma != nullptr, mask != nullptr, [&]<bool G, bool M>() {
      parallel_columns(rows, cols, [&](int64_t c0, int64_t c1) {
        const int64_t n = c1 - c0;
        std::vector<T> p1(n), p2(n);
        std::vector<double> s1(n, 0.0), s2(n, 0.0);
        const T* __restrict g = G ? gamma + c0 : nullptr;
        const T* __restrict b = G ? beta + c0 : nullptr;
        for (int64_t r0 = 0; r0 < rows; r0 += kSumBlock) {
          std::fill(p1.begin(), p1.end(), T(0));
          std::fill(p2.begin(), p2.end(), T(0));
          T* __restrict q1 = p1.data();
          T* __restrict q2 = p2.data();
          const int64_t r1 = std::min(rows, r0 + kSumBlock);
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t o = r * cols + c0;
            const T* __restrict dar = da + o;
            const T* __restrict sr = s + o;
            const T* __restrict ar = a + o;
            const T* __restrict mr = M ? mask + o : nullptr;
            if (dy != nullptr) {
              T* __restrict dyr = dy + o;
#pragma omp simd
              for (int64_t c = 0; c < n; ++c) {
                const T v = act_grad<A, G, M>(dar[c], sr[c], G ? g[c] : T(0), G ? b[c] : T(0), ar[c], M ? mr[c] : T(1));
                dyr[c] = v;
                q1[c] += v;
                q2[c] += v * sr[c];
              }
            } else {
#pragma omp simd
              for (int64_t c = 0; c < n; ++c) {
                const T v = act_grad<A, G, M>(dar[c], sr[c], G ? g[c] : T(0), G ? b[c] : T(0), ar[c], M ? mr[c] : T(1));
                q1[c] += v;
                q2[c] += v * sr[c];
              }
            }
          }
          for (int64_t c = 0; c < n; ++c) {
            s1[c] += q1[c];
            s2[c] += q2[c];
          }
        }
        for (int64_t c = 0; c < n; ++c) {
          if (sum_dy) sum_dy[c0 + c] += s1[c];
          if (sum_dys) sum_dys[c0 + c] += s2[c];
        }
      });
    });
  });
}

template <class T>
void batchnorm_backward(int64_t rows, int64_t cols, T* dy, const T* s, const T* k, const T* m1, const T* m2) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      T* __restrict d = dy + r * cols;
      const T* __restrict sr = s + r * cols;
      if (m1) {
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) d[c] = k[c] * (d[c] - m1[c] - sr[c] * m2[c]);
      } else {
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) d[c] = k[c] * d[c];
      }
    }
  });
}

template <class T>
void activation_batchnorm_backward(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                                   ExpertAct act, const T* a, const T* mask, const T* k, const T* m1, const T* m2,
                                   T* dz) {
  with_act(act, [&]<ExpertAct A>() {
    with_affine_mask(gamma != nullptr, mask != nullptr, [&]<bool G, bool M>() {
      parallel_for(
          rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
            const T* __restrict g = gamma;
            const T* __restrict b = beta;
            const T* __restrict kc = k;
            const T* __restrict m1c = m1;
            const T* __restrict m2c = m2;
            for (int64_t r = lo; r < hi; ++r) {
              const int64_t o = r * cols;
              const T* __restrict dar = da + o;
              const T* __restrict sr = s + o;
              const T* __restrict ar = a + o;
              const T* __restrict mr = M ? mask + o : nullptr;
              T* __restrict d = dz + o;
#pragma omp simd
              for (int64_t c = 0; c < cols; ++c) {
                const T v = act_grad<A, G, M>(dar[c], sr[c], G ? g[c] : T(0), G ? b[c] : T(0), ar[c], M ? mr[c] : T(1));
                d[c] = kc[c] * (v - m1c[c] - sr[c] * m2c[c]);
              }
            }
          });
    });
  });
}

template <class T>
void softmax_rows(int64_t rows, int64_t n, T* logits) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(4 * n, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      T* p = logits + r * n;
      T m = p[0];
      for (int64_t i = 1; i < n; ++i) m = std::max(m, p[i]);
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        p[i] = std::exp(p[i] - m);
        sum += p[i];
      }
      const T inv = T(1) / sum;
      for (int64_t i = 0; i < n; ++i) p[i] *= inv;
    }
  });
}

template <class T>
void gate_mix_forward(int64_t rows, int64_t h, const ExpertBlock<T>* blocks, int64_t nblocks, const T* gates,
                      int64_t n_experts, T* out) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(h * n_experts, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t r = lo; r < hi; ++r) {
                   T* __restrict o = out + r * h;
                   std::fill(o, o + h, T(0));
                   const T* g = gates + r * n_experts;
                   int64_t e = 0;
                   for (int64_t bi = 0; bi < nblocks; ++bi) {
                     const ExpertBlock<T>& blk = blocks[bi];
                     for (int64_t j = 0; j < blk.count; ++j, ++e) {
                       const T w = g[e];
                       const T* __restrict x = blk.data + r * blk.ld + j * h;
#pragma omp simd
                       for (int64_t c = 0; c < h; ++c) o[c] += w * x[c];
                     }
                   }
                 }
               });
}

template <class T>
void gate_mix_backward(int64_t rows, int64_t h, const ExpertBlock<T>* blocks, T* const* dblocks, int64_t nblocks,
                       const T* gates, int64_t n_experts, const T* dout, T* dlogits) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(2 * h * n_experts, 1)),
               [&](int64_t lo, int64_t hi) {
                 std::vector<T> dg(n_experts);
                 for (int64_t r = lo; r < hi; ++r) {
                   const T* __restrict d = dout + r * h;
                   const T* g = gates + r * n_experts;
                   int64_t e = 0;
                   for (int64_t bi = 0; bi < nblocks; ++bi) {
                     const ExpertBlock<T>& blk = blocks[bi];
                     for (int64_t j = 0; j < blk.count; ++j, ++e) {
                       const T* __restrict x = blk.data + r * blk.ld + j * h;
                       T dot = 0;
#pragma omp simd reduction(+ : dot)
                       for (int64_t c = 0; c < h; ++c) dot += d[c] * x[c];
                       dg[e] = dot;
                       if (dblocks[bi]) {
                         T* __restrict dx = dblocks[bi] + r * blk.ld + j * h;
                         const T w = g[e];
#pragma omp simd
                         for (int64_t c = 0; c < h; ++c) dx[c] = w * d[c];
                       }
                     }
                   }
                   if (dlogits) {
                     T mean = 0;
                     for (int64_t i = 0; i < n_experts; ++i) mean += g[i] * dg[i];
                     for (int64_t i = 0; i < n_experts; ++i) dlogits[r * n_experts + i] = g[i] * (dg[i] - mean);
                   }
                 }
               });
}

template <class T>
void column_sums(int64_t rows, int64_t cols, const T* m, double* sums) {
  parallel_columns(rows, cols, [&](int64_t c0, int64_t c1) {
    const int64_t n = c1 - c0;
    std::vector<T> p(n);
    std::vector<double> s(n, 0.0);
    for (int64_t r0 = 0; r0 < rows; r0 += kSumBlock) {
      std::fill(p.begin(), p.end(), T(0));
      T* __restrict q = p.data();
      const int64_t r1 = std::min(rows, r0 + kSumBlock);
      for (int64_t r = r0; r < r1; ++r) {
        const T* __restrict mr = m + r * cols + c0;
#pragma omp simd
        for (int64_t c = 0; c < n; ++c) q[c] += mr[c];
      }
      for (int64_t c = 0; c < n; ++c) s[c] += q[c];
    }
    for (int64_t c = 0; c < n; ++c) sums[c0 + c] = s[c];
  });
}

#define RECHUB_EXPERTS_INSTANTIATE(T)                                                                                 \
  template void column_mean_var<T>(int64_t, int64_t, const T*, int64_t, double*, double*);                            \
  template void normalize_activate<T>(int64_t, int64_t, T*, const T*, const T*, const T*, const T*, ExpertAct,        \
                                      const T*, T*);                                                                  \
  template void activation_backward<T>(int64_t, int64_t, const T*, const T*, const T*, const T*, ExpertAct, const T*, \
                                       const T*, T*, double*, double*);                                               \
  template void batchnorm_backward<T>(int64_t, int64_t, T*, const T*, const T*, const T*, const T*);                  \
  template void activation_batchnorm_backward<T>(int64_t, int64_t, const T*, const T*, const T*, const T*, ExpertAct, \
                                                 const T*, const T*, const T*, const T*, const T*, T*);               \
  template void softmax_rows<T>(int64_t, int64_t, T*);                                                                \
  template void gate_mix_forward<T>(int64_t, int64_t, const ExpertBlock<T>*, int64_t, const T*, int64_t, T*);         \
  template void gate_mix_backward<T>(int64_t, int64_t, const ExpertBlock<T>*, T* const*, int64_t, const T*, int64_t,  \
                                     const T*, T*);                                                                   \
  template void column_sums<T>(int64_t, int64_t, const T*, double*);

RECHUB_EXPERTS_INSTANTIATE(float)
RECHUB_EXPERTS_INSTANTIATE(double)
#undef RECHUB_EXPERTS_INSTANTIATE

}  // namespace rechub::kernels::cpu
