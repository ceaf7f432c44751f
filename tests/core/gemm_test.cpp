// Tests for the CPU GEMM kernels (kernels/cpu/gemm.h): sgemm (AVX-512, AVX2 or Eigen, picked at run
// time), every instruction set this CPU supports through sgemm_isa, sgemm_eigen and dgemm, all checked
// against naive triple loops evaluated in double precision. ctest also runs this file with RECHUB_CPU
// forcing each set, so the whole suite's sgemm calls go through every supported path.
#include "rechub/kernels/cpu/gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using rechub::kernels::cpu::dgemm;
using rechub::kernels::cpu::Isa;
using rechub::kernels::cpu::sgemm;
using rechub::kernels::cpu::sgemm_eigen;
using rechub::kernels::cpu::sgemm_kernel_name;

struct GemmCase {
  bool trans_a = false;
  bool trans_b = false;
  int64_t M = 1, N = 1, K = 1;
  double alpha = 1.0;
  double beta = 0.0;
  int64_t pad = 0;  // added to every leading dimension

  std::string name() const {
    return std::string(trans_a ? "T" : "N") + (trans_b ? "T" : "N") + " M=" + std::to_string(M) +
           " N=" + std::to_string(N) + " K=" + std::to_string(K) + " alpha=" + std::to_string(alpha) +
           " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad);
  }
};

// Row-major operands with the stored (not logical) shapes and padded leading dimensions.
template <typename T>
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<T> a, b, c;
};

template <typename T>
Operands<T> make_operands(const GemmCase& g, uint32_t seed) {
  Operands<T> op;
  const int64_t a_rows = g.trans_a ? g.K : g.M, a_cols = g.trans_a ? g.M : g.K;
  const int64_t b_rows = g.trans_b ? g.N : g.K, b_cols = g.trans_b ? g.K : g.N;
  op.lda = a_cols + g.pad;
  op.ldb = b_cols + g.pad;
  op.ldc = g.N + g.pad;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  auto fill = [&](std::vector<T>& v, int64_t rows, int64_t ld) {
    // Padding holds a value that would show up loudly if a kernel read it.
    v.assign(static_cast<size_t>(std::max<int64_t>(rows * ld, 1)), T(1e6));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < ld - g.pad; ++j) v[static_cast<size_t>(i * ld + j)] = static_cast<T>(dist(rng));
  };
  fill(op.a, a_rows, op.lda);
  fill(op.b, b_rows, op.ldb);
  fill(op.c, g.M, op.ldc);
  return op;
}

// alpha * op(A) op(B) + beta * C in double; beta == 0 ignores C.
template <typename T>
std::vector<double> naive_gemm(const GemmCase& g, const Operands<T>& op) {
  std::vector<double> ref(static_cast<size_t>(g.M * g.N));
  for (int64_t i = 0; i < g.M; ++i) {
    for (int64_t j = 0; j < g.N; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < g.K; ++k) {
        const double a =
            g.trans_a ? op.a[static_cast<size_t>(k * op.lda + i)] : op.a[static_cast<size_t>(i * op.lda + k)];
        const double b =
            g.trans_b ? op.b[static_cast<size_t>(j * op.ldb + k)] : op.b[static_cast<size_t>(k * op.ldb + j)];
        acc += a * b;
      }
      double v = g.alpha * acc;
      if (g.beta != 0.0) v += g.beta * static_cast<double>(op.c[static_cast<size_t>(i * op.ldc + j)]);
      ref[static_cast<size_t>(i * g.N + j)] = v;
    }
  }
  return ref;
}

// ||C - ref|| / ||ref|| over the logical M x N block (NaN compares as a failure).
template <typename T>
double relative_error(const GemmCase& g, const std::vector<T>& c, int64_t ldc, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < g.N; ++j) {
      const double r = ref[static_cast<size_t>(i * g.N + j)];
      const double d = static_cast<double>(c[static_cast<size_t>(i * ldc + j)]) - r;
      num += d * d;
      den += r * r;
    }
  if (std::isnan(num)) return std::numeric_limits<double>::infinity();
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Elements of C outside the logical N columns (the ldc padding) must be left alone.
template <typename T>
bool padding_untouched(const GemmCase& g, const std::vector<T>& c, int64_t ldc) {
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = g.N; j < ldc; ++j)
      if (c[static_cast<size_t>(i * ldc + j)] != T(1e6)) return false;
  return true;
}

