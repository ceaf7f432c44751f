// Data pipeline throughput: CSV parsing (rechub vs pandas.read_csv on the same file), binary cache
// loading, and DataLoader batches per second at batch 4096.
//
//   bench_data                         # ~1 GB Ali-CCP-shaped CSV, generated once into /tmp
//   RECHUB_BENCH_CSV_MB=64 bench_data  # a smaller file for a quick run
//
// Environment: RECHUB_BENCH_CSV_MB (file size, default 1024), RECHUB_BENCH_DIR (default /tmp),
// RECHUB_PYTHON (default /usr/bin/python3; the pandas run is skipped when it cannot run),
// RECHUB_PANDAS_SCRIPT (default: pandas_read_csv.py next to this source file).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rechub/core/error.h"
#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/synth/synthetic.h"

namespace rd = rechub::data;
namespace fs = std::filesystem;

namespace {

std::string env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct BenchData {
  std::string csv;
  uint64_t bytes = 0;
  rd::Schema schema;
  std::string cache_dir;
  // Figures kept for the summary.
  double ours_2t = 0, ours_1t = 0, pandas = 0;              // wall seconds
  double ours_2t_cpu = 0, ours_1t_cpu = 0, pandas_cpu = 0;  // CPU seconds (all threads)
  int64_t rows = 0;
};

BenchData& data() {
  static BenchData d = [] {
    BenchData b;
    const int64_t mb = std::stoll(env("RECHUB_BENCH_CSV_MB", "1024"));
    const std::string dir = env("RECHUB_BENCH_DIR", "/tmp");
    const rd::AliCcpSynthConfig cfg{.seed = 2024};
    const rd::AliCcpSynth gen(cfg);
    b.schema = gen.schema();
    b.csv = dir + "/rechub_bench_ali_ccp_" + std::to_string(mb) + "MB.csv";
    b.cache_dir = dir + "/rechub_bench_cache";
    fs::create_directories(dir);
    if (!fs::exists(b.csv)) {
      // About 54 bytes per row with the default 8 sparse and 4 dense fields.
      const int64_t rows = mb * (int64_t(1) << 20) / 54;
      std::fprintf(stderr, "bench_data: writing %lld rows to %s ...\n", static_cast<long long>(rows), b.csv.c_str());
      gen.write_csv(b.csv, 0, rows);
    }
    b.bytes = fs::file_size(b.csv);
    return b;
  }();
  return d;
}

void BM_ParseCsv(benchmark::State& state) {
  BenchData& d = data();
  const int threads = static_cast<int>(state.range(0));
  int64_t rows = 0;
  double seconds = 0, cpu = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = process_cpu_seconds();
    const rd::ColumnTable t = rd::read_csv(d.csv, d.schema, {.threads = threads});
    cpu += process_cpu_seconds() - c0;
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows = t.rows();
    benchmark::DoNotOptimize(t.code(rows - 1, 0));
  }
  d.rows = rows;
  const double n = static_cast<double>(state.iterations());
  (threads == 1 ? d.ours_1t : d.ours_2t) = seconds / n;
  (threads == 1 ? d.ours_1t_cpu : d.ours_2t_cpu) = cpu / n;
  state.SetBytesProcessed(static_cast<int64_t>(d.bytes) * state.iterations());
  state.SetItemsProcessed(rows * state.iterations());
  state.counters["rows"] = static_cast<double>(rows);
}
BENCHMARK(BM_ParseCsv)
    ->Arg(2)
    ->Arg(1)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

// pandas.read_csv on the same file, timed inside Python (interpreter start-up excluded).
void BM_PandasReadCsv(benchmark::State& state) {
  BenchData& d = data();
  const std::string py = env("RECHUB_PYTHON", "/usr/bin/python3");
  const std::string script =
      env("RECHUB_PANDAS_SCRIPT", (fs::path(__FILE__).parent_path() / "pandas_read_csv.py").string());
  if (!fs::exists(script) || !fs::exists(py)) {
    state.SkipWithError(("cannot run " + py + " " + script).c_str());
    return;
  }
  for (auto _ : state) {
    const std::string cmd = py + " " + script + " '" + d.csv + "'";
    FILE* p = ::popen(cmd.c_str(), "r");
    double secs = -1, cpu = -1;
    long long rows = 0;
    if (p) {
      char line[1024] = {0};
      if (std::fgets(line, sizeof line, p))
        std::sscanf(line, "{\"seconds\": %lf, \"rows\": %lld, \"cpu_seconds\": %lf", &secs, &rows, &cpu);
      ::pclose(p);
    }
    d.pandas_cpu = cpu;
    if (secs <= 0) {
      state.SkipWithError("the pandas script failed (is python3-pandas installed?)");
      return;
    }
    state.SetIterationTime(secs);
    d.pandas = secs;
    state.counters["rows"] = static_cast<double>(rows);
  }
  state.SetBytesProcessed(static_cast<int64_t>(d.bytes) * state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(state.counters["rows"]) * state.iterations());
}
BENCHMARK(BM_PandasReadCsv)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// Opening the binary cache: mmap, checksum over the whole file (verify) or not.
void BM_CacheLoad(benchmark::State& state) {
  BenchData& d = data();
  const bool verify = state.range(0) != 0;
  const rd::CacheOptions co{.dir = d.cache_dir, .verify_checksum = verify};
  const rd::ColumnTable first = rd::load_csv(d.csv, d.schema, {}, co);  // builds the cache once
  const uint64_t cache_bytes = fs::file_size(first.report().cache_path);
  for (auto _ : state) {
    const rd::ColumnTable t = rd::load_csv(d.csv, d.schema, {}, co);
    if (t.report().cache != rd::CacheStatus::loaded) state.SkipWithError("the cache was not used");
    benchmark::DoNotOptimize(t.code(t.rows() - 1, 0));
  }
  state.SetBytesProcessed(static_cast<int64_t>(cache_bytes) * state.iterations());
  state.SetItemsProcessed(first.rows() * state.iterations());
  state.counters["cache_MB"] = static_cast<double>(cache_bytes) / (1 << 20);
}
BENCHMARK(BM_CacheLoad)->Arg(1)->Arg(0)->Iterations(5)->Unit(benchmark::kMillisecond)->UseRealTime();

