#include "rechub/nn/linear.h"

#include <cmath>

#include "rechub/core/ops.h"
#include "rechub/nn/init.h"

namespace rechub::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator* gen)
    : in_(in_features), out_(out_features) {
  RECHUB_CHECK(in_features > 0 && out_features > 0,
               "Linear: in_features and out_features must be positive, got " << in_features << " and " << out_features);
  Tensor w = empty({out_, in_});
  init::kaiming_uniform_(w, std::sqrt(5.0), init::FanMode::fan_in, "leaky_relu", gen);
  weight_ = register_parameter("weight", w);
  if (bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    Tensor b = empty({out_});
    init::uniform_(b, -bound, bound, gen);
    bias_ = register_parameter("bias", b);
  }
}

Tensor Linear::forward(const Tensor& x) {
  RECHUB_CHECK(x.defined() && x.dim() == 2 && x.size(1) == in_,
               describe() << " (in_features=" << in_ << ", out_features=" << out_ << "): expected input [N, " << in_
                          << "], got " << (x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor")));
  return ops::linear(x, weight_, bias_);
}

}  // namespace rechub::nn
