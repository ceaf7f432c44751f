// Matrix products: matmul, bmm and linear (one GEMM plus bias), with their hand-written backward.
#include "rechub/core/dispatch.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/gemm.h"

namespace rechub::ops {
using detail::check_float_operands;

namespace {

// C (M x N, row stride ldc) = alpha * op(A) op(B) + beta * C.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const Tensor& A, int64_t a_off, const Tensor& B,
          int64_t b_off, double beta, Tensor& C, int64_t c_off) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
#ifdef RECHUB_WITH_CUDA
  if (C.device().is_cuda()) {
    cuda::use_device(C.device().index);
    kernels::cuda::sgemm(ta, tb, M, N, K, 1.0f, A.data<float>() + a_off, lda, B.data<float>() + b_off, ldb,
                         static_cast<float>(beta), C.data<float>() + c_off, N);
    return;
  }
#endif
  if (C.dtype() == DType::f32)
    kernels::cpu::sgemm(ta, tb, M, N, K, 1.0f, A.data<float>() + a_off, lda, B.data<float>() + b_off, ldb,
                        static_cast<float>(beta), C.data<float>() + c_off, N);
  else
    kernels::cpu::dgemm(ta, tb, M, N, K, 1.0, A.data<double>() + a_off, lda, B.data<double>() + b_off, ldb, beta,
                        C.data<double>() + c_off, N);
}

// Gradients of C = op(A) op(B) (see the derivation in the comment of matmul).
void matmul_grads(const Tensor& g, const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                  int64_t batch, const std::vector<bool>& needs, Tensor& ga, Tensor& gb) {
  if (needs[0]) ga = empty(a.shape(), {.dtype = a.dtype(), .device = a.device()});
  if (needs[1]) gb = empty(b.shape(), {.dtype = b.dtype(), .device = b.device()});
  for (int64_t e = 0; e < batch; ++e) {
    const int64_t ao = e * M * K, bo = e * K * N, go = e * M * N;
    if (needs[0]) {
      if (!ta)  // dA[M,K] = dC op(B)^T
        gemm(false, !tb, M, K, N, g, go, b, bo, 0.0, ga, ao);
      else  // A is [K,M]: dA = op(B) dC^T
        gemm(tb, true, K, M, N, b, bo, g, go, 0.0, ga, ao);
    }
    if (needs[1]) {
      if (!tb)  // dB[K,N] = op(A)^T dC
        gemm(!ta, false, K, N, M, a, ao, g, go, 0.0, gb, bo);
      else  // B is [N,K]: dB = dC^T op(A)
        gemm(true, ta, N, K, M, g, go, a, ao, 0.0, gb, bo);
    }
  }
}

}  // namespace

// C = op(A) op(B). With A' = op(A), B' = op(B): dA' = dC B'^T and dB' = A'^T dC; a transposed
// operand takes the transpose of that, which the GEMM flags express without copies.
Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_float_operands("matmul", {&a, &b});
  RECHUB_CHECK(a.dim() == 2 && b.dim() == 2,
               "matmul: expected 2-D tensors, got " << shape_str(a.shape()) << " and " << shape_str(b.shape()));
  const int64_t M = ta ? a.size(1) : a.size(0), K = ta ? a.size(0) : a.size(1);
  const int64_t K2 = tb ? b.size(1) : b.size(0), N = tb ? b.size(0) : b.size(1);
  RECHUB_CHECK(K == K2, "matmul: inner dimensions differ: " << shape_str(a.shape()) << (ta ? "^T" : "") << " @ "
                                                            << shape_str(b.shape()) << (tb ? "^T" : "") << " (" << K
                                                            << " vs " << K2 << ")");
  Tensor out = empty({M, N}, {.dtype = a.dtype(), .device = a.device()});
  if (K == 0)
    out.zero_();
  else
    gemm(ta, tb, M, N, K, a, 0, b, 0, 0.0, out, 0);
  return record(out, "matmul", {a, b},
                [a = a.detach(), b = b.detach(), ta, tb, M, N, K](const Tensor& g, const std::vector<bool>& n) {
                  Tensor ga, gb;
                  matmul_grads(g, a, b, ta, tb, M, N, K, 1, n, ga, gb);
                  return std::vector<Tensor>{ga, gb};
                });
}

