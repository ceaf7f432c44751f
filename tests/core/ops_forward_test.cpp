// Forward results of the f32 kernels against naive loops in double, at awkward sizes.
#include <gtest/gtest.h>
#include <omp.h>
#include <pthread.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <functional>
#include <numeric>
#include <thread>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "support/gradcheck.h"

namespace rechub {
namespace {
using testing::max_rel_diff;

Tensor rnd(const Shape& s, uint64_t seed, double lo = -2, double hi = 2) {
  Generator g(seed);
  return uniform(s, lo, hi, {}, &g);
}

// Naive elementwise reference over broadcast shapes.
Tensor naive_binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f) {
  const Shape os = ops::broadcast_shape(a.shape(), b.shape(), "ref");
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  const int64_t r = static_cast<int64_t>(os.size()), n = shape_numel(os);
  std::vector<double> out(n);
  auto offset = [&](const Shape& s, int64_t flat) {
    int64_t off = 0, stride = 1;
    for (int64_t d = r - 1, sd = static_cast<int64_t>(s.size()) - 1; d >= 0; --d, --sd) {
      const int64_t idx = flat % os[d];
      flat /= os[d];
      if (sd >= 0) {
        if (s[sd] != 1) off += idx * stride;
        stride *= s[sd];
      }
    }
    return off;
  };
  for (int64_t i = 0; i < n; ++i) out[i] = f(av[offset(a.shape(), i)], bv[offset(b.shape(), i)]);
  return from_vector(out, os);
}

TEST(OpsForward, BroadcastingBinaryOpsMatchNaiveLoops) {
  const std::vector<std::pair<Shape, Shape>> shapes = {{{1}, {1}},       {{127}, {127}},      {{4097}, {}},
                                                       {{31, 17}, {17}}, {{31, 17}, {31, 1}}, {{3, 1, 5}, {4, 1}},
                                                       {{}, {7, 3}},     {{1, 9}, {9, 1}}};
  uint64_t seed = 1;
  for (auto& [sa, sb] : shapes) {
    Tensor a = rnd(sa, seed++), b = rnd(sb, seed++, 0.5, 2.0);
    EXPECT_LT(max_rel_diff(a + b, naive_binary(a, b, [](double x, double y) { return x + y; })), 1e-6);
    EXPECT_LT(max_rel_diff(a - b, naive_binary(a, b, [](double x, double y) { return x - y; })), 1e-6);
    EXPECT_LT(max_rel_diff(a * b, naive_binary(a, b, [](double x, double y) { return x * y; })), 1e-6);
    EXPECT_LT(max_rel_diff(a / b, naive_binary(a, b, [](double x, double y) { return x / y; })), 1e-6);
  }
}

// CPU time (ns) each clock has used.
std::vector<int64_t> cpu_ns(const std::vector<clockid_t>& clocks) {
  std::vector<int64_t> out;
  for (clockid_t c : clocks) {
    timespec ts{};
    EXPECT_EQ(clock_gettime(c, &ts), 0);
    out.push_back(static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec);
  }
  return out;
}

// The OpenMP team does work for a large broadcast: every thread of the team (asked for 4, more
// than this machine may have cores) uses CPU time while the op runs and none while a small op
// (below the parallel grain) runs. Idle team threads sleep in the kernel after a short spin, so
// the measure reads zero for a thread that was not given work: the small op shows that it can.
TEST(OpsForward, LargeBroadcastUsesEveryThreadAndStaysExact) {
  const int saved_threads = omp_get_max_threads();
  const int nt = 4;
  omp_set_num_threads(nt);
  std::vector<clockid_t> clocks(nt);
  std::vector<int> seen(nt, 0);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    seen[static_cast<size_t>(t)] = 1;
    pthread_getcpuclockid(pthread_self(), &clocks[static_cast<size_t>(t)]);
  }
  ASSERT_EQ(std::accumulate(seen.begin(), seen.end(), 0), nt) << "OpenMP gave a smaller team";
  const auto idle_then_measure = [&](const std::function<void()>& f) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // past the team's spin-wait
    const auto before = cpu_ns(clocks);
    f();
    const auto after = cpu_ns(clocks);
    std::vector<int64_t> d;
    for (size_t t = 0; t < before.size(); ++t) d.push_back(after[t] - before[t]);
    return d;
  };

  Tensor sa = rnd({10, 7}, 1), sb = rnd({7}, 2), small;
  const auto small_use = idle_then_measure([&] { small = sa * sb; });
  for (int t = 1; t < nt; ++t)
    EXPECT_EQ(small_use[static_cast<size_t>(t)], 0) << "thread " << t << " ran during a single-threaded op: "
                                                    << "the measure cannot tell a serial op from a parallel one";

  Tensor a = rnd({1000, 257}, 5), b = rnd({257}, 6), c;
  const auto use = idle_then_measure([&] {
    for (int rep = 0; rep < 5; ++rep) c = a * b;
  });
  for (int t = 0; t < nt; ++t)
    EXPECT_GT(use[static_cast<size_t>(t)], 0)
        << "OpenMP thread " << t << " of " << nt << " did no work for a [1000, 257] * [257] broadcast";
  omp_set_num_threads(saved_threads);
  EXPECT_LT(max_rel_diff(c, naive_binary(a, b, [](double x, double y) { return x * y; })), 1e-6);
}

