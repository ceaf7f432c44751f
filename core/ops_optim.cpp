// The optimizers' update kernels behind core/ops_optim.h: the CPU row-sparse steps on this machine's
// instruction set, and the CUDA side (dispatch of the update rules to kernels/cuda/optim.h, device
// coalescing of accumulated row-sparse gradients, the pieces of gradient clipping).
#include "rechub/core/ops_optim.h"

#include <algorithm>
#include <cmath>

#include "rechub/core/error.h"
#ifdef RECHUB_WITH_CUDA
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/cuda/optim.h"
#include "rechub/kernels/cuda/runtime.h"
#endif

namespace rechub::ops {

bool sparse_adam_rows(float* p, float* m, float* v, const float* g, const int64_t* idx, int64_t lo, int64_t hi,
                      int64_t n, const SparseAdamCoef& c) {
  return kernels::cpu::sparse_adam_rows(kernels::cpu::active_isa(), p, m, v, g, idx, lo, hi, n, c);
}

bool sparse_adagrad_rows(float* p, float* sum, const float* g, const int64_t* idx, int64_t lo, int64_t hi, int64_t n,
                         float clr, float eps, float wd, bool has_wd) {
  return kernels::cpu::sparse_adagrad_rows(kernels::cpu::active_isa(), p, sum, g, idx, lo, hi, n, clr, eps, wd, has_wd);
}

#ifdef RECHUB_WITH_CUDA
namespace kc = rechub::kernels::cuda;

namespace {
void check_f32(const Tensor& t, const char* who) {
  RECHUB_CHECK(t.dtype() == DType::f32 && t.device().is_cuda(),
               who << ": expected an f32 CUDA tensor, got " << dtype_name(t.dtype()) << " on " << t.device().str());
}
}  // namespace

Tensor coalesce_on_device(const Tensor& grad) {
  RECHUB_CHECK(grad.is_sparse() && grad.device().is_cuda(), "coalesce_on_device: expected a row-sparse CUDA tensor");
  const Tensor idx = grad.sparse_indices(), val = grad.sparse_values();
  check_f32(val, "coalesce_on_device");
  const Device dev = grad.device();
  const int64_t n = idx.numel(), dim = grad.shape()[1], rows = grad.shape()[0];
  rechub::cuda::use_device(dev.index);
  Tensor uniq = empty({n}, {.dtype = DType::i64, .device = dev});
  Tensor sums = empty({n, dim}, {.dtype = DType::f32, .device = dev});
  // The embedding backward's sort-based reduction is exactly a coalesce: n "ids" of one feature.
  const int64_t u = n == 0 ? 0
                           : kc::embedding_backward(val.data<float>(), dim, idx.data<int64_t>(), n, 1, rows,
                                                    uniq.data<int64_t>(), sums.data<float>());
  return Tensor::sparse_rows(make_view(uniq, 0, {u}), make_view(sums, 0, {u, dim}), grad.shape());
}

double grad_norm_on_device(const std::vector<Tensor>& grads, double norm_type) {
  if (grads.empty()) return 0.0;
  const Device dev = grads.front().device();
  const bool inf = std::isinf(norm_type);
  rechub::cuda::use_device(dev.index);
  Tensor acc = zeros({1}, {.dtype = DType::f64, .device = dev});
  for (const Tensor& g : grads) {
    RECHUB_CHECK(g.device() == dev, "clip_grad_norm: gradients on " << dev.str() << " and " << g.device().str()
                                                                    << "; all CUDA gradients must be on one device");
    check_f32(g, "clip_grad_norm");
    kc::grad_norm_accumulate(g.data<float>(), g.numel(), norm_type, inf, acc.data<double>());
  }
  return acc.item();  // the one device-to-host read (synchronises the stream)
}

void scale_on_device(Tensor& g, double coef) {
  check_f32(g, "clip_grad_norm");
  rechub::cuda::use_device(g.device().index);
  kc::scale_inplace(g.data<float>(), g.numel(), static_cast<float>(coef));
  g.bump_version();
}

void adam_update_cuda(Tensor& p, const Tensor& grad, Tensor& m, Tensor& v, int64_t step, const CudaAdam& c) {
  check_f32(p, "Adam");
  rechub::cuda::use_device(p.device().index);
  const kc::AdamConfig cfg{.lr = c.lr,
                           .beta1 = c.beta1,
                           .beta2 = c.beta2,
                           .eps = c.eps,
                           .weight_decay = c.weight_decay,
                           .decoupled = c.decoupled};
  if (!grad.is_sparse()) {
    check_f32(grad, "Adam");
    kc::adam_dense(p.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), p.numel(), step, cfg);
    return;
  }
  const Tensor idx = grad.sparse_indices(), val = grad.sparse_values();
  check_f32(val, "Adam");
  kc::adam_sparse_rows(p.data<float>(), p.size(1), idx.data<int64_t>(), val.data<float>(), idx.numel(), m.data<float>(),
                       v.data<float>(), step, cfg);
}

