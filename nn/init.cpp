#include "rechub/nn/init.h"

#include <cmath>

#include "rechub/core/autograd.h"

namespace rechub::nn::init {

namespace {
void assign(Tensor& t, const Tensor& values) {
  NoGradGuard ng;
  t.copy_(values.to(t.dtype()));  // copy_ bumps the version
}
void check_float(const Tensor& t, const char* fn) {
  RECHUB_CHECK(t.defined() && !t.is_sparse() && is_floating(t.dtype()),
               "init::" << fn << ": expected a dense floating-point tensor"
                        << (t.defined() && !t.name().empty() ? " ('" + t.name() + "')" : std::string()));
}
}  // namespace

std::pair<int64_t, int64_t> fans(const Tensor& t) {
  RECHUB_CHECK(t.defined() && t.dim() >= 2, "init: fan in and fan out need a tensor with at least 2 dimensions, got "
                                                << (t.defined() ? shape_str(t.shape()) : std::string("undefined"))
                                                << (t.defined() && !t.name().empty() ? " ('" + t.name() + "')" : ""));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "identity" || nl == "sigmoid") return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  RECHUB_FAIL("init::calculate_gain: unknown nonlinearity '"
              << nl << "' (expected linear, identity, sigmoid, tanh, relu, leaky_relu or selu)");
}

void uniform_(Tensor& t, double lo, double hi, Generator* gen) {
  check_float(t, "uniform_");
  assign(t, uniform(t.shape(), lo, hi, {.dtype = DType::f64}, gen));
}
void normal_(Tensor& t, double mean, double std, Generator* gen) {
  check_float(t, "normal_");
  RECHUB_CHECK(std >= 0, "init::normal_: std must be non-negative, got " << std);
  Tensor r = randn(t.shape(), {.dtype = DType::f64}, gen);
  double* p = r.data<double>();
  for (int64_t i = 0; i < r.numel(); ++i) p[i] = mean + std * p[i];
  assign(t, r);
}
void constant_(Tensor& t, double value) {
  RECHUB_CHECK(t.defined() && !t.is_sparse(), "init::constant_: expected a dense tensor");
  NoGradGuard ng;
  t.fill_(value);
}
void zeros_(Tensor& t) { constant_(t, 0.0); }
void ones_(Tensor& t) { constant_(t, 1.0); }

void xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  const auto [fi, fo] = fans(t);
  const double a = gain * std::sqrt(6.0 / static_cast<double>(fi + fo));
  uniform_(t, -a, a, gen);
}
void xavier_normal_(Tensor& t, double gain, Generator* gen) {
  const auto [fi, fo] = fans(t);
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fi + fo)), gen);
}

namespace {
double kaiming_std(const Tensor& t, double a, FanMode mode, const std::string& nl) {
  const auto [fi, fo] = fans(t);
  const int64_t fan = mode == FanMode::fan_in ? fi : fo;
  RECHUB_CHECK(fan > 0, "init::kaiming: fan of " << shape_str(t.shape()) << " is 0");
  return calculate_gain(nl, a) / std::sqrt(static_cast<double>(fan));
}
}  // namespace

void kaiming_uniform_(Tensor& t, double a, FanMode mode, const std::string& nl, Generator* gen) {
  const double bound = std::sqrt(3.0) * kaiming_std(t, a, mode, nl);
  uniform_(t, -bound, bound, gen);
}
void kaiming_normal_(Tensor& t, double a, FanMode mode, const std::string& nl, Generator* gen) {
  normal_(t, 0.0, kaiming_std(t, a, mode, nl), gen);
}

}  // namespace rechub::nn::init
