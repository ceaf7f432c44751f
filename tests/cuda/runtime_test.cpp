// The CUDA runtime (registration, errors, allocator, pinned buffers) and the fused optimizer
// kernels against PyTorch's update formulas written out in double on the host.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "rechub/core/ops.h"
#include "rechub/core/tensor.h"
#ifdef RECHUB_WITH_CUDA
#include "rechub/kernels/cuda/check.h"
#include "rechub/kernels/cuda/cublas_api.h"
#include "rechub/kernels/cuda/optim.h"
#include "rechub/kernels/cuda/runtime.h"
#endif

namespace rechub {
namespace {

#ifdef RECHUB_WITH_CUDA

#define RECHUB_SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount found none"

TEST(CudaRuntime, RegisteredWithCoreAtStartUp) {
  // Core's device count goes through the copier the CUDA library installs when it loads.
  EXPECT_EQ(cuda_device_count(), cuda::device_count());
  EXPECT_EQ(cuda_available(), cuda::device_count() > 0);
}

TEST(CudaRuntime, FailedCallNamesCallSiteCallAndError) {
  try {
    RECHUB_CUDA_CHECK(cudaMemcpy(nullptr, nullptr, 16, static_cast<cudaMemcpyKind>(99)));
    FAIL() << "an invalid cudaMemcpy did not throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("runtime_test.cpp:"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaMemcpy(nullptr, nullptr, 16"), std::string::npos) << m;
    EXPECT_NE(m.find(" failed: "), std::string::npos) << m;
  }
  try {
    RECHUB_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    FAIL() << "a failed cuBLAS status did not throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cuBLAS error at"), std::string::npos) << m;
    EXPECT_NE(m.find(cuda::cublas().status_string(CUBLAS_STATUS_INVALID_VALUE)), std::string::npos) << m;
  }
}