TEST(OpsForward, UnaryOpsMatchTheirFormulas) {
  for (int64_t n : {1, 3, 127, 4097}) {
    Tensor x = rnd({n}, 10 + n, -3, 3);
    const auto v = x.to_vector<double>();
    auto check = [&](const Tensor& y, const std::function<double(double)>& f, const char* name) {
      std::vector<double> ref(v.size());
      for (size_t i = 0; i < v.size(); ++i) ref[i] = f(v[i]);
      EXPECT_LT(max_rel_diff(y, from_vector(ref, {n})), 1e-6) << name << " n=" << n;
    };
    check(
        ops::neg(x), [](double a) { return -a; }, "neg");
    check(
        ops::exp(x), [](double a) { return std::exp(a); }, "exp");
    check(
        ops::log(ops::abs(x) + 0.1), [](double a) { return std::log(std::abs(a) + 0.1); }, "log");
    check(
        ops::sqrt(ops::abs(x)), [](double a) { return std::sqrt(std::abs(a)); }, "sqrt");
    check(
        ops::pow(ops::abs(x), 1.7), [](double a) { return std::pow(std::abs(a), 1.7); }, "pow");
    check(
        ops::clamp(x, -1, 0.5), [](double a) { return std::min(std::max(a, -1.0), 0.5); }, "clamp");
    check(
        ops::relu(x), [](double a) { return a > 0 ? a : 0; }, "relu");
    check(
        ops::leaky_relu(x, 0.1), [](double a) { return a > 0 ? a : 0.1 * a; }, "leaky_relu");
    check(
        ops::sigmoid(x), [](double a) { return 1 / (1 + std::exp(-a)); }, "sigmoid");
    check(
        ops::tanh(x), [](double a) { return std::tanh(a); }, "tanh");
  }
}

TEST(OpsForward, SigmoidIsStableForLargeInputs) {
  Tensor x = from_vector(std::vector<float>{-200.f, -90.f, 0.f, 90.f, 200.f}, {5});
  const auto y = ops::sigmoid(x).to_vector<float>();
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[2], 0.5f);
  EXPECT_EQ(y[4], 1.0f);
  for (float v : y) EXPECT_FALSE(std::isnan(v));
}

TEST(OpsForward, SoftmaxAndLogSoftmaxMatchNaive) {
  Tensor x = rnd({7, 13}, 3, -20, 20);
  const auto v = x.to_vector<double>();
  std::vector<double> ref(v.size()), lref(v.size());
  for (int i = 0; i < 7; ++i) {
    double m = -1e300, s = 0;
    for (int j = 0; j < 13; ++j) m = std::max(m, v[i * 13 + j]);
    for (int j = 0; j < 13; ++j) s += std::exp(v[i * 13 + j] - m);
    for (int j = 0; j < 13; ++j) {
      ref[i * 13 + j] = std::exp(v[i * 13 + j] - m) / s;
      lref[i * 13 + j] = v[i * 13 + j] - m - std::log(s);
    }
  }
  EXPECT_LT(max_rel_diff(ops::softmax(x, 1), from_vector(ref, {7, 13})), 1e-6);
  EXPECT_LT(max_rel_diff(ops::log_softmax(x, -1), from_vector(lref, {7, 13})), 1e-6);
  // Along dim 0 equals the transpose of softmax along dim 1 of the transpose.
  EXPECT_LT(max_rel_diff(ops::softmax(x, 0), ops::transpose(ops::softmax(ops::transpose(x), 1))), 1e-6);
}

