// Serving with Predictor: latency per call (p50, p99) at batch 1, 16, 256 and 4096, and throughput
// with 1 and 2 caller threads, for MMoE and PLE at bench_models' sizes (8 sparse fields, the
// Ali-CCP-shaped vocabularies, embeddings of 16; MMoE: 8 experts [256, 128]; PLE: 2 levels, 2
// task-specific and 2 shared experts [256, 128]; towers [64, 32]; two binary tasks).
//
// The models are saved as checkpoints and loaded with Predictor, which scores already-encoded
// batches (Predictor::predict(const data::Batch&): ids and dense values as the preprocessor makes
// them; reading and encoding raw strings is not timed). The checkpoints stay in --dir for
// bench/serving/run.sh, which exports them to ONNX and times ONNX Runtime and PyTorch on the same
// shapes.
//
//   OMP_NUM_THREADS=2 bench_serving --dir /tmp/rechub_serving [Google Benchmark flags]
//   bench_serving --dir /tmp/rechub_serving --rss mmoe     # RSS after load and after 10k calls (JSON)
//
// Latency: every call is timed on its own (manual time); p50_us / p99_us are over the calls of
// the run. Throughput: each caller thread scores batch-256 calls in a loop; with 2 callers each
// call uses one OpenMP thread (omp_set_num_threads(1) in the caller), with 1 caller the
// OpenMP default (all cores).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rechub/core/rng.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/nn/checkpoint.h"

using namespace rechub;

namespace {

std::string g_dir = "/tmp/rechub_serving";

models::Features seed_features() {
  data::AliCcpSynthConfig dc;
  dc.num_dense = 0;
  const data::Schema schema = data::AliCcpSynth(dc).schema(16);
  models::Features f{.sparse = schema.sparse, .dense = {}};
  for (size_t i = 0; i < f.sparse.size(); ++i) f.sparse[i].vocab_size = dc.vocab_sizes[i];
  return f;
}

std::shared_ptr<models::MultiTaskModel> build(const std::string& kind) {
  const models::Features f = seed_features();
  if (kind == "mmoe")
    return std::make_shared<models::MMoE>(models::MMoEConfig{
        .features = f, .expert_units = {256, 128}, .num_experts = 8, .num_tasks = 2, .tower_units = {64, 32}});
  return std::make_shared<models::PLE>(models::PLEConfig{.features = f,
                                                         .expert_units = {256, 128},
                                                         .num_experts = 2,
                                                         .num_layers = 2,
                                                         .num_shared_experts = 2,
                                                         .num_tasks = 2,
                                                         .tower_units = {64, 32}});
}

std::string checkpoint_path(const std::string& kind) { return g_dir + "/" + kind + ".safetensors"; }

void write_checkpoint(const std::string& kind) {
  auto m = build(kind);
  m->eval();
  nn::save_checkpoint(checkpoint_path(kind), *m, nullptr,
                      {{"model", {{"kind", m->kind()}, {"config", m->config_json()}}}});
}

const trainer::Predictor& predictor(const std::string& kind) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<trainer::Predictor>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  auto& p = loaded[kind];
  if (!p) p = std::make_unique<trainer::Predictor>(checkpoint_path(kind));
  return *p;
}

// Encoded rows as the CSV pipeline gives them: ids drawn from the synthetic Ali-CCP generator.
data::Batch batch_of(int64_t n, int64_t seed = 0) {
  data::AliCcpSynthConfig dc;
  dc.num_dense = 0;
  const data::AliCcpRows r = data::AliCcpSynth(dc).generate(seed * n, n);
  data::Batch b;
  b.sparse = from_vector(r.ids, {n, static_cast<int64_t>(dc.vocab_sizes.size())});
  b.dense = from_vector(std::vector<float>{}, {n, 0});
  return b;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

void BM_Latency(benchmark::State& state, const std::string& kind) {
  const trainer::Predictor& p = predictor(kind);
  const int64_t n = state.range(0);
  const data::Batch b = batch_of(n);
  for (int i = 0; i < 3; ++i) benchmark::DoNotOptimize(p.predict(b));  // warm the allocator's caches
  std::vector<double> us;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = p.predict(b);
    const auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(r.data());
    const double s = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(s);
    us.push_back(s * 1e6);
  }
  state.counters["p50_us"] = percentile(us, 0.50);
  state.counters["p99_us"] = percentile(us, 0.99);
  state.counters["rows_per_s"] =
      benchmark::Counter(static_cast<double>(n) * static_cast<double>(us.size()), benchmark::Counter::kIsRate);
  state.counters["omp_threads"] = omp_get_max_threads();
}

