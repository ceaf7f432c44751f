// GPU benchmark of the CUDA backend (run by bench/gpu/run.sh on a machine with a GPU): achieved
// bandwidth of the embedding lookup / backward and of elementwise kernels against a measured
// device-to-device copy, and the expert-shaped GEMMs against the best cuBLAS rate measured on a
// large square GEMM. Prints one "name  value  unit  note" line per measurement.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/cuda.h"
#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/core/tensor.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/linear.h"
#include "rechub/nn/module.h"
#include "rechub/nn/optim.h"

using namespace rechub;

namespace {

// Median seconds per call of f over `reps` timed calls after warm-up, synchronising the stream.
template <class F>
double time_it(F f, int reps = 20) {
  for (int i = 0; i < 3; ++i) f();
  cuda::synchronize(0);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    cuda::synchronize(0);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor randn(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(shape_numel(s));
  for (float& x : v) x = d(rng);
  return from_vector(v, s, {.device = Device::cuda()});
}

void line(const char* name, double value, const char* unit, const char* note) {
  std::printf("%-44s %12.2f  %-8s %s\n", name, value, unit, note);
}

// The model of bench/gpu/torch_mmoe_gpu.py, built from rechub's layers: 26 embeddings of 100 000
// rows x 16, 13 dense values, 8 experts Linear(429, 256)-ReLU-Linear(256, 128)-ReLU (no BatchNorm,
// no dropout), per task a softmax gate Linear(429, 8) and a tower Linear(128, 64)-ReLU-Linear(64, 1),
// BCE with logits summed over 2 tasks, Adam(lr 1e-3). The experts run as one fused block
// (ops::experts_forward) and the gates through ops::gate_mix, as rechub's MMoE does.
class BenchMMoE : public nn::Module {
 public:
  static constexpr int64_t kSparse = 26, kVocab = 100'000, kDim = 16, kDense = 13, kExperts = 8, kTasks = 2;
  explicit BenchMMoE(bool sparse_embeddings) {
    std::vector<nn::EmbeddingSpec> specs;
    for (int64_t f = 0; f < kSparse; ++f) specs.push_back({"f" + std::to_string(f), kVocab, kDim, ""});
    emb_ = register_module("emb",
                           std::make_shared<nn::EmbeddingCollection>(
                               specs, nn::EmbeddingOptions{.init_std = 1.0, .seed = 1, .sparse = sparse_embeddings}));
    const int64_t in = kSparse * kDim + kDense;
    Generator g(7);
    auto experts = register_module("experts", std::make_shared<nn::Module>());
    layers_.resize(2);
    for (int64_t e = 0; e < kExperts; ++e) {
      auto ex = experts->register_module(std::to_string(e), std::make_shared<nn::Module>());
      auto l0 = ex->register_module("0", std::make_shared<nn::Linear>(in, 256, true, &g));
      auto l1 = ex->register_module("1", std::make_shared<nn::Linear>(256, 128, true, &g));
      layers_[0].weight.push_back(l0->weight());
      layers_[0].bias.push_back(l0->bias());
      layers_[1].weight.push_back(l1->weight());
      layers_[1].bias.push_back(l1->bias());
    }
    for (int64_t t = 0; t < kTasks; ++t) {
      gates_.push_back(
          register_module("gate" + std::to_string(t), std::make_shared<nn::Linear>(in, kExperts, true, &g)));
      t0_.push_back(
          register_module("tower" + std::to_string(t) + "_0", std::make_shared<nn::Linear>(128, 64, true, &g)));
      t1_.push_back(register_module("tower" + std::to_string(t) + "_1", std::make_shared<nn::Linear>(64, 1, true, &g)));
    }
  }
  std::vector<Tensor> losses(const Tensor& sparse_host, const Tensor& dense, const std::vector<Tensor>& labels) {
    const Tensor x = ops::concat({emb_->forward(sparse_host), dense}, 1);
    const Tensor ex = ops::experts_forward(x, layers_, {.activation = ops::Activation::relu, .training = true});
    std::vector<Tensor> out;
    for (int64_t t = 0; t < kTasks; ++t) {
      const Tensor mixed = ops::gate_mix(x, gates_[t]->weight(), gates_[t]->bias(), {ex}, 128).mixed;
      const Tensor logit = t1_[t]->forward(ops::relu(t0_[t]->forward(mixed)));
      out.push_back(ops::bce_with_logits(logit, labels[t]));
    }
    return out;
  }

 private:
  std::shared_ptr<nn::EmbeddingCollection> emb_;
  std::vector<ops::ExpertLayerParams> layers_;
  std::vector<std::shared_ptr<nn::Linear>> gates_, t0_, t1_;
};

// Samples/s of whole training steps (forward, both losses, backward, Adam) on cuda:0 with the
// inputs already on the device like the PyTorch script (sparse ids stay on the host: rechub's
// embedding validates and offsets them there, then uploads them through pinned memory).
void bench_mmoe_training() {
  BenchMMoE model(/*sparse_embeddings=*/true);
  model.to(Device::cuda(0));
  nn::Adam opt({{.params = model.parameters(), .lr = 1e-3}});
  for (int64_t B : {4096, 16384, 65536}) {
    std::mt19937_64 rng(static_cast<uint64_t>(B));
    std::uniform_int_distribution<int64_t> u(0, BenchMMoE::kVocab - 1);
    std::vector<int64_t> ids(B * BenchMMoE::kSparse);
    for (auto& x : ids) x = u(rng);
    const Tensor sparse = from_vector(ids, {B, BenchMMoE::kSparse});
    const Tensor dense = randn({B, BenchMMoE::kDense}, 21);
    std::vector<Tensor> labels;
    for (int t = 0; t < 2; ++t) {
      std::vector<float> y(B);
      for (auto& v : y) v = static_cast<float>(rng() & 1);
      labels.push_back(from_vector(y, {B, 1}, {.device = Device::cuda()}));
    }
    const double t = time_it(
        [&] {
          opt.zero_grad();
          const auto l = model.losses(sparse, dense, labels);
          backward(l[0] + l[1]);
          opt.step();
        },
        10);
    char name[96];
    std::snprintf(name, sizeof name, "mmoe_train_B%lld", static_cast<long long>(B));
    line(name, static_cast<double>(B) / t, "samples/s", "fp32, Adam; sparse embedding rows (torch: dense Adam)");
  }
}

}  // namespace

int main() {
  if (cuda::device_count() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 1;
  }
  std::printf("%-44s %12s  %-8s %s\n", "measurement", "value", "unit", "note");
  {
    NoGradGuard ng;
    // ---- bandwidth reference: device-to-device copy of 1 GiB ----
    const int64_t n = int64_t(1) << 28;  // 268M floats = 1 GiB
    Tensor a = randn({n / 1024, 1024}, 1), b = randn({n / 1024, 1024}, 2);
    Tensor c = empty({n / 1024, 1024}, {.device = Device::cuda()});
    const double t_copy = time_it([&] { c.copy_(a); });
    line("d2d_copy_1GiB", 2.0 * n * 4 / t_copy / 1e9, "GB/s", "reference (read + write)");
    const double t_add = time_it([&] { (void)ops::add(a, b); });
    line("add_same_shape_1GiB", 3.0 * n * 4 / t_add / 1e9, "GB/s", "vec4 path, 2 reads + 1 write");
    const double t_relu = time_it([&] { (void)ops::relu(a); });
    line("relu_1GiB", 2.0 * n * 4 / t_relu / 1e9, "GB/s", "");
    Tensor bias = randn({1024}, 3);
    const double t_badd = time_it([&] { (void)ops::add(a, bias); });
    line("add_row_broadcast_1GiB", 2.0 * n * 4 / t_badd / 1e9, "GB/s", "generic broadcast path");
    const double t_sum = time_it([&] { (void)ops::sum(a); });
    line("sum_all_1GiB", 1.0 * n * 4 / t_sum / 1e9, "GB/s", "");
  }

  // ---- embedding: 26 features, dim 16, batch 65536, a 10M-row arena ----
  {
    const int64_t B = 65536, F = 26, D = 16, V = 10'000'000;
    Tensor table = randn({V, D}, 4).requires_grad_(true);
    std::mt19937_64 rng(5);
    std::vector<int64_t> ids(B * F);
    std::uniform_int_distribution<int64_t> u(0, V - 1);
    for (auto& x : ids) x = u(rng);
    Tensor idt = from_vector(ids, {B, F}, {.dtype = DType::i64, .device = Device::cuda()});
    Tensor gout = randn({B, F * D}, 6);
    const double bytes = 2.0 * B * F * D * 4 + B * F * 8;
    double t_fwd;
    {
      NoGradGuard ng;
      t_fwd = time_it([&] { (void)ops::embedding_lookup(table, idt); });
    }
    line("embedding_lookup_B65536_F26_D16", bytes / t_fwd / 1e9, "GB/s", "incl. the id range check");
    const double t_fb = time_it([&] {
      Tensor out = ops::embedding_lookup(table, idt);
      (void)grad({out}, {table}, {gout});
    });
    line("embedding_backward_B65536_F26_D16", bytes / std::max(t_fb - t_fwd, 1e-9) / 1e9, "GB/s",
         "sort-based unique rows (fwd+bwd minus fwd)");
  }

  // ---- GEMMs: cuBLAS peak on a large square, then MMoE expert shapes ----
  {
    NoGradGuard ng;
    auto tflops = [](double m, double n, double k, double t) { return 2.0 * m * n * k / t / 1e12; };
    Tensor x = randn({8192, 8192}, 7), w = randn({8192, 8192}, 8);
    const double t_sq = time_it([&] { (void)ops::matmul(x, w); }, 10);
    const double peak = tflops(8192, 8192, 8192, t_sq);
    line("sgemm_8192_fp32", peak, "TFLOP/s", "peak reference (exact fp32)");
    cuda::set_allow_tf32(true);
    const double t_sq32 = time_it([&] { (void)ops::matmul(x, w); }, 10);
    cuda::set_allow_tf32(false);
    line("sgemm_8192_tf32", tflops(8192, 8192, 8192, t_sq32), "TFLOP/s", "set_allow_tf32(true)");
    for (int64_t B : {4096, 65536}) {
      const int64_t in = 512, E = 8, h1 = 256, h2 = 128;
      Tensor xb = randn({B, in}, 9), w1 = randn({E * h1, in}, 10), b1 = randn({E * h1}, 11);
      const double t1 = time_it([&] { (void)ops::linear(xb, w1, b1); });
      char name[96];
      std::snprintf(name, sizeof name, "experts_layer1_linear_B%lld_512x2048", static_cast<long long>(B));
      line(name, tflops(B, E * h1, in, t1) / peak * 100, "% peak", "one GEMM for 8 experts + bias");
      Tensor a2 = randn({E, B, h1}, 12), w2 = randn({E, h2, h1}, 13);
      const double t2 = time_it([&] { (void)ops::bmm(a2, w2, false, true); });
      std::snprintf(name, sizeof name, "experts_layer2_bmm_B%lld_8x256x128", static_cast<long long>(B));
      line(name, tflops(double(E) * B, h2, h1, t2) / peak * 100, "% peak", "strided batched");
    }
  }
  // ---- end-to-end MMoE training (the model of torch_mmoe_gpu.py) ----
  try {
    bench_mmoe_training();
  } catch (const std::exception& e) {
    std::printf("mmoe_train: failed: %s\n", e.what());
  }
  return 0;
}
