#pragma once
// Fused neural-network ops whose composed form would be slow or would allocate many temporaries:
// batch normalisation as one forward and one backward pass.
#include "rechub/core/autograd.h"
#include "rechub/core/tensor.h"

namespace rechub::ops {

// PyTorch's F.batch_norm for x [N, C] or [N, C, L], statistics per channel c over N (and L):
//   training: y = (x - mean_B) / sqrt(var_B + eps) * weight + bias with the batch mean and the
//             BIASED batch variance; running_mean/running_var (when defined) are updated in place as
//             r = (1 - momentum) r + momentum * s, with the UNBIASED variance var_B * M / (M - 1),
//             M = N * L. M = 1 in training is an error, as in PyTorch.
//   eval:     the same with running_mean/running_var in place of the batch statistics.
// weight and bias [C] are optional (undefined: 1 and 0). Gradients flow to x, weight and bias;
// the backward is hand-written (dx = w/sigma (g - mean(g) - x_hat mean(g x_hat)) in training).
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);

}  // namespace rechub::ops
