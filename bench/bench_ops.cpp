// Elementwise and row-wise ops at MMoE-like activation sizes, reported as GB/s of the bytes each
// op must move (inputs read once, output written once). The GEMMs live in bench_gemm.
#include <benchmark/benchmark.h>
#include <omp.h>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"

namespace {
using namespace rechub;

void set_threads(benchmark::State& st) { omp_set_num_threads(static_cast<int>(st.range(1))); }

template <class F>
void run(benchmark::State& st, int inputs, F f) {
  set_threads(st);
  const int64_t rows = st.range(0), cols = 256;
  Generator g(1);
  Tensor a = randn({rows, cols}, {}, &g), b = randn({rows, cols}, {}, &g);
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(f(a, b).raw_data());
  const double bytes = double(rows * cols) * 4 * (inputs + 1);
  st.counters["GB/s"] =
      benchmark::Counter(bytes * st.iterations(), benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void BM_add(benchmark::State& st) {
  run(st, 2, [](const Tensor& a, const Tensor& b) { return a + b; });
}
void BM_mul(benchmark::State& st) {
  run(st, 2, [](const Tensor& a, const Tensor& b) { return a * b; });
}
void BM_add_row_bias(benchmark::State& st) {
  Tensor bias = randn({256});
  run(st, 1, [&](const Tensor& a, const Tensor&) { return a + bias; });
}
void BM_relu(benchmark::State& st) {
  run(st, 1, [](const Tensor& a, const Tensor&) { return ops::relu(a); });
}
void BM_sigmoid(benchmark::State& st) {
  run(st, 1, [](const Tensor& a, const Tensor&) { return ops::sigmoid(a); });
}
void BM_softmax_rows(benchmark::State& st) {
  run(st, 1, [](const Tensor& a, const Tensor&) { return ops::softmax(a, 1); });
}
void BM_sum_columns(benchmark::State& st) {
  run(st, 1, [](const Tensor& a, const Tensor&) { return ops::sum(a, 0); });
}

#define ARGS ->ArgsProduct({{1024, 4096, 8192}, {1, 2}})->ArgNames({"rows", "threads"})->UseRealTime()
BENCHMARK(BM_add) ARGS;
BENCHMARK(BM_mul) ARGS;
BENCHMARK(BM_add_row_bias) ARGS;
BENCHMARK(BM_relu) ARGS;
BENCHMARK(BM_sigmoid) ARGS;
BENCHMARK(BM_softmax_rows) ARGS;
BENCHMARK(BM_sum_columns) ARGS;

}  // namespace

BENCHMARK_MAIN();