using SgemmFn = std::function<void(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                   int64_t, float, float*, int64_t)>;

void expect_sgemm_matches(const SgemmFn& fn, const GemmCase& g, double tol = 1e-5) {
  Operands<float> op = make_operands<float>(g, static_cast<uint32_t>(g.M * 7919 + g.N * 104729 + g.K * 31 + g.pad));
  const std::vector<double> ref = naive_gemm(g, op);
  fn(g.trans_a, g.trans_b, g.M, g.N, g.K, static_cast<float>(g.alpha), op.a.data(), op.lda, op.b.data(), op.ldb,
     static_cast<float>(g.beta), op.c.data(), op.ldc);
  EXPECT_LT(relative_error(g, op.c, op.ldc, ref), tol) << g.name();
  EXPECT_TRUE(padding_untouched(g, op.c, op.ldc)) << g.name();
}

void expect_dgemm_matches(const GemmCase& g, double tol = 1e-12) {
  Operands<double> op = make_operands<double>(g, static_cast<uint32_t>(g.M * 31 + g.N * 17 + g.K));
  const std::vector<double> ref = naive_gemm(g, op);
  dgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, op.a.data(), op.lda, op.b.data(), op.ldb, g.beta, op.c.data(),
        op.ldc);
  EXPECT_LT(relative_error(g, op.c, op.ldc, ref), tol) << g.name();
  EXPECT_TRUE(padding_untouched(g, op.c, op.ldc)) << g.name();
}

// Every awkward size (1, 3, 13, 31, 33, 127, 257, 1000) appears in each of the M, N and K slots.
std::vector<GemmCase> awkward_cases() {
  const int64_t shapes[][3] = {{1, 1, 1},       {3, 3, 3},       {13, 13, 13},    {31, 31, 31},    {33, 33, 33},
                               {127, 127, 127}, {257, 257, 257}, {1, 257, 33},    {257, 1, 127},   {33, 127, 1},
                               {3, 1000, 13},   {1000, 3, 31},   {13, 31, 1000},  {1000, 33, 127}, {31, 1000, 3},
                               {127, 13, 1000}, {1000, 257, 33}, {257, 1000, 13}, {33, 3, 257},    {13, 127, 31},
                               {127, 257, 257}, {1000, 1000, 1}, {1, 1000, 257},  {257, 31, 1000}};
  std::vector<GemmCase> cases;
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) {
      GemmCase g;
      g.trans_a = (t & 1) != 0;
      g.trans_b = (t & 2) != 0;
      g.M = s[0];
      g.N = s[1];
      g.K = s[2];
      cases.push_back(g);
    }
  return cases;
}

// The MMoE layer shapes at batch M: forward [M,128]x[128,256] and [M,256]x[256,128], the input
// gradients dX = dY W^T (trans_b) and the weight gradients dW = X^T dY (trans_a, K = batch).
std::vector<GemmCase> mmoe_cases(int64_t batch) {
  return {
      {false, false, batch, 256, 128},  // forward, layer 1
      {false, false, batch, 128, 256},  // forward, layer 2
      {false, true, batch, 128, 256},   // dX of layer 1: dY[M,256] * W1[128,256]^T
      {false, true, batch, 256, 128},   // dX of layer 2: dY[M,128] * W2[256,128]^T
      {true, false, 128, 256, batch},   // dW of layer 1: X[M,128]^T * dY[M,256]
      {true, false, 256, 128, batch},   // dW of layer 2: X[M,256]^T * dY[M,128]
  };
}

// ---- sgemm -----------------------------------------------------------------------------------------