void adagrad_update_cuda(Tensor& p, const Tensor& grad, Tensor& sum, int64_t step, const CudaAdagrad& c) {
  check_f32(p, "Adagrad");
  rechub::cuda::use_device(p.device().index);
  const kc::AdagradConfig cfg{.lr = c.lr, .lr_decay = c.lr_decay, .weight_decay = c.weight_decay, .eps = c.eps};
  if (!grad.is_sparse()) {
    check_f32(grad, "Adagrad");
    kc::adagrad_dense(p.data<float>(), grad.data<float>(), sum.data<float>(), p.numel(), step, cfg);
    return;
  }
  const Tensor idx = grad.sparse_indices(), val = grad.sparse_values();
  check_f32(val, "Adagrad");
  kc::adagrad_sparse_rows(p.data<float>(), p.size(1), idx.data<int64_t>(), val.data<float>(), idx.numel(),
                          sum.data<float>(), step, cfg);
}

void sgd_update_cuda(Tensor& p, const Tensor& grad, Tensor& buf, bool first, const CudaSgd& c) {
  check_f32(p, "SGD");
  rechub::cuda::use_device(p.device().index);
  const kc::SgdConfig cfg{.lr = c.lr,
                          .momentum = c.momentum,
                          .dampening = c.dampening,
                          .weight_decay = c.weight_decay,
                          .nesterov = c.nesterov};
  float* b = buf.defined() ? buf.data<float>() : nullptr;
  if (!grad.is_sparse()) {
    check_f32(grad, "SGD");
    kc::sgd_dense(p.data<float>(), grad.data<float>(), b, p.numel(), first ? 1 : 2, cfg);
    return;
  }
  const Tensor idx = grad.sparse_indices(), val = grad.sparse_values();
  check_f32(val, "SGD");
  kc::sgd_sparse_unique_rows(p.data<float>(), p.size(1), idx.data<int64_t>(), val.data<float>(), idx.numel(), b, first,
                             cfg);
}

#else  // no CUDA backend in this build

namespace {
[[noreturn]] void no_cuda() { RECHUB_FAIL("optimizer: a CUDA tensor in a build of rechub without the CUDA backend"); }
}  // namespace
Tensor coalesce_on_device(const Tensor&) { no_cuda(); }
double grad_norm_on_device(const std::vector<Tensor>&, double) { no_cuda(); }
void scale_on_device(Tensor&, double) { no_cuda(); }
void adam_update_cuda(Tensor&, const Tensor&, Tensor&, Tensor&, int64_t, const CudaAdam&) { no_cuda(); }
void adagrad_update_cuda(Tensor&, const Tensor&, Tensor&, int64_t, const CudaAdagrad&) { no_cuda(); }
void sgd_update_cuda(Tensor&, const Tensor&, Tensor&, bool, const CudaSgd&) { no_cuda(); }

#endif

}  // namespace rechub::ops