// cuBLAS is not linked but opened on first use: the library and every function rechub calls
// must resolve (this needs the toolkit's libcublas, not a GPU).
TEST(CudaRuntime, CublasLoadsOnFirstUse) {
  const cuda::CublasApi& api = cuda::cublas();
  EXPECT_NE(api.create, nullptr);
  EXPECT_NE(api.set_stream, nullptr);
  EXPECT_NE(api.set_math_mode, nullptr);
  EXPECT_NE(api.sgemm, nullptr);
  EXPECT_NE(api.sgemm_strided_batched, nullptr);
  ASSERT_NE(api.status_string, nullptr);
  const char* ok = api.status_string(CUBLAS_STATUS_SUCCESS);
  const char* bad = api.status_string(CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_TRUE(ok != nullptr && bad != nullptr);
  EXPECT_STRNE(ok, bad);             // a real cuBLAS call answered
  EXPECT_EQ(&api, &cuda::cublas());  // loaded once
}

TEST(CudaRuntime, MovingToAMissingDeviceIsAClearError) {
  const Tensor t = from_vector(std::vector<float>{1.f, 2.f}, {2});
  if (cuda::device_count() == 0) {
    try {
      (void)t.to(Device::cuda(0));
      FAIL() << "moving to cuda:0 without a device did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    }
    return;
  }
  EXPECT_THROW((void)t.to(Device::cuda(cuda::device_count())), Error);
  EXPECT_EQ(t.to(Device::cuda(0)).to(Device::cpu()).to_vector<float>(), (std::vector<float>{1.f, 2.f}));
}

TEST(CudaRuntime, AllocatorReusesFreedBlocks) {
  RECHUB_SKIP_WITHOUT_GPU();
  { Tensor warm = empty({1000, 37}, {.device = Device::cuda()}); }
  const size_t mallocs = cuda::allocator_stats(0).num_cuda_mallocs;
  for (int i = 0; i < 10; ++i) Tensor t = empty({1000, 37}, {.device = Device::cuda()});
  EXPECT_EQ(cuda::allocator_stats(0).num_cuda_mallocs, mallocs);
}

TEST(CudaRuntime, PinnedBufferCopiesToTheDevice) {
  RECHUB_SKIP_WITHOUT_GPU();
  cuda::PinnedBuffer buf(sizeof(float) * 4097);
  for (int i = 0; i < 4097; ++i) buf.as<float>()[i] = static_cast<float>(i) * 0.5f;
  Tensor d = empty({4097}, {.device = Device::cuda()});
  buf.copy_to_device_async(d.raw_data(), 0, buf.size());
  cuda::synchronize(0);
  const auto v = d.to_vector<float>();
  for (int i = 0; i < 4097; ++i) ASSERT_EQ(v[i], static_cast<float>(i) * 0.5f);
}

// ---- optimizers: three steps on the GPU against the formulas in double ----

struct Buffers {
  std::vector<float> p, g;
};
Buffers random_buffers(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  Buffers b{std::vector<float>(n), std::vector<float>(n)};
  for (auto& x : b.p) x = d(rng);
  for (auto& x : b.g) x = d(rng);
  return b;
}
Tensor dev(const std::vector<float>& v) {
  return from_vector(v, {static_cast<int64_t>(v.size())}, {.device = Device::cuda()});
}
void expect_close(const Tensor& got, const std::vector<double>& ref, const char* what) {
  const auto v = got.to_vector<float>();
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_NEAR(v[i], ref[i], 1e-5 * (std::abs(ref[i]) + 1.0)) << what << " element " << i;
}

TEST(CudaOptim, AdamDenseMatchesTorchFormula) {
  RECHUB_SKIP_WITHOUT_GPU();
  const int64_t n = 4097;
  const Buffers b = random_buffers(n, 1);
  const kernels::cuda::AdamConfig c{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.01};
  Tensor p = dev(b.p), g = dev(b.g), m = zeros({n}, {.device = Device::cuda()}),
         v = zeros({n}, {.device = Device::cuda()});
  std::vector<double> rp(b.p.begin(), b.p.end()), rm(n, 0), rv(n, 0);
  for (int64_t t = 1; t <= 3; ++t) {
    kernels::cuda::adam_dense(p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(), n, t, c);
    const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
    for (int64_t i = 0; i < n; ++i) {
      const double gi = b.g[i] + c.weight_decay * rp[i];
      rm[i] = c.beta1 * rm[i] + (1 - c.beta1) * gi;
      rv[i] = c.beta2 * rv[i] + (1 - c.beta2) * gi * gi;
      rp[i] -= c.lr / bc1 * rm[i] / (std::sqrt(rv[i]) / std::sqrt(bc2) + c.eps);
    }
  }
  expect_close(p, rp, "param");
  expect_close(m, rm, "exp_avg");
}

TEST(CudaOptim, SparseAdamAdagradAndSgdRowsMatchTorchFormulas) {
  RECHUB_SKIP_WITHOUT_GPU();
  const int64_t V = 50, D = 7;
  const std::vector<int64_t> rows = {3, 0, 49, 17};
  const int64_t R = static_cast<int64_t>(rows.size());
  const Buffers tb = random_buffers(V * D, 2), gb = random_buffers(R * D, 3);
  const Tensor rows_d = from_vector(rows, {R}, {.dtype = DType::i64, .device = Device::cuda()});
  const Tensor g = dev(gb.g);
  const kernels::cuda::AdamConfig ac{.lr = 1e-2};
  const kernels::cuda::AdagradConfig gc{.lr = 0.1, .lr_decay = 0.01};
  const kernels::cuda::SgdConfig sc{.lr = 0.3};
  Tensor pa = dev(tb.p), ma = zeros({V * D}, {.device = Device::cuda()}),
         va = zeros({V * D}, {.device = Device::cuda()});
  Tensor pg = dev(tb.p), sg = zeros({V * D}, {.device = Device::cuda()});
  Tensor ps = dev(tb.p);
  std::vector<double> ra(tb.p.begin(), tb.p.end()), rma(V * D, 0), rva(V * D, 0), rg = ra, rsg(V * D, 0), rs = ra;
  for (int64_t t = 1; t <= 3; ++t) {
    kernels::cuda::adam_sparse_rows(pa.data<float>(), D, rows_d.data<int64_t>(), g.data<float>(), R, ma.data<float>(),
                                    va.data<float>(), t, ac);
    kernels::cuda::adagrad_sparse_rows(pg.data<float>(), D, rows_d.data<int64_t>(), g.data<float>(), R,
                                       sg.data<float>(), t, gc);
    kernels::cuda::sgd_sparse_rows(ps.data<float>(), D, rows_d.data<int64_t>(), g.data<float>(), R, sc);
    const double bc1 = 1 - std::pow(ac.beta1, t), bc2 = 1 - std::pow(ac.beta2, t);
    const double clr = gc.lr / (1 + (t - 1) * gc.lr_decay);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < D; ++j) {
        const int64_t e = rows[r] * D + j;
        const double gv = gb.g[r * D + j];
        rma[e] += (gv - rma[e]) * (1 - ac.beta1);
        rva[e] += (gv * gv - rva[e]) * (1 - ac.beta2);
        ra[e] -= ac.lr * std::sqrt(bc2) / bc1 * rma[e] / (std::sqrt(rva[e]) + ac.eps);
        rsg[e] += gv * gv;
        rg[e] -= clr * gv / (std::sqrt(rsg[e]) + gc.eps);
        rs[e] -= sc.lr * gv;
      }
  }
  expect_close(pa, ra, "SparseAdam param");
  expect_close(pg, rg, "Adagrad param");
  expect_close(ps, rs, "SGD param");
}

TEST(CudaOptim, SgdMomentumNesterovAndAdagradDenseMatchTorchFormulas) {
  RECHUB_SKIP_WITHOUT_GPU();
  const int64_t n = 127;
  const Buffers b = random_buffers(n, 4);
  const kernels::cuda::SgdConfig sc{
      .lr = 0.1, .momentum = 0.9, .dampening = 0.0, .weight_decay = 0.01, .nesterov = true};
  const kernels::cuda::AdagradConfig gc{.lr = 0.1, .lr_decay = 0.0, .weight_decay = 0.02};
  Tensor p = dev(b.p), g = dev(b.g), buf = zeros({n}, {.device = Device::cuda()});
  Tensor pa = dev(b.p), s = zeros({n}, {.device = Device::cuda()});
  std::vector<double> rp(b.p.begin(), b.p.end()), rb(n, 0), ra = rp, rs(n, 0);
  for (int64_t t = 1; t <= 3; ++t) {
    kernels::cuda::sgd_dense(p.data<float>(), g.data<float>(), buf.data<float>(), n, t, sc);
    kernels::cuda::adagrad_dense(pa.data<float>(), g.data<float>(), s.data<float>(), n, t, gc);
    for (int64_t i = 0; i < n; ++i) {
      double d = b.g[i] + sc.weight_decay * rp[i];
      rb[i] = t == 1 ? d : sc.momentum * rb[i] + (1 - sc.dampening) * d;
      d = d + sc.momentum * rb[i];
      rp[i] -= sc.lr * d;
      const double ga = b.g[i] + gc.weight_decay * ra[i];
      rs[i] += ga * ga;
      ra[i] -= gc.lr * ga / (std::sqrt(rs[i]) + gc.eps);
    }
  }
  expect_close(p, rp, "SGD param");
  expect_close(pa, ra, "Adagrad param");
}

#else

TEST(CudaRuntime, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif

}  // namespace
}  // namespace rechub
