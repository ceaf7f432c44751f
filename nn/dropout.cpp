#include "rechub/nn/dropout.h"

#include "rechub/core/ops.h"
#include "rechub/nn/upload.h"

namespace rechub::nn {

Dropout::Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {
  RECHUB_CHECK(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got " << p);
}

Tensor Dropout::forward(const Tensor& x) {
  RECHUB_CHECK(x.defined(), describe() << ": undefined input");
  if (!is_training() || p_ == 0.0) return x;
  // mask = bernoulli(1 - p) / (1 - p); out = x * mask (its backward is g * mask).
  Tensor mask = empty(x.shape(), {.dtype = x.dtype()});
  const double keep = 1.0 - p_, scale = keep > 0 ? 1.0 / keep : 0.0;
  if (x.dtype() == DType::f32) {
    float* m = mask.data<float>();
    for (int64_t i = 0; i < mask.numel(); ++i) m[i] = gen_.bernoulli(keep) ? static_cast<float>(scale) : 0.0f;
  } else {
    RECHUB_CHECK(x.dtype() == DType::f64, describe()
                                              << ": expected a floating-point input, got " << dtype_name(x.dtype()));
    double* m = mask.data<double>();
    for (int64_t i = 0; i < mask.numel(); ++i) m[i] = gen_.bernoulli(keep) ? scale : 0.0;
  }
  // Drawn on the host from the generator whatever the device, so CPU and CUDA runs draw the same mask.
  if (!x.device().is_cpu()) mask = upload_to(mask, x.device());
  return ops::mul(x, mask);
}

}  // namespace rechub::nn
