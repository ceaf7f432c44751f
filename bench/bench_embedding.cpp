// Embedding training step: lookup of 8 tables (vocabularies 100000 ... 4, dim 16, one arena) for a
// batch of 4096 Zipf-distributed ids, backward, Adam step. The row-sparse path (lazy Adam on the
// touched rows) against the dense path (the same tables with sparse = false: a dense gradient and
// a dense Adam pass over all 176,119 rows, what nn.Embedding + torch.optim.Adam do), and the
// pieces on their own. The full steps also run with every vocabulary 10x larger (`vocab_x:10`,
// 1.76M rows, one thread): the dense cost grows with the tables, the sparse one with the batch.
// BM_sparse_step_floor is the memory traffic alone of a sparse step, the bound on the ratio.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rechub/core/autograd.h"
#include "rechub/core/rng.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/optim.h"

namespace {
using namespace rechub;

constexpr int64_t kBatch = 4096, kDim = 16, kBatches = 8;
const std::vector<int64_t> kVocabs = {100000, 50000, 20000, 5000, 1000, 100, 10, 4};

std::vector<nn::EmbeddingSpec> specs(int64_t scale) {
  std::vector<nn::EmbeddingSpec> s;
  for (size_t i = 0; i < kVocabs.size(); ++i) {
    std::string name = "f";  // (not "f" + to_string: GCC 12 reports a false -Wrestrict there)
    name += std::to_string(i);
    s.push_back({name, kVocabs[i] * scale, kDim});
  }
  return s;
}

// Zipf-like ids, P(k) ~ 1 / (k + 1): k = floor((V + 1)^u) - 1 for u uniform in [0, 1).
std::vector<Tensor> zipf_batches(Generator& g, int64_t scale) {
  std::vector<Tensor> out;
  for (int64_t b = 0; b < kBatches; ++b) {
    std::vector<int64_t> ids(kBatch * kVocabs.size());
    for (int64_t r = 0; r < kBatch; ++r)
      for (size_t f = 0; f < kVocabs.size(); ++f) {
        const int64_t vocab = kVocabs[f] * scale;
        const double v = static_cast<double>(vocab);
        ids[r * kVocabs.size() + f] =
            std::min<int64_t>(vocab - 1, static_cast<int64_t>(std::exp(g.uniform() * std::log(v + 1.0))) - 1);
      }
    out.push_back(from_vector(ids, {kBatch, static_cast<int64_t>(kVocabs.size())}));
  }
  return out;
}

struct Setup {
  nn::EmbeddingCollection emb;
  nn::Adam opt;
  std::vector<Tensor> batches;
  Tensor gy;
  explicit Setup(bool sparse, int64_t scale = 1)
      : emb(specs(scale), {.init_std = 1e-2, .seed = 1, .sparse = sparse}), opt({{emb.parameters(), 1e-3}}) {
    Generator g(2);
    batches = zipf_batches(g, scale);
    gy = randn({kBatch, emb.output_dim()}, {}, &g);
  }
};

void train_step(benchmark::State& st, bool sparse) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Setup s(sparse, st.range(1));
  int64_t i = 0, rows = 0;
  auto step = [&] {
    s.opt.zero_grad();
    Tensor out = s.emb.forward(s.batches[i++ % kBatches]);
    backward(out, s.gy);
    if (sparse) rows += s.emb.arenas()[0].grad().sparse_indices().numel();
    s.opt.step();
  };
  // Two untimed steps: the first creates the Adam moments (for the 10x tables, 2 x 113 MB of
  // fresh pages), which is not what a training step costs.
  step();
  step();
  i = rows = 0;
  for (auto _ : st) step();
  st.counters["examples/s"] = benchmark::Counter(double(kBatch) * st.iterations(), benchmark::Counter::kIsRate);
  if (sparse) st.counters["rows/step"] = double(rows) / st.iterations();
}

void BM_step_sparse(benchmark::State& st) { train_step(st, true); }
void BM_step_dense(benchmark::State& st) { train_step(st, false); }

void BM_lookup_only(benchmark::State& st) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Setup s(true);
  NoGradGuard ng;
  int64_t i = 0;
  for (auto _ : st) benchmark::DoNotOptimize(s.emb.forward(s.batches[i++ % kBatches]).raw_data());
}

// Lookup + backward (the row-sparse gradient), no optimizer step.
void BM_lookup_backward(benchmark::State& st) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Setup s(true);
  int64_t i = 0;
  for (auto _ : st) {
    s.opt.zero_grad();
    backward(s.emb.forward(s.batches[i++ % kBatches]), s.gy);
  }
}

// The optimizer step alone, on a gradient computed once.
void adam_only(benchmark::State& st, bool sparse) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Setup s(sparse);
  backward(s.emb.forward(s.batches[0]), s.gy);
  s.opt.step();  // untimed: creates the moments
  for (auto _ : st) s.opt.step();
}
void BM_adam_only_sparse(benchmark::State& st) { adam_only(st, true); }
void BM_adam_only_dense(benchmark::State& st) { adam_only(st, false); }

