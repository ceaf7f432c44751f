// The CPU entry points of the fused expert block and the gate mix (kernels/experts.h, f32 and f64):
// the reference of kernels/cuda/experts.cu.
//
// Row-wise passes split rows over threads; passes that reduce over rows (batch statistics, bias
// and BatchNorm gradients) split columns instead, so each thread owns its accumulators and the
// result does not depend on the thread count. Partial sums are kept in T over blocks of
// kSumBlock rows and folded into double, which keeps f32 sums over large batches accurate
// without paying for double arithmetic in the inner loop.
#include "rechub/kernels/experts.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "rechub/kernels/cpu/gemm.h"
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

template <Activation A, class T>
inline T act_value(T y) {
  if constexpr (A == Activation::relu) return y > T(0) ? y : T(0);
  if constexpr (A == Activation::leaky_relu) return y > T(0) ? y : T(kLeakyReluSlope) * y;
  if constexpr (A == Activation::sigmoid) return T(1) / (T(1) + std::exp(-y));
  if constexpr (A == Activation::tanh) return std::tanh(y);
  return y;
}

// Calls f.template operator()<A>() for the runtime activation.
template <class F>
void with_act(Activation a, F&& f) {
  switch (a) {
    case Activation::identity:
      f.template operator()<Activation::identity>();
      break;
    case Activation::relu:
      f.template operator()<Activation::relu>();
      break;
    case Activation::leaky_relu:
      f.template operator()<Activation::leaky_relu>();
      break;
    case Activation::sigmoid:
      f.template operator()<Activation::sigmoid>();
      break;
    case Activation::tanh:
      f.template operator()<Activation::tanh>();
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

// How normalize_activate forms s from z: BatchNorm's (z - shift) * scale, z + bias, or z.
enum class Norm : uint8_t { scale, bias, none };

template <class F>
void with_norm(Norm n, F&& f) {
  switch (n) {
    case Norm::scale:
      f.template operator()<Norm::scale>();
      break;
    case Norm::bias:
      f.template operator()<Norm::bias>();
      break;
    case Norm::none:
      f.template operator()<Norm::none>();
      break;
  }
}

// dy = da * mask * act'(y) for one element; s is the normalised value, y = g * s + b (G) or y = s;
// m is the element's dropout mask value (M). The same operations as with a mask of 1 and no affine.
template <Activation A, bool G, bool M, class T>
inline T act_grad(T da, T s, T g, T b, T a, T m) {
  // Selects between values computed unconditionally (a division by a safe denominator, not a
  // conditional division), so the loops if-convert and vectorise for every set.
  T d;
  if constexpr (A == Activation::relu || A == Activation::leaky_relu) {
    const T y = G ? g * s + b : s;
    const T off = A == Activation::relu ? T(0) : T(kLeakyReluSlope);
    d = y > T(0) ? T(1) : off;
  } else if constexpr (A == Activation::sigmoid || A == Activation::tanh) {
    T ap = a;
    if constexpr (M) {
      const T q = a / (m != T(0) ? m : T(1));
      ap = m != T(0) ? q : T(0);
    }
    d = A == Activation::sigmoid ? ap * (T(1) - ap) : T(1) - ap * ap;
  } else {
    d = T(1);
  }
  return da * d * (M ? m : T(1));
}

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

template <Norm N, class T>
inline T norm_value(T z, T shift, T scale, T bias) {
  if constexpr (N == Norm::scale) return (z - shift) * scale;
  if constexpr (N == Norm::bias) return z + bias;
  return z;
}

template <class T>
void normalize_activate(int64_t rows, int64_t cols, T* z, const T* bias, const T* shift, const T* scale, const T* gamma,
                        const T* beta, Activation act, const T* mask, T* out) {
  const Norm norm = scale ? Norm::scale : bias ? Norm::bias : Norm::none;
  with_act(act, [&]<Activation A>() {
    with_norm(norm, [&]<Norm N>() {
      parallel_for(
          rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
            for (int64_t r = lo; r < hi; ++r) {
              T* __restrict zr = z + r * cols;
              T* __restrict orow = out + r * cols;
              const T* __restrict mr = mask ? mask + r * cols : nullptr;
              if (gamma) {
#pragma omp simd
                for (int64_t c = 0; c < cols; ++c) {
                  const T s = norm_value<N>(zr[c], N == Norm::scale ? shift[c] : T(0),
                                            N == Norm::scale ? scale[c] : T(0), N == Norm::bias ? bias[c] : T(0));
                  zr[c] = s;
                  orow[c] = act_value<A>(gamma[c] * s + beta[c]);
                }
              } else {
#pragma omp simd
                for (int64_t c = 0; c < cols; ++c) {
                  const T s = norm_value<N>(zr[c], N == Norm::scale ? shift[c] : T(0),
                                            N == Norm::scale ? scale[c] : T(0), N == Norm::bias ? bias[c] : T(0));
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
  });
}

template <class T>
void activation_backward(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                         Activation act, const T* a, const T* mask, T* dy, double* sum_dy, double* sum_dys) {
  with_act(act, [&]<Activation A>() {
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
          if (sum_dy) sum_dy[c0 + c] = s1[c];
          if (sum_dys) sum_dys[c0 + c] = s2[c];
        }
      });
    });
  });
}

template <class T>
void scale_columns(int64_t rows, int64_t cols, T* m, const T* k) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      T* __restrict d = m + r * cols;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) d[c] = k[c] * d[c];
    }
  });
}

