// Fused batch normalisation: forward, running-statistics update and hand-written backward,
// written once for every device over the kernel entry points of kernels/batchnorm.h
// (kernels/cpu/batchnorm.cpp, kernels/cuda/batchnorm.cu).
#include "rechub/core/ops_nn.h"

#include <type_traits>
#include <vector>

#include "rechub/core/dispatch.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/batchnorm.h"

namespace rechub::ops {

namespace {

// The kernel entry points of the device `dev` (kernels/batchnorm.h); CUDA runs f32 only, which
// check_float_operands enforced.
template <class T>
const kernels::BatchNormKernels<T>& kernels_on(const Device& dev) {
#ifdef RECHUB_WITH_CUDA
  if constexpr (std::is_same_v<T, float>)
    if (dev.is_cuda()) {
      cuda::use_device(dev.index);  // kernels launch on the current device
      return kernels::cuda::batchnorm_kernels();
    }
#endif
  RECHUB_CHECK(dev.is_cpu(), "batch_norm: no kernels for " << dev.str());
  return kernels::cpu::batchnorm_kernels<T>();
}

using detail::cptr;
using detail::mptr;

// Forward and backward for every device: the per-channel vectors (mean, invstd in double; scale,
// shift in T) live on the input's device, so nothing is read back to the host on CUDA.
template <class T>
Tensor batch_norm_impl(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                       const Tensor& running_var, bool training, double momentum, double eps) {
  const Device dev = x.device();
  const kernels::BatchNormKernels<T>& K = kernels_on<T>(dev);
  const TensorOptions t_opts{.dtype = dtype_of<T>::value, .device = dev}, f64{.dtype = DType::f64, .device = dev};
  const int64_t N = x.size(0), C = x.size(1), L = x.dim() == 3 ? x.size(2) : 1;
  int64_t M = N * L;  // rows of the statistics (all ranks' in data-parallel training)
  // Data-parallel training (CPU): the statistics of the global batch (core/dist/sync.h).
  dist::Communicator* bn_group = training && dev.is_cpu() ? dist::batch_stats_group() : nullptr;
  // mean/invstd as used by the forward (batch statistics in training, running ones in eval).
  Tensor mean = empty({C}, f64), invstd = empty({C}, f64);
  Tensor var = training ? empty({C}, f64) : Tensor();
  if (training) {
    K.stats(x.template data<T>(), N, C, L, mean.data<double>(), var.data<double>());
    if (bn_group) M = dist::global_mean_var(*bn_group, M, mean.data<double>(), var.data<double>(), C);
  }
  Tensor rm_t = running_mean, rv_t = running_var;  // handles to the caller's buffers, updated in place
  const double unbias = M > 1 ? static_cast<double>(M) / static_cast<double>(M - 1) : 1.0;  // used in training
  Tensor scale = empty({C}, t_opts), shift = empty({C}, t_opts);
  K.prepare(C, training, mean.data<double>(), cptr<double>(var), mptr<T>(rm_t), mptr<T>(rv_t), cptr<T>(weight),
            cptr<T>(bias), momentum, eps, unbias, invstd.data<double>(), scale.template data<T>(),
            shift.template data<T>());
  if (training && rm_t.defined()) {
    rm_t.bump_version();
    rv_t.bump_version();
  }
  Tensor y = empty(x.shape(), t_opts);
  K.apply(x.template data<T>(), N, C, L, scale.template data<T>(), shift.template data<T>(), y.template data<T>());
  // The weight's values at forward time.
  Tensor w = weight.defined() ? weight.detach().clone() : Tensor();
  return record(
      y, "batch_norm", {x, weight, bias},
      [x = x.detach(), w, mean, invstd, training, N, C, L, M, bn_group](const Tensor& g, const std::vector<bool>& n) {
        const Device dev = x.device();
        const kernels::BatchNormKernels<T>& K = kernels_on<T>(dev);
        const TensorOptions t_opts{.dtype = dtype_of<T>::value, .device = dev}, f64{.dtype = DType::f64, .device = dev};
        Tensor sums = empty({2, C}, f64);
        double* sum_g = sums.data<double>();
        double* sum_gx = sum_g + C;
        K.grad_sums(g.template data<T>(), x.template data<T>(), N, C, L, mean.data<double>(), sum_g, sum_gx);
        Tensor k = n[0] ? empty({3, C}, f64) : Tensor();
        Tensor gw = n[1] ? empty({C}, t_opts) : Tensor(), gb = n[2] ? empty({C}, t_opts) : Tensor();
        double* pk = k.defined() ? k.data<double>() : nullptr;
        double* pka = pk;
        double* pkb = pk ? pk + C : nullptr;
        double* pkc = pk ? pk + 2 * C : nullptr;
        if (training && bn_group && pk) {
          // Data-parallel: the means over the global batch (M is its row count); sum_g and sum_gx
          // stay this rank's share for the weight's and bias's gradients.
          Tensor global = sums.clone();
          double* tg = global.data<double>();
          dist::global_column_sums(*bn_group, tg, tg + C, C);
          K.backward_prepare(C, M, training, tg, tg + C, invstd.data<double>(), cptr<T>(w), pka, pkb, pkc, nullptr,
                             nullptr);
          K.backward_prepare(C, M, training, sum_g, sum_gx, invstd.data<double>(), cptr<T>(w), nullptr, nullptr,
                             nullptr, mptr<T>(gw), mptr<T>(gb));
        } else {
          K.backward_prepare(C, M, training, sum_g, sum_gx, invstd.data<double>(), cptr<T>(w), pka, pkb, pkc,
                             mptr<T>(gw), mptr<T>(gb));
        }
        Tensor gx;
        if (n[0]) {
          gx = empty(x.shape(), t_opts);
          K.input_grad(g.template data<T>(), x.template data<T>(), N, C, L, mean.data<double>(), pka, pkb, pkc,
                       gx.template data<T>());
        }
        return std::vector<Tensor>{gx, gw, gb};
      });
}

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
  Tensor out;
  RECHUB_FLOAT_DISPATCH(
      x.dtype(), "batch_norm",
      out = batch_norm_impl<scalar_t>(x, weight, bias, running_mean, running_var, training, momentum, eps));
  return out;
}

}  // namespace rechub::ops