TEST(OpsForward, ReductionsMatchNaive) {
  Tensor x = rnd({5, 4097}, 4);
  const auto v = x.to_vector<double>();
  double total = 0;
  std::vector<double> rows(5, 0), cols(4097, 0), rmax(5, -1e300);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4097; ++j) {
      const double a = v[i * 4097 + j];
      total += a;
      rows[i] += a;
      cols[j] += a;
      rmax[i] = std::max(rmax[i], a);
    }
  EXPECT_NEAR(ops::sum(x).item(), total, 1e-3);
  EXPECT_NEAR(ops::mean(x).item(), total / v.size(), 1e-6);
  EXPECT_LT(max_rel_diff(ops::sum(x, 1), from_vector(rows, {5})), 1e-5);
  EXPECT_LT(max_rel_diff(ops::sum(x, 0), from_vector(cols, {4097})), 1e-6);
  EXPECT_EQ(max_rel_diff(ops::max(x, 1), from_vector(rmax, {5})), 0.0);
  EXPECT_EQ(ops::sum(x, 0, true).shape(), (Shape{1, 4097}));
  double sq = 0;
  for (double a : v) sq += a * a;
  EXPECT_NEAR(ops::norm(x).item(), std::sqrt(sq), 1e-3);
}

TEST(OpsForward, ArgmaxTakesTheFirstMaximum) {
  Tensor x = from_vector(std::vector<float>{1, 3, 3, 0, 5, 5}, {2, 3});
  EXPECT_EQ(ops::argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));
}

TEST(OpsForward, MatmulAndLinearMatchNaiveLoops) {
  for (auto [M, K, N] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 1, 1}, {3, 17, 5}, {127, 33, 65}}) {
    Tensor a = rnd({M, K}, 7), b = rnd({K, N}, 8), bias = rnd({N}, 9);
    std::vector<double> ref(M * N, 0), lin(M * N, 0);
    const auto av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = bias.to_vector<double>();
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        for (int64_t k = 0; k < K; ++k) ref[i * N + j] += av[i * K + k] * bv[k * N + j];
        lin[i * N + j] = ref[i * N + j] + cv[j];
      }
    EXPECT_LT(max_rel_diff(ops::matmul(a, b), from_vector(ref, {M, N})), 1e-5);
    EXPECT_LT(max_rel_diff(ops::matmul(ops::transpose(a), b, true, false), from_vector(ref, {M, N})), 1e-5);
    EXPECT_LT(max_rel_diff(ops::matmul(a, ops::transpose(b), false, true), from_vector(ref, {M, N})), 1e-5);
    // linear takes W as [out, in] = b^T
    EXPECT_LT(max_rel_diff(ops::linear(a, ops::transpose(b), bias), from_vector(lin, {M, N})), 1e-5);
  }
}

TEST(OpsForward, BmmIsOneMatmulPerBatchEntry) {
  Tensor a = rnd({3, 5, 7}, 1), b = rnd({3, 7, 2}, 2);
  Tensor c = ops::bmm(a, b);
  for (int64_t e = 0; e < 3; ++e) {
    Tensor ae = ops::reshape(ops::narrow(a, 0, e, 1), {5, 7}), be = ops::reshape(ops::narrow(b, 0, e, 1), {7, 2});
    EXPECT_LT(max_rel_diff(ops::reshape(ops::narrow(c, 0, e, 1), {5, 2}), ops::matmul(ae, be)), 1e-6);
  }
}