template <class T>
void activation_bn_backward(int64_t rows, int64_t cols, const T* da, const T* s, const T* gamma, const T* beta,
                            Activation act, const T* a, const T* mask, const T* k, const T* m1, const T* m2, T* dz) {
  with_act(act, [&]<Activation A>() {
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
void softmax_rows(int64_t rows, int64_t n, const T* logits, T* gates) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(4 * n, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* x = logits + r * n;
      T* p = gates + r * n;
      T m = x[0];
      for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        p[i] = std::exp(x[i] - m);
        sum += p[i];
      }
      const T inv = T(1) / sum;
      for (int64_t i = 0; i < n; ++i) p[i] *= inv;
    }
  });
}

template <class T>
void gate_mix_forward(int64_t rows, int64_t h, const GateBlocks<T>& blocks, const T* gates, int64_t n_experts, T* out) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(h * n_experts, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t r = lo; r < hi; ++r) {
                   T* __restrict o = out + r * h;
                   std::fill(o, o + h, T(0));
                   const T* g = gates + r * n_experts;
                   int64_t e = 0;
                   for (int bi = 0; bi < blocks.n; ++bi) {
                     const int64_t count = blocks.count[bi], ld = count * h;
                     for (int64_t j = 0; j < count; ++j, ++e) {
                       const T w = g[e];
                       const T* __restrict x = blocks.data[bi] + r * ld + j * h;
#pragma omp simd
                       for (int64_t c = 0; c < h; ++c) o[c] += w * x[c];
                     }
                   }
                 }
               });
}

template <class T>
void gate_mix_backward(int64_t rows, int64_t h, const GateBlocks<T>& blocks, const T* gates, int64_t n_experts,
                       const T* dout, T* dlogits) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(2 * h * n_experts, 1)),
               [&](int64_t lo, int64_t hi) {
                 std::vector<T> dg(n_experts);
                 for (int64_t r = lo; r < hi; ++r) {
                   const T* __restrict d = dout + r * h;
                   const T* g = gates + r * n_experts;
                   int64_t e = 0;
                   for (int bi = 0; bi < blocks.n; ++bi) {
                     const int64_t count = blocks.count[bi], ld = count * h;
                     for (int64_t j = 0; j < count; ++j, ++e) {
                       const T* __restrict x = blocks.data[bi] + r * ld + j * h;
                       T dot = 0;
#pragma omp simd reduction(+ : dot)
                       for (int64_t c = 0; c < h; ++c) dot += d[c] * x[c];
                       dg[e] = dot;
                       if (blocks.grad[bi]) {
                         T* __restrict dx = blocks.grad[bi] + r * ld + j * h;
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

// sums[c] = sum_r m[r, c], accumulated in double (partial sums in T over kSumBlock rows).
template <class T>
void column_sums(int64_t rows, int64_t cols, const T* m, T* sums) {
  std::vector<double> total(static_cast<size_t>(cols));
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
    for (int64_t c = 0; c < n; ++c) total[c0 + c] = s[c];
  });
  for (int64_t c = 0; c < cols; ++c) sums[c] = static_cast<T>(total[c]);
}

template <class T>
void broadcast_rows(const T* bias, int64_t rows, int64_t cols, T* y) {
  for (int64_t r = 0; r < rows; ++r) std::copy(bias, bias + cols, y + r * cols);
}

template <class T>
void bn_prepare(int64_t cols, bool training, const double* mean, const double* var, const T* bias, double momentum,
                double eps, double unbias, T* rm, T* rv, T* shift, T* invstd) {
  for (int64_t c = 0; c < cols; ++c)
    bn_prepare_column(c, training, mean, var, bias, momentum, eps, unbias, rm, rv, shift, invstd);
}

template <class T>
void bn_grad_columns(int64_t cols, int64_t rows, BnMode mode, const double* sum_dy, const double* sum_dys,
                     const T* gamma, const T* invstd, T* k, T* m1, T* m2, T* dbias, T* dgamma, T* dbeta) {
  for (int64_t c = 0; c < cols; ++c)
    bn_grad_column(c, rows, mode, sum_dy, sum_dys, gamma, invstd, k, m1, m2, dbias, dgamma, dbeta);
}

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if constexpr (std::is_same_v<T, float>)
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Runs f(e) for e in [0, E): with several threads and E a multiple of their count, one expert per
// thread at a time (each GEMM inside then runs single-threaded, see gemm.h), which balances
// exactly and saves a fork/join per GEMM; otherwise in order, each GEMM using every thread.
template <class F>
void for_each_expert(int64_t E, F&& f) {
  const int64_t nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt > 1 && E >= nt && E % nt == 0) {
#pragma omp parallel for schedule(static) num_threads(static_cast <int>(nt))
    for (int64_t e = 0; e < E; ++e) f(e);
  } else {
    for (int64_t e = 0; e < E; ++e) f(e);
  }
}

template <class T>
void gemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                          int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C, int64_t ldc,
                          int64_t stride_c, int64_t batch) {
  for_each_expert(batch, [&](int64_t i) {
    gemm<T>(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
  });
}

}  // namespace

template <class T>
const ExpertKernels<T>& expert_kernels() {
  static const ExpertKernels<T> table{&gemm<T>,
                                      &gemm_strided_batched<T>,
                                      &column_mean_var<T>,
                                      &bn_prepare<T>,
                                      &normalize_activate<T>,
                                      &activation_backward<T>,
                                      &bn_grad_columns<T>,
                                      &activation_bn_backward<T>,
                                      &scale_columns<T>,
                                      &broadcast_rows<T>,
                                      &softmax_rows<T>,
                                      &gate_mix_forward<T>,
                                      &gate_mix_backward<T>,
                                      &column_sums<T>};
  return table;
}
template const ExpertKernels<float>& expert_kernels<float>();
template const ExpertKernels<double>& expert_kernels<double>();

}  // namespace rechub::kernels::cpu