TEST(Sgemm, ReportsTheKernelThisCpuSupportsOrTheForcedOne) {
  const std::string name = sgemm_kernel_name();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* forced = std::getenv("RECHUB_CPU");
  if (forced != nullptr && *forced != '\0') {
    EXPECT_EQ(name, std::string(forced) == "generic" ? "eigen" : forced);
  } else {
    EXPECT_EQ(name, avx512 ? "avx512" : avx2 ? "avx2" : "eigen");
  }
  EXPECT_EQ(rechub::kernels::cpu::isa_supported(Isa::avx512), avx512);
  EXPECT_EQ(rechub::kernels::cpu::isa_supported(Isa::avx2), avx2);
}

// Every set the CPU supports, called directly, on the awkward sizes, alpha/beta and padded strides.
class SgemmIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!rechub::kernels::cpu::isa_supported(GetParam()))
      GTEST_SKIP() << "this CPU has no " << rechub::kernels::cpu::isa_name(GetParam());
  }
  SgemmFn fn() const {
    const Isa isa = GetParam();
    return [isa](bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
      rechub::kernels::cpu::sgemm_isa(isa, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    };
  }
};

TEST_P(SgemmIsa, MatchesNaiveLoopsForAllTransposes) {
  for (const GemmCase& g : awkward_cases()) expect_sgemm_matches(fn(), g);
}

TEST_P(SgemmIsa, AppliesAlphaBetaAndLeadingDimensions) {
  for (double beta : {0.0, 1.0, -1.5})
    for (int64_t pad : {0, 1, 9})
      for (int t = 0; t < 4; ++t) {
        expect_sgemm_matches(fn(), GemmCase{(t & 1) != 0, (t & 2) != 0, 37, 45, 29, -0.5, beta, pad});
        expect_sgemm_matches(fn(), GemmCase{(t & 1) != 0, (t & 2) != 0, 301, 70, 600, 2.0, beta, pad});
      }
}

TEST_P(SgemmIsa, MatchesNaiveLoopsAtMmoeShapesOnOneAndTwoThreads) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const GemmCase& g : mmoe_cases(520)) expect_sgemm_matches(fn(), g);
    expect_sgemm_matches(fn(), GemmCase{false, false, 150, 2048, 128});  // eight experts' first layers at once
  }
  omp_set_num_threads(saved);
}

TEST_P(SgemmIsa, BetaZeroNeverReadsCSoNaNDoesNotPropagate) {
  for (int t = 0; t < 4; ++t) {
    const GemmCase g{(t & 1) != 0, (t & 2) != 0, 29, 35, 300};
    Operands<float> op = make_operands<float>(g, 7);
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) op.c[static_cast<size_t>(i * op.ldc + j)] = std::nanf("");
    fn()(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0f, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f, op.c.data(),
         op.ldc);
    EXPECT_LT(relative_error(g, op.c, op.ldc, naive_gemm(GemmCase{g.trans_a, g.trans_b, g.M, g.N, g.K}, op)), 1e-5);
  }
}