Tensor bmm(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_float_operands("bmm", {&a, &b});
  RECHUB_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0),
               "bmm: expected 3-D tensors with the same batch size, got " << shape_str(a.shape()) << " and "
                                                                          << shape_str(b.shape()));
  const int64_t E = a.size(0);
  const int64_t M = ta ? a.size(2) : a.size(1), K = ta ? a.size(1) : a.size(2);
  const int64_t K2 = tb ? b.size(2) : b.size(1), N = tb ? b.size(1) : b.size(2);
  RECHUB_CHECK(K == K2, "bmm: inner dimensions differ (" << K << " vs " << K2 << ") for " << shape_str(a.shape())
                                                         << " @ " << shape_str(b.shape()));
  Tensor out = empty({E, M, N}, {.dtype = a.dtype(), .device = a.device()});
  if (K == 0) out.zero_();
  // On CUDA one strided-batched GEMM; on the CPU one GEMM per batch entry.
  RECHUB_DEVICE_SWITCH(a,
                       if (K > 0) kernels::cuda::sgemm_strided_batched(ta, tb, M, N, K, 1.0f, a.data<float>(),
                                                                       ta ? M : K, M * K, b.data<float>(), tb ? K : N,
                                                                       K * N, 0.0f, out.data<float>(), N, M * N, E),
                       for (int64_t e = 0; e < E && K > 0; ++e)
                           gemm(ta, tb, M, N, K, a, e * M * K, b, e * K * N, 0.0, out, e * M * N));
  return record(out, "bmm", {a, b},
                [a = a.detach(), b = b.detach(), ta, tb, M, N, K, E](const Tensor& g, const std::vector<bool>& n) {
                  Tensor ga, gb;
                  matmul_grads(g, a, b, ta, tb, M, N, K, E, n, ga, gb);
                  return std::vector<Tensor>{ga, gb};
                });
}

// y = x W^T + b: the bias is written into y first and the GEMM accumulates onto it (beta = 1).
// Backward: dx = dy W, dW = dy^T x, db = column sums of dy.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (b.defined())
    check_float_operands("linear", {&x, &w, &b});
  else
    check_float_operands("linear", {&x, &w});
  RECHUB_CHECK(x.dim() == 2 && w.dim() == 2, "linear: expected input [N, in] and weight [out, in], got "
                                                 << shape_str(x.shape()) << " and " << shape_str(w.shape()));
  const int64_t N = x.size(0), in = x.size(1), out_f = w.size(0);
  RECHUB_CHECK(w.size(1) == in, "linear: input has " << in << " features but the weight " << shape_str(w.shape())
                                                     << " expects " << w.size(1)
                                                     << (w.name().empty() ? "" : " ('" + w.name() + "')"));
  if (b.defined())
    RECHUB_CHECK(b.dim() == 1 && b.size(0) == out_f,
                 "linear: bias shape " << shape_str(b.shape()) << " does not match " << out_f << " outputs");
  Tensor y = empty({N, out_f}, {.dtype = x.dtype(), .device = x.device()});
  double beta = 0.0;
  if (b.defined()) {
    RECHUB_DEVICE_SWITCH(x, kernels::cuda::broadcast_rows(b.data<float>(), N, out_f, y.data<float>()),
                         RECHUB_FLOAT_DISPATCH(x.dtype(), "linear", {
                           scalar_t* py = y.data<scalar_t>();
                           const scalar_t* pb = b.data<scalar_t>();
                           for (int64_t i = 0; i < N; ++i)
                             for (int64_t j = 0; j < out_f; ++j) py[i * out_f + j] = pb[j];
                         }));
    beta = 1.0;
  } else if (in == 0) {
    y.zero_();
  }
  if (in > 0) gemm(false, true, N, out_f, in, x, 0, w, 0, beta, y, 0);
  return record(y, "linear", {x, w, b},
                [x = x.detach(), w = w.detach(), N, in, out_f](const Tensor& g, const std::vector<bool>& n) {
                  Tensor gx, gw, gb;
                  if (n[0]) {
                    gx = empty({N, in}, {.dtype = g.dtype(), .device = g.device()});
                    gemm(false, false, N, in, out_f, g, 0, w, 0, 0.0, gx, 0);
                  }
                  if (n[1]) {
                    gw = empty({out_f, in}, {.dtype = g.dtype(), .device = g.device()});
                    gemm(true, false, out_f, in, N, g, 0, x, 0, 0.0, gw, 0);
                  }
                  if (n[2]) gb = sum_to(g, {out_f});
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

Tensor transpose(const Tensor& a) {
  check_float_operands("transpose", {&a});
  RECHUB_CHECK(a.dim() == 2, "transpose: expected a 2-D tensor, got " << shape_str(a.shape()));
  const int64_t r = a.size(0), c = a.size(1);
  Tensor out = empty({c, r}, {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(a, kernels::cuda::transpose(a.data<float>(), r, c, out.data<float>()),
                       RECHUB_FLOAT_DISPATCH(a.dtype(), "transpose", {
                         const scalar_t* p = a.data<scalar_t>();
                         scalar_t* q = out.data<scalar_t>();
                         for (int64_t i = 0; i < r; ++i)
                           for (int64_t j = 0; j < c; ++j) q[j * r + i] = p[i * c + j];
                       }));
  return record(out, "transpose", {a},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{transpose(g)}; });
}

}  // namespace rechub::ops
