#include "rechub/nn/activation.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "rechub/core/ops.h"
#include "rechub/core/ops_nn.h"

namespace rechub::nn {

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = {"relu",    "sigmoid",    "tanh",      "prelu",    "dice",
                                                 "softmax", "leaky_relu", "leakyrelu", "identity", "linear"};
  return names;
}

std::shared_ptr<UnaryModule> make_activation(const std::string& name, int64_t num_features) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  using K = Activation::Kind;
  if (n == "relu") return std::make_shared<Activation>(K::relu);
  if (n == "sigmoid") return std::make_shared<Activation>(K::sigmoid);
  if (n == "tanh") return std::make_shared<Activation>(K::tanh);
  if (n == "softmax") return std::make_shared<Activation>(K::softmax);
  if (n == "leaky_relu" || n == "leakyrelu") return std::make_shared<Activation>(K::leaky_relu);
  if (n == "identity" || n == "linear") return std::make_shared<Activation>(K::identity);
  if (n == "prelu") return std::make_shared<PReLU>();
  if (n == "dice") {
    RECHUB_CHECK(num_features > 0,
                 "activation 'dice' needs the number of features it normalises (got " << num_features << ")");
    return std::make_shared<Dice>(num_features);
  }
  std::ostringstream os;
  const auto& all = activation_names();
  for (size_t i = 0; i < all.size(); ++i) os << (i ? ", " : "") << all[i];
  RECHUB_FAIL("unknown activation '" << name << "'; valid names: " << os.str());
}

Tensor Activation::forward(const Tensor& x) {
  switch (kind_) {
    case Kind::relu:
      return ops::relu(x);
    case Kind::sigmoid:
      return ops::sigmoid(x);
    case Kind::tanh:
      return ops::tanh(x);
    case Kind::softmax:
      return ops::softmax(x, -1);
    case Kind::leaky_relu:
      return ops::leaky_relu(x, slope_);
    case Kind::identity:
      return x;
  }
  return x;
}

std::string Activation::type_name() const {
  switch (kind_) {
    case Kind::relu:
      return "ReLU";
    case Kind::sigmoid:
      return "Sigmoid";
    case Kind::tanh:
      return "Tanh";
    case Kind::softmax:
      return "Softmax";
    case Kind::leaky_relu:
      return "LeakyReLU";
    case Kind::identity:
      return "Identity";
  }
  return "Activation";
}

PReLU::PReLU(int64_t num_parameters, double init) {
  RECHUB_CHECK(num_parameters > 0, "PReLU: num_parameters must be positive, got " << num_parameters);
  weight_ = register_parameter("weight", full({num_parameters}, init));
}

Tensor PReLU::forward(const Tensor& x) { return ops::prelu(x, weight_); }

Dice::Dice(int64_t num_features, double eps, double momentum) : c_(num_features), eps_(eps), momentum_(momentum) {
  RECHUB_CHECK(num_features > 0, "Dice: num_features must be positive, got " << num_features);
  alpha_ = register_parameter("alpha", zeros({c_}));
  running_mean_ = register_buffer("running_mean", zeros({c_}));
  running_var_ = register_buffer("running_var", ones({c_}));
}

// f(s) = p s + (1 - p) alpha s = s (alpha + p (1 - alpha)), p = sigmoid(normalised s).
Tensor Dice::forward(const Tensor& x) {
  RECHUB_CHECK(x.defined() && x.dim() == 2 && x.size(1) == c_,
               describe() << " (num_features=" << c_ << "): expected input [N, " << c_ << "], got "
                          << (x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor")));
  RECHUB_CHECK(!is_training() || x.size(0) > 1,
               describe() << ": a batch of one in training mode has no batch statistics (input " << shape_str(x.shape())
                          << "; use eval() for inference)");
  Tensor s = ops::batch_norm(x, Tensor(), Tensor(), running_mean_, running_var_, is_training(), momentum_, eps_);
  Tensor p = ops::sigmoid(s);
  return ops::mul(x, ops::add(ops::mul(p, ops::rsub(1.0, alpha_)), alpha_));
}

}  // namespace rechub::nn
