#include "rechub/nn/mlp.h"

#include "rechub/nn/activation.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/dropout.h"
#include "rechub/nn/linear.h"

namespace rechub::nn {

MLP::MLP(const MLPOptions& opts) : opts_(opts), output_dim_(opts.input_dim) {
  opts_.generator = nullptr;  // not kept: it may not outlive the module
  RECHUB_CHECK(opts.input_dim > 0, "MLP: input_dim must be positive, got " << opts.input_dim);
  RECHUB_CHECK(opts.output_layer || !opts.dims.empty(), "MLP: no hidden dims and no output layer: nothing to build");
  make_activation(opts.activation, 1);  // an unknown name fails here even when dims is empty
  mlp_ = std::make_shared<Sequential>();
  int64_t in = opts.input_dim;
  uint64_t k = 0;
  for (size_t i = 0; i < opts.dims.size(); ++i) {
    const int64_t d = opts.dims[i];
    RECHUB_CHECK(d > 0, "MLP: dims[" << i << "] must be positive, got " << d);
    mlp_->push_back(std::make_shared<Linear>(in, d, true, opts.generator));
    if (opts.batch_norm) mlp_->push_back(std::make_shared<BatchNorm1d>(d));
    mlp_->push_back(make_activation(opts.activation, d));
    mlp_->push_back(std::make_shared<Dropout>(opts.dropout, opts.dropout_seed + k++));
    in = d;
  }
  if (opts.output_layer) mlp_->push_back(std::make_shared<Linear>(in, 1, true, opts.generator));
  output_dim_ = opts.output_layer ? 1 : in;
  register_module("mlp", mlp_);
}

Tensor MLP::forward(const Tensor& x) {
  RECHUB_CHECK(x.defined() && x.dim() == 2 && x.size(1) == opts_.input_dim,
               describe() << " (input_dim=" << opts_.input_dim << "): expected input [N, " << opts_.input_dim
                          << "], got " << (x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor")));
  return mlp_->forward(x);
}

}  // namespace rechub::nn