// A row of C depends only on the same row of op(A): computed alone (serving one request, where a
// plain B is read in place by the few-rows path) or within a batch (the blocked path), it has the same
// bits, for every transpose, alpha and beta, a partial last column panel and a depth over one block.
TEST_P(SgemmIsa, ARowHasTheSameBitsAloneAsInABatch) {
  if (GetParam() == Isa::generic) GTEST_SKIP() << "Eigen's GEMM blocks by the shape";
  for (int64_t N : {1, 7, 8, 15, 16, 17, 31, 32, 48, 50, 129, 2048})
    for (int t = 0; t < 4; ++t)
      for (const auto& [alpha, beta] : {std::pair{1.0, 0.0}, std::pair{1.0, 1.0}, std::pair{0.3, -0.7}}) {
        const GemmCase batch{(t & 1) != 0, (t & 2) != 0, 37, N, 300, alpha, beta, 3};
        const Operands<float> op = make_operands<float>(batch, 11);
        std::vector<float> c = op.c;
        fn()(batch.trans_a, batch.trans_b, batch.M, N, batch.K, static_cast<float>(alpha), op.a.data(), op.lda,
             op.b.data(), op.ldb, static_cast<float>(beta), c.data(), op.ldc);
        EXPECT_LT(relative_error(batch, c, op.ldc, naive_gemm(batch, op)), 1e-5) << batch.name();
        for (int64_t rows : {1, 2, 3, 4, 5})
          for (int64_t r0 : {int64_t{0}, int64_t{31}}) {
            // Rows [r0, r0 + rows) of the same operands, as their own product.
            std::vector<float> part = op.c;
            const float* a = batch.trans_a ? op.a.data() + r0 : op.a.data() + r0 * op.lda;
            fn()(batch.trans_a, batch.trans_b, rows, N, batch.K, static_cast<float>(alpha), a, op.lda, op.b.data(),
                 op.ldb, static_cast<float>(beta), part.data() + r0 * op.ldc, op.ldc);
            for (int64_t i = r0; i < r0 + rows; ++i)
              for (int64_t j = 0; j < N; ++j)
                ASSERT_EQ(part[static_cast<size_t>(i * op.ldc + j)], c[static_cast<size_t>(i * op.ldc + j)])
                    << batch.name() << ": row " << i << " column " << j << " computed in a product of " << rows
                    << " rows";
          }
      }
}

INSTANTIATE_TEST_SUITE_P(EverySet, SgemmIsa, ::testing::Values(Isa::generic, Isa::avx2, Isa::avx512),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(rechub::kernels::cpu::isa_name(info.param));
                         });

TEST(Sgemm, ForcingASetTheCpuLacksIsAnErrorNotAFallback) {
  if (rechub::kernels::cpu::isa_supported(Isa::avx512)) GTEST_SKIP() << "this CPU runs every set";
  float c = 0.0f;
  const float a = 1.0f, b = 1.0f;
  EXPECT_THROW(rechub::kernels::cpu::sgemm_isa(Isa::avx512, false, false, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1),
               std::invalid_argument);
}

TEST(Sgemm, MatchesNaiveLoopsForAllTransposes) {
  for (const GemmCase& g : awkward_cases()) expect_sgemm_matches(sgemm, g);
}

TEST(Sgemm, AppliesAlphaAndBetaForAllTransposes) {
  for (double alpha : {1.0, -0.5, 2.0})
    for (double beta : {0.0, 1.0, 0.25, -1.5})
      for (int t = 0; t < 4; ++t) {
        GemmCase g{(t & 1) != 0, (t & 2) != 0, 37, 45, 29, alpha, beta, 0};
        expect_sgemm_matches(sgemm, g);
        g.M = 130;
        g.N = 70;
        g.K = 300;  // more than one depth block, so beta is applied exactly once
        expect_sgemm_matches(sgemm, g);
      }
}

TEST(Sgemm, HonorsLeadingDimensionsLargerThanTheLogicalWidth) {
  for (int64_t pad : {1, 5, 16, 67})
    for (int t = 0; t < 4; ++t) {
      expect_sgemm_matches(sgemm, GemmCase{(t & 1) != 0, (t & 2) != 0, 33, 31, 127, 1.0, 0.0, pad});
      expect_sgemm_matches(sgemm, GemmCase{(t & 1) != 0, (t & 2) != 0, 257, 100, 300, 0.5, 1.0, pad});
    }
}

TEST(Sgemm, BetaZeroNeverReadsCSoNaNDoesNotPropagate) {
  for (int t = 0; t < 4; ++t)
    for (int64_t n : {13, 64, 257}) {
      GemmCase g{(t & 1) != 0, (t & 2) != 0, n, n, 50, 1.5, 0.0, 3};
      Operands<float> op = make_operands<float>(g, 7);
      for (int64_t i = 0; i < g.M; ++i)
        for (int64_t j = 0; j < g.N; ++j) op.c[static_cast<size_t>(i * op.ldc + j)] = std::nanf("");
      const std::vector<double> ref = naive_gemm(g, op);
      sgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.5f, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f, op.c.data(),
            op.ldc);
      EXPECT_LT(relative_error(g, op.c, op.ldc, ref), 1e-5) << g.name();
    }
}