void BM_Throughput(benchmark::State& state, const std::string& kind) {
  const trainer::Predictor& p = predictor(kind);
  const int64_t n = state.range(0);
  // Callers share the cores instead of each running an OpenMP team over all of them. (Caller 0 is
  // the main thread, whose setting the later benchmarks would inherit: restored below.)
  const int omp_before = omp_get_max_threads();
  if (state.threads() > 1) omp_set_num_threads(1);
  const data::Batch b = batch_of(n, state.thread_index());
  benchmark::DoNotOptimize(p.predict(b));
  for (auto _ : state) benchmark::DoNotOptimize(p.predict(b));
  state.SetItemsProcessed(state.iterations() * n);  // summed over the caller threads: rows/s in all
  omp_set_num_threads(omp_before);
}

int64_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

// RSS before the model, after loading it, after 10k calls at batch 16 and after 20 more at batch
// 4096 (the working set of the largest batch); one process per model, so the figures are that
// model's.
int measure_rss(const std::string& kind) {
  const data::Batch b16 = batch_of(16), b4096 = batch_of(4096, 1);
  const int64_t before = rss_kib();
  const trainer::Predictor& p = predictor(kind);
  const int64_t loaded = rss_kib();
  for (int i = 0; i < 10000; ++i) benchmark::DoNotOptimize(p.predict(b16));
  const int64_t after16 = rss_kib();
  for (int i = 0; i < 20; ++i) benchmark::DoNotOptimize(p.predict(b4096));
  const int64_t after4096 = rss_kib();
  const int64_t params = p.model().parameter_count();
  std::printf(
      "{\"model\": \"%s\", \"params\": %lld, \"param_mib\": %.1f, \"rss_mib_before_load\": %.1f, "
      "\"rss_mib_after_load\": %.1f, \"rss_mib_after_10k_calls_batch16\": %.1f, "
      "\"rss_mib_after_20_more_calls_batch4096\": %.1f, \"omp_threads\": %d}\n",
      kind.c_str(), static_cast<long long>(params), static_cast<double>(params) * 4 / 1048576.0, before / 1024.0,
      loaded / 1024.0, after16 / 1024.0, after4096 / 1024.0, omp_get_max_threads());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string rss;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
      g_dir = argv[++i];
    else if (std::strcmp(argv[i], "--rss") == 0 && i + 1 < argc)
      rss = argv[++i];
    else
      rest.push_back(argv[i]);
  }
  std::filesystem::create_directories(g_dir);
  for (const char* kind : {"mmoe", "ple"})
    if (!std::filesystem::exists(checkpoint_path(kind))) write_checkpoint(kind);
  if (!rss.empty()) {
    if (rss != "mmoe" && rss != "ple") {
      std::fprintf(stderr, "bench_serving: --rss takes mmoe or ple, got '%s'\n", rss.c_str());
      return 2;
    }
    return measure_rss(rss);
  }
  for (const char* kind : {"mmoe", "ple"}) {
    const std::string k = kind;
    benchmark::RegisterBenchmark(("latency/" + k).c_str(), BM_Latency, k)
        ->Arg(1)
        ->Arg(16)
        ->Arg(256)
        ->Arg(4096)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("throughput/" + k).c_str(), BM_Throughput, k)
        ->Arg(256)
        ->Threads(1)
        ->Threads(2)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