// Row-sparse SGD with momentum and Adagrad steps alone (Adagrad is the usual optimizer for
// embedding tables in DLRM-style training), on the same gradient.
template <class Opt, class Options>
void sparse_only(benchmark::State& st, Options o) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Setup s(true);
  Opt opt({{s.emb.parameters(), 1e-2}}, o);
  backward(s.emb.forward(s.batches[0]), s.gy);
  opt.step();  // untimed: creates the state
  for (auto _ : st) opt.step();
}
void BM_adagrad_only_sparse(benchmark::State& st) { sparse_only<nn::Adagrad>(st, nn::AdagradOptions{}); }
void BM_sgd_momentum_only_sparse(benchmark::State& st) { sparse_only<nn::SGD>(st, nn::SGDOptions{.momentum = 0.9}); }

// The floor of the sparse step on this machine: only the memory traffic no implementation of it
// can avoid, with all bookkeeping precomputed. Per step: gather the 32,768 looked-up rows into the
// 2 MB output (the lookup itself), read the 2 MB upstream gradient and store each row at its
// unique row's rank (a plain store: no zeroing, no accumulation), then one read-modify-write of
// each touched row's weight, first and second moment (no Adam arithmetic). The dense step divided
// by this is the largest dense/sparse ratio any sparse step can reach here.
void BM_sparse_step_floor(benchmark::State& st) {
  Setup s(true);
  Tensor arena = s.emb.arenas()[0];  // a handle on the same rows
  float* table = arena.data<float>();
  const int64_t rows = arena.size(0);
  std::vector<float> m(rows * kDim, 0.f), v(rows * kDim, 0.f);
  std::vector<int64_t> offset;  // each feature's first arena row
  for (const auto& spec : specs(1)) offset.push_back(s.emb.slot(spec.name).offset);
  struct Batch {
    std::vector<int32_t> ids, rank;
    std::vector<int64_t> uniq;
  };
  std::vector<Batch> bs;
  for (const Tensor& b : s.batches) {
    Batch x;
    const int64_t* raw = b.data<int64_t>();
    for (int64_t i = 0; i < b.numel(); ++i)
      x.ids.push_back(static_cast<int32_t>(offset[static_cast<size_t>(i) % offset.size()] + raw[i]));
    x.uniq.assign(x.ids.begin(), x.ids.end());
    std::sort(x.uniq.begin(), x.uniq.end());
    x.uniq.erase(std::unique(x.uniq.begin(), x.uniq.end()), x.uniq.end());
    for (int32_t id : x.ids)
      x.rank.push_back(static_cast<int32_t>(std::lower_bound(x.uniq.begin(), x.uniq.end(), id) - x.uniq.begin()));
    bs.push_back(std::move(x));
  }
  std::vector<float> out(kBatch * kVocabs.size() * kDim), acc(kBatch * kVocabs.size() * kDim);
  const float* gy = s.gy.data<float>();
  int64_t it = 0;
  for (auto _ : st) {
    const Batch& b = bs[it++ % kBatches];
    const int64_t n = static_cast<int64_t>(b.ids.size());
    for (int64_t i = 0; i < n; ++i) {
      if (i + 16 < n) __builtin_prefetch(table + int64_t{b.ids[i + 16]} * kDim);
      std::memcpy(&out[i * kDim], table + int64_t{b.ids[i]} * kDim, kDim * sizeof(float));
    }
    benchmark::ClobberMemory();
    for (int64_t i = 0; i < n; ++i) std::memcpy(&acc[int64_t{b.rank[i]} * kDim], gy + i * kDim, kDim * sizeof(float));
    benchmark::ClobberMemory();
    const int64_t u = static_cast<int64_t>(b.uniq.size());
    for (int64_t k = 0; k < u; ++k) {
      if (k + 8 < u) {
        const int64_t ahead = b.uniq[k + 8] * kDim;
        __builtin_prefetch(table + ahead, 1);
        __builtin_prefetch(&m[ahead], 1);
        __builtin_prefetch(&v[ahead], 1);
      }
      const int64_t r = b.uniq[k] * kDim;
      const float* gk = &acc[k * kDim];
#pragma omp simd
      for (int64_t j = 0; j < kDim; ++j) {
        table[r + j] -= 1e-9f * gk[j];
        m[r + j] += gk[j];
        v[r + j] += gk[j] * gk[j];
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(m.data());
    benchmark::DoNotOptimize(v.data());
  }
}

#define ARGS ->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond)
#define STEP_ARGS                        \
  ->Args({1, 1})                         \
      ->Args({2, 1})                     \
      ->Args({1, 10})                    \
      ->ArgNames({"threads", "vocab_x"}) \
      ->UseRealTime()                    \
      ->Unit(benchmark::kMillisecond)
BENCHMARK(BM_step_sparse) STEP_ARGS;
BENCHMARK(BM_step_dense) STEP_ARGS;
BENCHMARK(BM_lookup_only) ARGS;
BENCHMARK(BM_lookup_backward) ARGS;
BENCHMARK(BM_adam_only_sparse) ARGS;
BENCHMARK(BM_adam_only_dense) ARGS;
BENCHMARK(BM_adagrad_only_sparse) ARGS;
BENCHMARK(BM_sgd_momentum_only_sparse) ARGS;
BENCHMARK(BM_sparse_step_floor)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
