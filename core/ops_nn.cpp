// Fused batch normalisation: forward, running-statistics update and hand-written backward.
#include "rechub/core/ops_nn.h"

#include <cmath>
#include <memory>
#include <vector>

#include "rechub/core/dispatch.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/batchnorm.h"
#include "rechub/kernels/cuda/fused.h"  // declarations only: no CUDA headers

namespace rechub::ops {

namespace {

std::vector<double> as_doubles(const Tensor& t, int64_t n, double fill) {
  if (!t.defined()) return std::vector<double>(static_cast<size_t>(n), fill);
  return t.to_vector<double>();
}

#ifdef RECHUB_WITH_CUDA
// The CUDA path (f32), the same steps as the CPU path below with the per-channel vectors (mean,
// invstd in double; scale, shift in f32) kept on the device: nothing is read back to the host.
Tensor batch_norm_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                       const Tensor& running_var, bool training, double momentum, double eps) {
  namespace kcu = kernels::cuda;
  const Device dev = x.device();
  cuda::use_device(dev.index);
  const int64_t N = x.size(0), C = x.size(1), L = x.dim() == 3 ? x.size(2) : 1, M = N * L;
  const TensorOptions f32{.dtype = DType::f32, .device = dev}, f64{.dtype = DType::f64, .device = dev};
  Tensor mean = empty({C}, f64), invstd = empty({C}, f64);
  Tensor var = training ? empty({C}, f64) : Tensor();
  if (training) kcu::batchnorm_stats(x.data<float>(), N, C, L, mean.data<double>(), var.data<double>());
  Tensor rm_t = running_mean, rv_t = running_var;  // handles to the caller's buffers, updated in place
  const double unbias = M > 1 ? static_cast<double>(M) / static_cast<double>(M - 1) : 1.0;
  Tensor scale = empty({C}, f32), shift = empty({C}, f32);
  kcu::batchnorm_prepare(C, training, mean.data<double>(), training ? var.data<double>() : nullptr,
                         rm_t.defined() ? rm_t.data<float>() : nullptr, rv_t.defined() ? rv_t.data<float>() : nullptr,
                         weight.defined() ? weight.data<float>() : nullptr,
                         bias.defined() ? bias.data<float>() : nullptr, momentum, eps, unbias, invstd.data<double>(),
                         scale.data<float>(), shift.data<float>());
  if (training && rm_t.defined()) {
    rm_t.bump_version();
    rv_t.bump_version();
  }
  Tensor y = empty(x.shape(), f32);
  kcu::batchnorm_apply(x.data<float>(), N, C, L, scale.data<float>(), shift.data<float>(), y.data<float>());
  // The weight's values at forward time (the CPU path copies them too).
  Tensor w = weight.defined() ? weight.detach().clone() : Tensor();
  return record(
      y, "batch_norm", {x, weight, bias},
      [x = x.detach(), w, mean, invstd, training, N, C, L, M, dev](const Tensor& g, const std::vector<bool>& n) {
        cuda::use_device(dev.index);
        const TensorOptions f32{.dtype = DType::f32, .device = dev}, f64{.dtype = DType::f64, .device = dev};
        Tensor sums = empty({2, C}, f64);
        kcu::batchnorm_grad_sums(g.data<float>(), x.data<float>(), N, C, L, mean.data<double>(), sums.data<double>(),
                                 sums.data<double>() + C);
        Tensor k = n[0] ? empty({3, C}, f64) : Tensor();
        Tensor gw = n[1] ? empty({C}, f32) : Tensor(), gb = n[2] ? empty({C}, f32) : Tensor();
        double* pk = k.defined() ? k.data<double>() : nullptr;
        kcu::batchnorm_backward_prepare(
            C, M, training, sums.data<double>(), sums.data<double>() + C, invstd.data<double>(),
            w.defined() ? w.data<float>() : nullptr, pk, pk ? pk + C : nullptr, pk ? pk + 2 * C : nullptr,
            gw.defined() ? gw.data<float>() : nullptr, gb.defined() ? gb.data<float>() : nullptr);
        Tensor gx;
        if (n[0]) {
          gx = empty(x.shape(), f32);
          kcu::batchnorm_input_grad(g.data<float>(), x.data<float>(), N, C, L, mean.data<double>(), pk, pk + C,
                                    pk + 2 * C, gx.data<float>());
        }
        return std::vector<Tensor>{gx, gw, gb};
      });
}
#endif

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps) {
  detail::check_float_operands("batch_norm", {&x});
  RECHUB_CHECK(x.dim() == 2 || x.dim() == 3,
               "batch_norm: expected input [N, C] or [N, C, L], got " << shape_str(x.shape()));
  const int64_t N = x.size(0), C = x.size(1), L = x.dim() == 3 ? x.size(2) : 1;
  int64_t M = N * L;  // rows of the statistics (all ranks' in data-parallel training)
  auto check_vec = [&](const Tensor& t, const char* what) {
    if (!t.defined()) return;
    detail::check_float_operands("batch_norm", {&x, &t});
    RECHUB_CHECK(t.dim() == 1 && t.size(0) == C, "batch_norm: " << what << " has shape " << shape_str(t.shape())
                                                                << " but the input has " << C << " channels ("
                                                                << shape_str(x.shape()) << ")");
  };
  check_vec(weight, "weight");
  check_vec(bias, "bias");
  check_vec(running_mean, "running_mean");
  check_vec(running_var, "running_var");
  RECHUB_CHECK(running_mean.defined() == running_var.defined(),
               "batch_norm: running_mean and running_var must both be given or both be omitted");
  RECHUB_CHECK(training || running_mean.defined(), "batch_norm: eval mode needs running_mean and running_var");
  RECHUB_CHECK(!training || M > 1, "batch_norm: expected more than 1 value per channel when training, got input "
                                       << shape_str(x.shape()) << " (a batch of one cannot be normalised)");
  RECHUB_CHECK(eps > 0, "batch_norm: eps must be positive, got " << eps);
#ifdef RECHUB_WITH_CUDA
  if (x.device().is_cuda()) return batch_norm_cuda(x, weight, bias, running_mean, running_var, training, momentum, eps);
#endif

  // mean/invstd as used by the forward (batch statistics in training, running ones in eval).
  dist::Communicator* bn_group = training ? dist::batch_stats_group() : nullptr;
  auto mean = std::make_shared<std::vector<double>>(C);
  auto invstd = std::make_shared<std::vector<double>>(C);
  if (training) {
    std::vector<double> var(C);
    RECHUB_FLOAT_DISPATCH(x.dtype(), "batch_norm",
                          kernels::cpu::batchnorm_stats(x.data<scalar_t>(), N, C, L, mean->data(), var.data()));
    // Data-parallel training: the statistics of the global batch (core/dist/sync.h).
    if (bn_group) M = dist::global_mean_var(*bn_group, M, mean->data(), var.data(), C);
    for (int64_t c = 0; c < C; ++c) (*invstd)[c] = 1.0 / std::sqrt(var[c] + eps);
    if (running_mean.defined()) {
      NoGradGuard ng;
      const double unbias = static_cast<double>(M) / static_cast<double>(M - 1);
      Tensor rm_t = running_mean, rv_t = running_var;  // handles to the caller's buffers, updated in place
      RECHUB_FLOAT_DISPATCH(x.dtype(), "batch_norm", {
        scalar_t* rm = rm_t.data<scalar_t>();
        scalar_t* rv = rv_t.data<scalar_t>();
        for (int64_t c = 0; c < C; ++c) {
          rm[c] = static_cast<scalar_t>((1.0 - momentum) * rm[c] + momentum * (*mean)[c]);
          rv[c] = static_cast<scalar_t>((1.0 - momentum) * rv[c] + momentum * var[c] * unbias);
        }
      });
      rm_t.bump_version();
      rv_t.bump_version();
    }
  } else {
    *mean = running_mean.to_vector<double>();
    const auto rv = running_var.to_vector<double>();
    for (int64_t c = 0; c < C; ++c) (*invstd)[c] = 1.0 / std::sqrt(rv[c] + eps);
  }
  const std::vector<double> w = as_doubles(weight, C, 1.0), b = as_doubles(bias, C, 0.0);
  Tensor y = empty(x.shape(), {.dtype = x.dtype()});
  RECHUB_FLOAT_DISPATCH(x.dtype(), "batch_norm", {
    std::vector<scalar_t> scale(C), shift(C);
    for (int64_t c = 0; c < C; ++c) {
      const double a = w[c] * (*invstd)[c];
      scale[c] = static_cast<scalar_t>(a);
      shift[c] = static_cast<scalar_t>(b[c] - (*mean)[c] * a);
    }
    kernels::cpu::batchnorm_apply(x.data<scalar_t>(), N, C, L, scale.data(), shift.data(), y.data<scalar_t>());
  });

  return record(
      y, "batch_norm", {x, weight, bias},
      [x = x.detach(), w, mean, invstd, training, N, C, L, M, bn_group](const Tensor& g, const std::vector<bool>& n) {
        std::vector<double> sum_g(C), sum_gx(C);
        RECHUB_FLOAT_DISPATCH(g.dtype(), "batch_norm backward",
                              kernels::cpu::batchnorm_grad_sums(g.data<scalar_t>(), x.data<scalar_t>(), N, C, L,
                                                                mean->data(), sum_g.data(), sum_gx.data()));
        Tensor gx, gw, gb;
        if (n[0]) {
          std::vector<double> ka(C, 0.0), kb(C), kc(C, 0.0);
          // Data-parallel: the means over the global batch (M is its row count); sum_g and
          // sum_gx stay this rank's share for the weight's and bias's gradients.
          std::vector<double> tg = sum_g, tgx = sum_gx;
          if (training && bn_group) dist::global_column_sums(*bn_group, tg.data(), tgx.data(), C);
          for (int64_t c = 0; c < C; ++c) {
            const double is = (*invstd)[c];
            kb[c] = w[c] * is;
            if (training) {
              ka[c] = tg[c] / static_cast<double>(M);
              kc[c] = w[c] * is * is * is * tgx[c] / static_cast<double>(M);
            }
          }
          gx = empty(x.shape(), {.dtype = x.dtype()});
          RECHUB_FLOAT_DISPATCH(
              g.dtype(), "batch_norm backward",
              kernels::cpu::batchnorm_input_grad(g.data<scalar_t>(), x.data<scalar_t>(), N, C, L, mean->data(),
                                                 ka.data(), kb.data(), kc.data(), gx.data<scalar_t>()));
        }
        if (n[1]) {
          std::vector<double> v(C);
          for (int64_t c = 0; c < C; ++c) v[c] = sum_gx[c] * (*invstd)[c];
          gw = from_vector(v, {C}).to(x.dtype());
        }
        if (n[2]) gb = from_vector(sum_g, {C}).to(x.dtype());
        return std::vector<Tensor>{gx, gw, gb};
      });
}

}  // namespace rechub::ops
