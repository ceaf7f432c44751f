// Losses: numerically stable BCE on logits, BCE on probabilities (clamped like PyTorch), MSE.
#include "rechub/core/dispatch.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/loss.h"

namespace rechub::ops {
using detail::check_float_operands;

static Tensor reduce(const Tensor& l, Reduction r) {
  switch (r) {
    case Reduction::mean:
      return mean(l);
    case Reduction::sum:
      return sum(l);
    case Reduction::none:
      return l;
  }
  return l;
}

static void check_targets(const char* op, const Tensor& x, const Tensor& y) {
  check_float_operands(op, {&x, &y});
  RECHUB_CHECK(x.shape() == y.shape(), op << ": predictions " << shape_str(x.shape()) << " and targets "
                                          << shape_str(y.shape()) << " must have the same shape");
  RECHUB_CHECK(!y.requires_grad(), op << ": targets must not require grad");
}

Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, const BCEOptions& opts) {
  check_targets("bce_with_logits", logits, targets);
  RECHUB_CHECK(opts.pos_weight > 0, "bce_with_logits: pos_weight must be positive, got " << opts.pos_weight);
  Tensor l = empty(logits.shape(), {.dtype = logits.dtype(), .device = logits.device()});
  const double pw = opts.pos_weight;
  RECHUB_DEVICE_SWITCH(
      logits,
      kernels::cuda::bce_logits_forward(logits.data<float>(), targets.data<float>(), logits.numel(), pw,
                                        l.data<float>()),
      RECHUB_FLOAT_DISPATCH(logits.dtype(), "bce_with_logits",
                            kernels::cpu::bce_logits_forward(logits.data<scalar_t>(), targets.data<scalar_t>(),
                                                             logits.numel(), pw, l.data<scalar_t>())));
  l = record(l, "bce_with_logits", {logits},
             [x = logits.detach(), y = targets.detach(), pw](const Tensor& g, const std::vector<bool>&) {
               Tensor gx = empty(x.shape(), {.dtype = x.dtype(), .device = x.device()});
               RECHUB_DEVICE_SWITCH(
                   x,
                   kernels::cuda::bce_logits_backward(x.data<float>(), y.data<float>(), g.data<float>(), x.numel(), pw,
                                                      gx.data<float>()),
                   RECHUB_FLOAT_DISPATCH(
                       x.dtype(), "bce_with_logits backward",
                       kernels::cpu::bce_logits_backward(x.data<scalar_t>(), y.data<scalar_t>(), g.data<scalar_t>(),
                                                         x.numel(), pw, gx.data<scalar_t>())));
               return std::vector<Tensor>{gx};
             });
  if (opts.weight.defined()) l = mul(l, opts.weight);
  return reduce(l, opts.reduction);
}

Tensor binary_cross_entropy(const Tensor& probs, const Tensor& targets, Reduction r) {
  check_targets("binary_cross_entropy", probs, targets);
  {
    // PyTorch refuses probabilities outside [0, 1]; so do we, naming the first one.
    const auto v = probs.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i)
      RECHUB_CHECK(v[i] >= 0.0 && v[i] <= 1.0,
                   "binary_cross_entropy: input " << i << " = " << v[i] << " is not a probability in [0, 1]");
  }
  Tensor l = empty(probs.shape(), {.dtype = probs.dtype(), .device = probs.device()});
  RECHUB_DEVICE_SWITCH(
      probs, kernels::cuda::bce_forward(probs.data<float>(), targets.data<float>(), probs.numel(), l.data<float>()),
      RECHUB_FLOAT_DISPATCH(probs.dtype(), "binary_cross_entropy",
                            kernels::cpu::bce_forward(probs.data<scalar_t>(), targets.data<scalar_t>(), probs.numel(),
                                                      l.data<scalar_t>())));
  l = record(
      l, "binary_cross_entropy", {probs},
      [p = probs.detach(), y = targets.detach()](const Tensor& g, const std::vector<bool>&) {
        Tensor gp = empty(p.shape(), {.dtype = p.dtype(), .device = p.device()});
        RECHUB_DEVICE_SWITCH(
            p,
            kernels::cuda::bce_backward(p.data<float>(), y.data<float>(), g.data<float>(), p.numel(), gp.data<float>()),
            RECHUB_FLOAT_DISPATCH(p.dtype(), "binary_cross_entropy backward",
                                  kernels::cpu::bce_backward(p.data<scalar_t>(), y.data<scalar_t>(), g.data<scalar_t>(),
                                                             p.numel(), gp.data<scalar_t>())));
        return std::vector<Tensor>{gp};
      });
  return reduce(l, r);
}

Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction r) {
  check_float_operands("mse_loss", {&pred, &target});
  RECHUB_CHECK(pred.shape() == target.shape(), "mse_loss: predictions " << shape_str(pred.shape()) << " and targets "
                                                                        << shape_str(target.shape())
                                                                        << " must have the same shape");
  Tensor d = sub(pred, target);
  return reduce(mul(d, d), r);
}

}  // namespace rechub::ops
