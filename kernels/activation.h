#pragma once
// The activations of expert blocks, the one activation enum of rechub: the kernels switch on it
// (kernels/experts.h), core names it ops::Activation (core/ops_fused.h) for the ops and the models.
#include <cstdint>

namespace rechub::kernels {

enum class Activation : uint8_t { identity, relu, leaky_relu, sigmoid, tanh };
// PyTorch's default negative slope (nn.LeakyReLU).
constexpr double kLeakyReluSlope = 0.01;

}  // namespace rechub::kernels