struct LoaderFixture {
  std::shared_ptr<const rd::Dataset> dataset;
  std::shared_ptr<const rd::BatchSource> mapped;
};

LoaderFixture& loader_data() {
  static LoaderFixture f = [] {
    BenchData& d = data();
    auto table = std::make_shared<const rd::ColumnTable>(rd::load_csv(d.csv, d.schema, {}, {.dir = d.cache_dir}));
    auto prep = std::make_shared<rd::Preprocessor>(d.schema,
                                                   rd::PreprocessOptions{.normalization = rd::Normalization::min_max});
    prep->fit(*table);
    LoaderFixture x;
    x.dataset = std::make_shared<const rd::Dataset>(prep->transform(*table));
    x.mapped = prep->view(table);
    return x;
  }();
  return f;
}

// Batches of 4096 shuffled rows, consumed as fast as the loader makes them.
void BM_LoaderBatches(benchmark::State& state) {
  LoaderFixture& f = loader_data();
  const bool mapped = state.range(0) != 0;
  rd::DataLoader loader(mapped ? f.mapped : f.dataset, {.batch_size = 4096, .shuffle = true, .seed = 1, .prefetch = 4});
  // The first batch waits for the epoch's permutation (later epochs get theirs computed ahead).
  const auto t0 = std::chrono::steady_clock::now();
  loader.next();
  state.counters["first_batch_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int64_t batches = 0, epoch = 0;
  for (auto _ : state) {
    auto b = loader.next();
    if (!b) {
      loader.set_epoch(++epoch);
      b = loader.next();
    }
    benchmark::DoNotOptimize(b->sparse.raw_data());
    ++batches;
  }
  state.SetItemsProcessed(batches);  // items = batches: items_per_second is batches/s
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(batches) * 4096, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_LoaderBatches)->Arg(0)->Arg(1)->MinTime(3.0)->Unit(benchmark::kMillisecond)->UseRealTime();

// Builds a fresh cache of the CSV in a child process and returns its peak resident memory (MiB,
// the child's own VmHWM: a parent's high-water mark would leak into wait4's ru_maxrss through
// exec) and wall time: the streaming parse keeps memory near the window size, not the file size.
std::pair<double, double> cache_build_footprint(const BenchData& d) {
  const std::string dir = d.cache_dir + "_probe";
  fs::remove_all(dir);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string cmd = "'" + self + "' --rss-probe '" + d.csv + "' '" + dir + "'";
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, -1};
  double kib = -1;
  if (std::fscanf(p, "%lf", &kib) != 1) kib = -1;
  const int rc = ::pclose(p);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fs::remove_all(dir);
  if (rc != 0 || kib <= 0) return {-1, -1};
  return {kib / 1024.0, secs};
}

double peak_rss_kib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  double kib = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %lf kB", &kib) == 1) break;
  std::fclose(f);
  return kib;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--rss-probe") {  // the child of cache_build_footprint
    const rd::AliCcpSynth gen({.seed = 2024});
    const rd::ColumnTable t = rd::load_csv(argv[2], gen.schema(), {}, {.dir = argv[3]});
    std::printf("%.0f\n", peak_rss_kib());
    return t.report().cache == rd::CacheStatus::built ? 0 : 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    data();
  } catch (const rechub::Error& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  const BenchData& d = data();
  const double mb = static_cast<double>(d.bytes) / (1 << 20);
  std::printf("\nsummary: %s, %.0f MB, %lld rows\n", d.csv.c_str(), mb, static_cast<long long>(d.rows));
  auto line = [&](const char* what, double wall, double cpu) {
    if (wall > 0)
      std::printf("  %-28s %6.2f s wall = %5.0f MB/s, %6.2f s CPU = %5.0f MB/s per CPU-second\n", what, wall, mb / wall,
                  cpu, cpu > 0 ? mb / cpu : 0.0);
  };
  line("rechub read_csv, 2 threads:", d.ours_2t, d.ours_2t_cpu);
  line("rechub read_csv, 1 thread:", d.ours_1t, d.ours_1t_cpu);
  line("pandas.read_csv:", d.pandas, d.pandas_cpu);
  if (d.pandas > 0 && d.ours_2t > 0)
    std::printf("  speed-up over pandas: %.1fx wall (2 threads), %.1fx wall (1 thread), %.1fx in CPU time\n",
                d.pandas / d.ours_2t, d.pandas / d.ours_1t, d.pandas_cpu / d.ours_1t_cpu);
  const auto [rss, secs] = cache_build_footprint(d);
  if (rss > 0)
    std::printf("  cache build (parse + write, separate process): %.2f s, peak RSS %.0f MiB for a %.0f MiB file\n",
                secs, rss, mb);
  benchmark::Shutdown();
  return 0;
}
