// Training-step throughput of the multi-task models on Ali-CCP-shaped synthetic data: forward,
// backward and Adam (lazy, row-sparse for the embedding arena), in samples/s, with peak memory.
// One configuration per run (so the peak RSS is that configuration's); bench/compare_torch.py runs
// it for every configuration next to PyTorch and prints the ratios.
//
//   OMP_NUM_THREADS=2 bench_models --model mmoe --batch 4096 --fused 1 --steps 20
//
// Prints one JSON line: model, batch, threads, fused, samples_per_s, ms_per_step, gflops (useful
// FLOP: 2 per multiply-add of every Linear/GEMM forward, twice that backward), isa (the instruction
// set the kernels dispatched to; RECHUB_CPU forces one), peak_gflops (the FMA peak of that set on this
// many threads, measured in this process after the steps; --peak-gflops G overrides it with G per
// thread), pct_peak (gflops / peak_gflops), cpu (the model name from /proc/cpuinfo), peak_rss_mb,
// allocator_peak_mb (cpu_allocator_stats().peak_bytes_in_use during the steps).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench/fma_peak.h"
#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/storage.h"
#include "rechub/kernels/cpu/isa.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/nn/optim.h"

using namespace rechub;

namespace {

struct Args {
  std::string model = "mmoe";
  int64_t batch = 4096;
  int steps = 20;
  int warmup = 3;
  bool fused = true;
  double peak_gflops = 0.0;  // per thread; 0: measure the dispatched set's FMA peak in this process
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_models: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    const std::string k = argv[i];
    if (k == "--model")
      a.model = next("--model");
    else if (k == "--batch")
      a.batch = std::stoll(next("--batch"));
    else if (k == "--steps")
      a.steps = std::stoi(next("--steps"));
    else if (k == "--warmup")
      a.warmup = std::stoi(next("--warmup"));
    else if (k == "--fused")
      a.fused = next("--fused") != "0";
    else if (k == "--peak-gflops")
      a.peak_gflops = std::stod(next("--peak-gflops"));
    else {
      std::fprintf(stderr,
                   "usage: bench_models [--model mmoe|ple|shared_bottom] [--batch N] [--steps N] [--warmup N] "
                   "[--fused 0|1] [--peak-gflops G]\n");
      std::exit(2);
    }
  }
  return a;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "unknown";
}

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// Multiply-adds per sample of one Linear chain in -> dims.
double chain_macs(int64_t in, const std::vector<int64_t>& dims) {
  double m = 0;
  for (int64_t d : dims) {
    m += static_cast<double>(in) * static_cast<double>(d);
    in = d;
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  // The data: 8 sparse fields, these vocabularies, dim 16, two binary tasks.
  data::AliCcpSynthConfig dc;
  dc.num_dense = 0;
  data::AliCcpSynth synth(dc);
  const data::Schema schema = synth.schema(16);
  models::Features f{.sparse = schema.sparse, .dense = {}};
  for (size_t i = 0; i < f.sparse.size(); ++i) f.sparse[i].vocab_size = dc.vocab_sizes[i];  // raw ids 0..vocab-1
  const int64_t in = 8 * 16;
  std::shared_ptr<models::MultiTaskModel> model;
  double macs = 0;  // forward multiply-adds per sample
  if (a.model == "mmoe") {
    model = std::make_shared<models::MMoE>(models::MMoEConfig{.features = f,
                                                              .expert_units = {256, 128},
                                                              .num_experts = 8,
                                                              .num_tasks = 2,
                                                              .tower_units = {64, 32},
                                                              .fused = a.fused});
    macs = 8 * chain_macs(in, {256, 128}) + 2 * (in * 8 + chain_macs(128, {64, 32, 1}));
  } else if (a.model == "ple") {
    model = std::make_shared<models::PLE>(models::PLEConfig{.features = f,
                                                            .expert_units = {256, 128},
                                                            .num_experts = 2,
                                                            .num_layers = 2,
                                                            .num_shared_experts = 2,
                                                            .num_tasks = 2,
                                                            .tower_units = {64, 32},
                                                            .fused = a.fused});
    macs = 6 * chain_macs(in, {256, 128}) + 6 * chain_macs(128, {256, 128}) + 2 * in * 4 + in * 6 + 2 * 128 * 4 +
           2 * chain_macs(128, {64, 32, 1});
  } else if (a.model == "shared_bottom") {
    model = std::make_shared<models::SharedBottom>(models::SharedBottomConfig{
        .features = f, .hidden_units = {256, 128}, .task_hidden_units = {64, 32}, .num_tasks = 2, .fused = a.fused});
    macs = chain_macs(in, {256, 128}) + 2 * chain_macs(128, {64, 32, 1});
  } else {
    std::fprintf(stderr, "bench_models: unknown --model '%s' (mmoe, ple, shared_bottom)\n", a.model.c_str());
    return 2;
  }
  model->train();
  nn::Adam opt({nn::ParamGroup{.params = model->parameters(), .lr = 1e-3}});

  // A few batches of synthetic rows, cycled.
  const int n_batches = 4;
  std::vector<Tensor> ids, labels;
  for (int b = 0; b < n_batches; ++b) {
    data::AliCcpRows r = synth.generate(b * a.batch, a.batch);
    ids.push_back(from_vector(r.ids, {a.batch, 8}));
    std::vector<float> l(2 * a.batch);
    for (int64_t i = 0; i < a.batch; ++i) {
      l[2 * i] = r.click[i];
      l[2 * i + 1] = r.purchase[i];
    }
    labels.push_back(from_vector(l, {a.batch, 2}));
  }
  auto step = [&](int i) {
    opt.zero_grad();
    const Tensor& x = ids[i % n_batches];
    models::ModelOutput out = model->forward(x, Tensor());
    std::vector<Tensor> losses = model->loss(out, labels[i % n_batches]);
    backward(losses[0] + losses[1]);
    opt.step();
  };
  for (int i = 0; i < a.warmup; ++i) step(i);
  cpu_allocator_reset_peak();
  rusage ru0{}, ru1{};
  getrusage(RUSAGE_SELF, &ru0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.steps; ++i) step(a.warmup + i);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  getrusage(RUSAGE_SELF, &ru1);
  // CPU time of the process (all threads): under load from other work, wall time stretches but
  // CPU time much less, so both are reported.
  const double cpu_sec =
      static_cast<double>(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
      1e-6 * static_cast<double>(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                                 ru0.ru_stime.tv_usec);
  const double sps = static_cast<double>(a.batch) * a.steps / sec;
  const double gflops = 3.0 * 2.0 * macs * sps / 1e9;  // forward + backward (dX and dW)
  const int threads = omp_get_max_threads();
  const kernels::cpu::Isa isa = kernels::cpu::active_isa();
  // Measured after the steps so that the FMA loop's heat does not slow the timed steps.
  const double peak = a.peak_gflops > 0.0 ? a.peak_gflops * threads : bench::fma_peak_gflops(isa, threads);
  std::printf(
      "{\"impl\": \"rechub\", \"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"fused\": %s, \"samples_per_s\": "
      "%.1f, \"ms_per_step\": %.2f, \"mflop_per_sample\": %.3f, \"gflops\": %.1f, \"isa\": \"%s\", "
      "\"peak_gflops\": %.1f, \"pct_peak\": %.1f, \"cpu\": \"%s\", "
      "\"peak_rss_mb\": %.1f, \"allocator_peak_mb\": %.1f, \"cpu_ms_per_step\": %.2f, \"minor_faults_per_step\": "
      "%.0f}\n",
      a.model.c_str(), static_cast<long long>(a.batch), threads, a.fused ? "true" : "false", sps, 1e3 * sec / a.steps,
      6.0 * macs / 1e6, gflops, kernels::cpu::isa_name(isa), peak, peak > 0.0 ? 100.0 * gflops / peak : 0.0,
      cpu_model().c_str(), peak_rss_mb(), static_cast<double>(cpu_allocator_stats().peak_bytes_in_use) / (1 << 20),
      1e3 * cpu_sec / a.steps, static_cast<double>(ru1.ru_minflt - ru0.ru_minflt) / a.steps);
  return 0;
}
