// fp32 GEMM benchmarks: the machine's FMA peak for AVX-512 and AVX2, then rechub sgemm (the dispatched
// set; RECHUB_CPU=avx2|avx512|generic forces one), Eigen (sgemm_eigen) and OpenBLAS cblas_sgemm (when
// built with RECHUB_HAVE_OPENBLAS) at the MMoE layer shapes, on 1 and 2 threads. Each GEMM benchmark
// reports GFLOPS and pct_peak (percent of the FMA peak of the dispatched set, measured in the same run
// with the same thread count).
//
//   bench_gemm                                   # everything (OpenBLAS core as selected by OPENBLAS_CORETYPE)
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bench_gemm   # OpenBLAS "as installed"
//   OPENBLAS_CORETYPE=SkylakeX bench_gemm --benchmark_filter='peak|openblas'
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/fma_peak.h"
#include "rechub/kernels/cpu/gemm.h"

#ifdef RECHUB_HAVE_OPENBLAS
#include <cblas.h>
extern "C" {
void openblas_set_num_threads(int num_threads);
char* openblas_get_corename(void);
}
#endif

namespace {

// ---- FMA peak ---------------------------------------------------------------------------------------
using rechub::kernels::cpu::Isa;

// Peak GFLOP/s of the dispatched set on `threads` threads, measured once per run and cached.
double peak_gflops(int threads) {
  static double cache[8] = {};
  if (threads < 1 || threads > 7) return 0.0;
  if (cache[threads] == 0.0)
    cache[threads] = rechub::bench::fma_peak_gflops(rechub::kernels::cpu::active_isa(), threads);
  return cache[threads];
}

// GFLOPS: median over iterations; GFLOPS_best: the fastest iteration; peak_used_for_pct: what the GEMM
// benchmarks' pct_peak divides by (the peak of the dispatched set, best of five longer runs).
void BM_FmaPeak(benchmark::State& state, Isa isa) {
  const int threads = static_cast<int>(state.range(0));
  if (!rechub::kernels::cpu::isa_supported(isa)) {
    state.SkipWithError((std::string("this CPU has no ") + rechub::kernels::cpu::isa_name(isa)).c_str());
    return;
  }
  std::vector<double> rates;
  for (auto _ : state) rates.push_back(rechub::bench::fma_gflops(isa, threads, rechub::bench::kFmaPeakInner));
  if (rates.empty()) return;
  std::sort(rates.begin(), rates.end());
  const double median = rates[rates.size() / 2];
  state.counters["GFLOPS"] = median;
  state.counters["GFLOPS_per_thread"] = median / threads;
  state.counters["GFLOPS_best"] = rates.back();
  if (isa == rechub::kernels::cpu::active_isa()) state.counters["peak_used_for_pct"] = peak_gflops(threads);
}
BENCHMARK_CAPTURE(BM_FmaPeak, avx512, Isa::avx512)
    ->Name("peak/fma_avx512")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->MinTime(0.5);
BENCHMARK_CAPTURE(BM_FmaPeak, avx2, Isa::avx2)
    ->Name("peak/fma_avx2")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->MinTime(0.5);

// ---- GEMM ------------------------------------------------------------------------------------------
struct Shape {
  const char* name;
  bool trans_a, trans_b;
  // Dimensions as functions of the batch size: M, N, K.
  int64_t m_fixed, n, k_fixed;  // m_fixed/k_fixed == 0 means "the batch"
};

// MMoE expert layers 128 -> 256 -> 128 at batch M.
constexpr Shape kShapes[] = {
    {"fwd_Mx128x256", false, false, 0, 256, 128},  // Y1 = X[M,128] W1[128,256]
    {"fwd_Mx256x128", false, false, 0, 128, 256},  // Y2 = H[M,256] W2[256,128]
    {"dX_Mx256x128T", false, true, 0, 128, 256},   // dX1 = dY1[M,256] W1[128,256]^T
    {"dX_Mx128x256T", false, true, 0, 256, 128},   // dX2 = dY2[M,128] W2[256,128]^T
    {"dW_128xMx256", true, false, 128, 256, 0},    // dW1 = X[M,128]^T dY1[M,256]
    {"dW_256xMx128", true, false, 256, 128, 0},    // dW2 = H[M,256]^T dY2[M,128]
};
constexpr int64_t kBatches[] = {1024, 4096, 8192};
constexpr int kThreads[] = {1, 2};

enum class Impl { kRechub, kEigen, kOpenBlas };

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::kRechub:
      return "rechub";
    case Impl::kEigen:
      return "eigen";
    case Impl::kOpenBlas:
      return "openblas";
  }
  return "?";
}

struct Problem {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  std::vector<float> a, b, c;
};