TEST(Sgemm, BetaOneAccumulatesOntoTheExistingC) {
  for (int t = 0; t < 4; ++t) {
    GemmCase g{(t & 1) != 0, (t & 2) != 0, 100, 96, 200, 1.0, 0.0, 0};
    Operands<float> op = make_operands<float>(g, 11);
    const std::vector<double> once = naive_gemm(g, op);
    sgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0f, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f, op.c.data(),
          op.ldc);
    sgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0f, op.a.data(), op.lda, op.b.data(), op.ldb, 1.0f, op.c.data(),
          op.ldc);
    std::vector<double> twice(once.size());
    for (size_t i = 0; i < once.size(); ++i) twice[i] = 2.0 * once[i];
    EXPECT_LT(relative_error(g, op.c, op.ldc, twice), 1e-5) << g.name();
  }
}

TEST(Sgemm, ZeroDepthOrZeroAlphaOnlyScalesC) {
  for (double alpha : {0.0, 1.0}) {
    GemmCase g{false, false, 20, 33, alpha == 0.0 ? 17 : 0, alpha, 0.5, 2};
    expect_sgemm_matches(sgemm, g);
    g.beta = 0.0;
    Operands<float> op = make_operands<float>(g, 3);
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) op.c[static_cast<size_t>(i * op.ldc + j)] = std::nanf("");
    sgemm(false, false, g.M, g.N, g.K, static_cast<float>(alpha), op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f,
          op.c.data(), op.ldc);
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) EXPECT_EQ(op.c[static_cast<size_t>(i * op.ldc + j)], 0.0f);
  }
}

TEST(Sgemm, EmptyOutputIsANoOp) {
  std::vector<float> a(16, 1.0f), b(16, 1.0f), c(16, 7.0f);
  sgemm(false, false, 0, 4, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4);
  sgemm(false, false, 4, 0, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4);
  for (float v : c) EXPECT_EQ(v, 7.0f);
}

TEST(Sgemm, MatchesNaiveLoopsAtMmoeShapes) {
  for (const GemmCase& g : mmoe_cases(1024)) {
    expect_sgemm_matches(sgemm, g);
    GemmCase acc = g;
    acc.alpha = -1.0;
    acc.beta = 1.0;
    expect_sgemm_matches(sgemm, acc);
  }
}

