#pragma once
// Parameter initialisers, PyTorch's torch.nn.init: each fills a tensor in place (under no-grad,
// bumping its version) from a project Generator (the default one when none is given).
#include <cstdint>
#include <string>
#include <utility>

#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"

namespace rechub::nn::init {

enum class FanMode { fan_in, fan_out };

// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (a [out, in] weight
// has fan_in = in); needs at least 2 dimensions.
std::pair<int64_t, int64_t> fans(const Tensor& t);
// torch.nn.init.calculate_gain: "linear"/"identity"/"sigmoid" 1, "tanh" 5/3, "relu" sqrt(2),
// "leaky_relu" sqrt(2 / (1 + slope^2)) with slope `param`, "selu" 3/4.
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

void uniform_(Tensor& t, double lo, double hi, Generator* gen = nullptr);
void normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);
void constant_(Tensor& t, double value);
void zeros_(Tensor& t);
void ones_(Tensor& t);
// U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_normal_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a). Linear's default is
// kaiming_uniform_(w, sqrt(5)), which gives b = 1 / sqrt(fan_in).
void kaiming_uniform_(Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                      const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// N(0, std^2), std = gain / sqrt(fan).
void kaiming_normal_(Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                     const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);

}  // namespace rechub::nn::init