Problem make_problem(const Shape& s, int64_t batch) {
  Problem p;
  p.ta = s.trans_a;
  p.tb = s.trans_b;
  p.M = s.m_fixed ? s.m_fixed : batch;
  p.N = s.n;
  p.K = s.k_fixed ? s.k_fixed : batch;
  p.lda = p.ta ? p.M : p.K;
  p.ldb = p.tb ? p.K : p.N;
  p.ldc = p.N;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  p.a.resize(static_cast<size_t>(p.M * p.K));
  p.b.resize(static_cast<size_t>(p.K * p.N));
  p.c.assign(static_cast<size_t>(p.M * p.N), 0.0f);
  for (float& v : p.a) v = dist(rng);
  for (float& v : p.b) v = dist(rng);
  return p;
}

void run_once(Impl impl, Problem& p) {
  switch (impl) {
    case Impl::kRechub:
      rechub::kernels::cpu::sgemm(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.a.data(), p.lda, p.b.data(), p.ldb, 0.0f,
                                  p.c.data(), p.ldc);
      break;
    case Impl::kEigen:
      rechub::kernels::cpu::sgemm_eigen(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.a.data(), p.lda, p.b.data(), p.ldb, 0.0f,
                                        p.c.data(), p.ldc);
      break;
    case Impl::kOpenBlas:
#ifdef RECHUB_HAVE_OPENBLAS
      cblas_sgemm(CblasRowMajor, p.ta ? CblasTrans : CblasNoTrans, p.tb ? CblasTrans : CblasNoTrans,
                  static_cast<int>(p.M), static_cast<int>(p.N), static_cast<int>(p.K), 1.0f, p.a.data(),
                  static_cast<int>(p.lda), p.b.data(), static_cast<int>(p.ldb), 0.0f, p.c.data(),
                  static_cast<int>(p.ldc));
#endif
      break;
  }
}

// Thread count for one benchmark, restored afterwards. rechub: OpenMP max threads; Eigen: its own
// setNbThreads; OpenBLAS: openblas_set_num_threads (parked at 1 afterwards so its pool stops spinning).
class ThreadScope {
 public:
  ThreadScope(Impl impl, int threads) : impl_(impl), saved_omp_(omp_get_max_threads()) {
    switch (impl) {
      case Impl::kRechub:
        omp_set_num_threads(threads);
        break;
      case Impl::kEigen:
        Eigen::setNbThreads(threads);
        break;
      case Impl::kOpenBlas:
#ifdef RECHUB_HAVE_OPENBLAS
        openblas_set_num_threads(threads);
#endif
        break;
    }
  }
  ~ThreadScope() {
    omp_set_num_threads(saved_omp_);
    if (impl_ == Impl::kEigen) Eigen::setNbThreads(0);
#ifdef RECHUB_HAVE_OPENBLAS
    if (impl_ == Impl::kOpenBlas) openblas_set_num_threads(1);
#endif
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  Impl impl_;
  int saved_omp_;
};

// Counters: GFLOPS from the median call time (robust against the other tenants of a shared
// machine), GFLOPS_mean from the mean, pct_peak = GFLOPS / FMA peak on the same thread count.
void BM_Gemm(benchmark::State& state, Impl impl, Shape shape, int64_t batch, int threads) {
  Problem p = make_problem(shape, batch);
  ThreadScope scope(impl, threads);
  run_once(impl, p);  // warm caches and thread pools
  std::vector<double> times;
  times.reserve(1024);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    run_once(impl, p);
    benchmark::ClobberMemory();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (times.empty()) return;
  const double flops = 2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * static_cast<double>(p.K);
  double total = 0.0;
  for (double t : times) total += t;
  std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
  const double median = times[times.size() / 2];
  const double gflops = flops / median * 1e-9;
  state.counters["GFLOPS"] = gflops;
  state.counters["GFLOPS_mean"] = flops * static_cast<double>(times.size()) / total * 1e-9;
  const double peak = peak_gflops(threads);
  if (peak > 0.0) state.counters["pct_peak"] = 100.0 * gflops / peak;
}

// Registers every (implementation, shape, batch, threads) combination, grouped by implementation so
// that one library's idle worker threads do not overlap another's measurements.
[[maybe_unused]] const bool kRegistered = [] {
  std::vector<Impl> impls = {Impl::kRechub, Impl::kEigen};
#ifdef RECHUB_HAVE_OPENBLAS
  impls.push_back(Impl::kOpenBlas);
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
#endif
  benchmark::AddCustomContext("rechub_sgemm_kernel", rechub::kernels::cpu::sgemm_kernel_name());
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", coretype ? coretype : "(unset)");
  for (Impl impl : impls)
    for (int threads : kThreads)
      for (int64_t batch : kBatches)
        for (const Shape& shape : kShapes) {
          const std::string name = std::string("sgemm/") + impl_name(impl) + "/" + shape.name +
                                   "/M:" + std::to_string(batch) + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_Gemm, impl, shape, batch, threads)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond)
              ->MinTime(0.3);
        }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