TEST(OpsForward, ShapeOpsMoveTheRightElements) {
  Tensor x = from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  EXPECT_EQ(ops::concat({x, x}, 1).to_vector<float>(), (std::vector<float>{0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5}));
  EXPECT_EQ(ops::concat({x, x}, 0).to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(ops::stack({x, x}, 0).shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(ops::stack({x, x}, 2).to_vector<float>(), (std::vector<float>{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5}));
  EXPECT_EQ(ops::narrow(x, 1, 1, 2).to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  EXPECT_EQ(ops::narrow(x, 0, 1, 1).to_vector<float>(), (std::vector<float>{3, 4, 5}));
  auto parts = ops::split(x, std::vector<int64_t>{2, 1}, 1);
  EXPECT_EQ(parts[1].to_vector<float>(), (std::vector<float>{2, 5}));
  EXPECT_EQ(ops::transpose(x).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(ops::reshape(x, {3, -1}).shape(), (Shape{3, 2}));
  EXPECT_EQ(ops::squeeze(ops::unsqueeze(x, 0), 0).shape(), (Shape{2, 3}));
  Tensor idx = from_vector(std::vector<int32_t>{1, 1, 0}, {3});
  EXPECT_EQ(ops::index_select(x, idx).to_vector<float>(), (std::vector<float>{3, 4, 5, 3, 4, 5, 0, 1, 2}));
  Tensor gidx = from_vector(std::vector<int64_t>{1, 0, 1}, {1, 3});
  EXPECT_EQ(ops::gather(x, gidx).to_vector<float>(), (std::vector<float>{3, 1, 5}));
  Tensor src = from_vector(std::vector<float>{1, 1, 1, 2, 2, 2}, {2, 3});
  EXPECT_EQ(ops::scatter_add(x, from_vector(std::vector<int64_t>{1, 1}, {2}), src).to_vector<float>(),
            (std::vector<float>{0, 1, 2, 6, 7, 8}));
}

TEST(OpsForward, EmbeddingLookupConcatenatesFeatureRows) {
  Tensor table = from_vector(std::vector<float>{0, 0, 1, 1, 2, 2, 3, 3}, {4, 2});
  Tensor ids = from_vector(std::vector<int32_t>{3, 0, 1, 2}, {2, 2});
  EXPECT_EQ(ops::embedding_lookup(table, ids).to_vector<float>(), (std::vector<float>{3, 3, 0, 0, 1, 1, 2, 2}));
}

TEST(OpsForward, LossesMatchTheirFormulas) {
  Tensor x = from_vector(std::vector<float>{-30, -1, 0, 2, 40}, {5});
  Tensor y = from_vector(std::vector<float>{0, 1, 1, 0, 1}, {5});
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  double ref = 0, refw = 0;
  for (int i = 0; i < 5; ++i) {
    // -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x), computed stably
    const double sp_neg = std::log1p(std::exp(-std::abs(xv[i]))) + std::max(-xv[i], 0.0);
    const double sp_pos = std::log1p(std::exp(-std::abs(xv[i]))) + std::max(xv[i], 0.0);
    ref += yv[i] * sp_neg + (1 - yv[i]) * sp_pos;
    refw += 3.0 * yv[i] * sp_neg + (1 - yv[i]) * sp_pos;
  }
  EXPECT_NEAR(ops::bce_with_logits(x, y).item(), ref / 5, 1e-6);
  EXPECT_NEAR(ops::bce_with_logits(x, y, {.pos_weight = 3.0}).item(), refw / 5, 1e-5);
  EXPECT_NEAR(ops::bce_with_logits(x, y, {.reduction = ops::Reduction::sum}).item(), ref, 1e-5);
  // On probabilities, with PyTorch's clamp of log at -100.
  Tensor p = from_vector(std::vector<float>{0.0f, 0.25f, 1.0f}, {3});
  Tensor t = from_vector(std::vector<float>{1, 1, 1}, {3});
  EXPECT_NEAR(ops::binary_cross_entropy(p, t).item(), (100.0 - std::log(0.25) + 0.0) / 3, 1e-4);
  Tensor a = from_vector(std::vector<float>{1, 2, 3}, {3}), b = from_vector(std::vector<float>{1, 0, 5}, {3});
  EXPECT_NEAR(ops::mse_loss(a, b).item(), (0 + 4 + 4) / 3.0, 1e-6);
}

TEST(Creation, FactoriesFillWhatTheySay) {
  EXPECT_EQ(arange(0, 5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(5, 0, -2).to_vector<int64_t>(), (std::vector<int64_t>{5, 3, 1}));
  EXPECT_EQ(full({2, 2}, 1.5).to_vector<float>(), (std::vector<float>(4, 1.5f)));
  EXPECT_EQ(zeros({3}, {.dtype = DType::i32}).to_vector<int32_t>(), (std::vector<int32_t>(3, 0)));
  EXPECT_EQ(ones({0, 4}).numel(), 0);
}

TEST(Rng, SameSeedSameNumbersAndSaneMoments) {
  Generator a(42), b(42);
  Tensor x = randn({100000}, {.dtype = DType::f64}, &a), y = randn({100000}, {.dtype = DType::f64}, &b);
  EXPECT_EQ(x.to_vector<double>(), y.to_vector<double>());
  const auto v = x.to_vector<double>();
  double m = 0, s = 0;
  for (double d : v) m += d;
  m /= v.size();
  for (double d : v) s += (d - m) * (d - m);
  s = std::sqrt(s / v.size());
  EXPECT_NEAR(m, 0.0, 0.02);
  EXPECT_NEAR(s, 1.0, 0.02);
  Tensor u = rand({100000}, {.dtype = DType::f64}, &a);
  const auto uv = u.to_vector<double>();
  double um = 0;
  for (double d : uv) {
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    um += d;
  }
  EXPECT_NEAR(um / uv.size(), 0.5, 0.01);
  Tensor bern = bernoulli({100000}, 0.2, {}, &a);
  EXPECT_NEAR(ops::mean(bern).item(), 0.2, 0.01);
  // randint is unbiased enough to hit every bucket evenly
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) counts[a.randint(7)]++;
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

TEST(Rng, StateRoundTripResumesTheSequence) {
  Generator g(9);
  g.normal();
  const auto st = g.state();
  const double n1 = g.normal(), u1 = g.uniform();
  Generator h(1);
  h.set_state(st);
  EXPECT_EQ(h.normal(), n1);
  EXPECT_EQ(h.uniform(), u1);
}

}  // namespace
}  // namespace rechub