// Bit for bit, not only within rounding: the depth is never split, so each element of C is summed
// by one thread in the same order whatever the thread count (what makes training results independent
// of --threads). The AVX2 and AVX-512 kernels the CPU supports; the generic path is Eigen's GEMM, whose
// blocking changes with the thread count, so it only matches within rounding (checked below).
TEST(Sgemm, GivesBitIdenticalResultsForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  const std::vector<GemmCase> shapes = {
      {false, false, 1024, 256, 128, 1.0, 0.0, 0},  // split along M
      {true, false, 128, 256, 4096, 1.0, 0.5, 0},   // the weight-gradient shape (long K)
      {false, true, 64, 1000, 300, 1.0, 1.0, 3},    // split along N, beta = 1
      {true, true, 301, 97, 211, 2.0, 0.0, 1},     {false, false, 200, 2048, 128, -0.5, 0.25, 0},
  };
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (!rechub::kernels::cpu::isa_supported(isa)) continue;
    SCOPED_TRACE(rechub::kernels::cpu::isa_name(isa));
    for (const GemmCase& g : shapes) {
      std::vector<float> first;
      const std::vector<double> ref = naive_gemm(g, make_operands<float>(g, 99));
      for (int threads : {1, 2, 3, 4}) {
        omp_set_num_threads(threads);
        Operands<float> op = make_operands<float>(g, 99);
        rechub::kernels::cpu::sgemm_isa(isa, g.trans_a, g.trans_b, g.M, g.N, g.K, static_cast<float>(g.alpha),
                                        op.a.data(), op.lda, op.b.data(), op.ldb, static_cast<float>(g.beta),
                                        op.c.data(), op.ldc);
        EXPECT_LT(relative_error(g, op.c, op.ldc, ref), 1e-5) << g.name() << " on " << threads << " threads";
        if (threads == 1) {
          first = op.c;
        } else if (isa != Isa::generic) {
          EXPECT_TRUE(op.c == first) << g.name() << " differs on " << threads << " threads";
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(Sgemm, RunsSingleThreadedAndCorrectlyInsideAParallelRegion) {
  const GemmCase g{false, true, 300, 128, 256, 1.0, 0.0, 0};
  Operands<float> op = make_operands<float>(g, 5);
  const std::vector<double> ref = naive_gemm(g, op);
  constexpr int kCopies = 4;
  std::vector<std::vector<float>> outs(kCopies, std::vector<float>(op.c.size(), std::nanf("")));
#pragma omp parallel for num_threads(2)
  for (int r = 0; r < kCopies; ++r) {
    sgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0f, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f,
          outs[static_cast<size_t>(r)].data(), op.ldc);
  }
  for (const auto& c : outs) EXPECT_LT(relative_error(g, c, op.ldc, ref), 1e-5);
}

// ---- sgemm_eigen -------------------------------------------------------------------------------------

TEST(SgemmEigen, MatchesNaiveLoopsForAllTransposes) {
  for (const GemmCase& g : awkward_cases()) expect_sgemm_matches(sgemm_eigen, g);
}

TEST(SgemmEigen, AppliesAlphaBetaAndLeadingDimensions) {
  for (int t = 0; t < 4; ++t)
    for (double beta : {0.0, 1.0, 0.25}) {
      expect_sgemm_matches(sgemm_eigen, GemmCase{(t & 1) != 0, (t & 2) != 0, 37, 45, 129, -0.5, beta, 0});
      expect_sgemm_matches(sgemm_eigen, GemmCase{(t & 1) != 0, (t & 2) != 0, 130, 70, 300, 2.0, beta, 9});
    }
}

TEST(SgemmEigen, BetaZeroNeverReadsCSoNaNDoesNotPropagate) {
  for (int64_t n : {3, 64, 200}) {
    GemmCase g{false, true, n, n, 40, 1.0, 0.0, 1};
    Operands<float> op = make_operands<float>(g, 9);
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) op.c[static_cast<size_t>(i * op.ldc + j)] = std::nanf("");
    const std::vector<double> ref = naive_gemm(g, op);
    sgemm_eigen(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0f, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f, op.c.data(),
                op.ldc);
    EXPECT_LT(relative_error(g, op.c, op.ldc, ref), 1e-5) << g.name();
  }
}

TEST(SgemmEigen, MatchesNaiveLoopsAtMmoeShapes) {
  for (const GemmCase& g : mmoe_cases(1024)) expect_sgemm_matches(sgemm_eigen, g);
}

// ---- dgemm -------------------------------------------------------------------------------------------

TEST(Dgemm, MatchesNaiveLoopsForAllTransposes) {
  for (const GemmCase& g : awkward_cases()) expect_dgemm_matches(g);
}

TEST(Dgemm, AppliesAlphaBetaAndLeadingDimensions) {
  for (int t = 0; t < 4; ++t)
    for (double beta : {0.0, 1.0, -0.75}) {
      expect_dgemm_matches(GemmCase{(t & 1) != 0, (t & 2) != 0, 37, 45, 129, 1.25, beta, 0});
      expect_dgemm_matches(GemmCase{(t & 1) != 0, (t & 2) != 0, 31, 70, 300, -2.0, beta, 5});
    }
}

TEST(Dgemm, BetaZeroNeverReadsCSoNaNDoesNotPropagate) {
  GemmCase g{true, false, 65, 33, 20, 1.0, 0.0, 2};
  Operands<double> op = make_operands<double>(g, 13);
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < g.N; ++j) op.c[static_cast<size_t>(i * op.ldc + j)] = std::nan("");
  const std::vector<double> ref = naive_gemm(g, op);
  dgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0, op.c.data(), op.ldc);
  EXPECT_LT(relative_error(g, op.c, op.ldc, ref), 1e-12);
}

}  // namespace
