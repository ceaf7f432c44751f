#pragma once
// Internal to core/ops_fused.cpp (the ops, their CPU path) and core/ops_fused_cuda.cpp (their
// CUDA path): the checks, the dropout masks and the autograd bookkeeping both paths share.
#include <cstdint>
#include <vector>

#include "rechub/core/ops_fused.h"

namespace rechub::ops::fused_detail {

// Shapes of an expert block, as check_block validated them.
struct BlockDims {
  int64_t B = 0, in = 0, E = 0;
  std::vector<int64_t> h;      // width of each layer
  std::vector<bool> bias, bn;  // per layer: has a bias, has BatchNorm
};

// Validates x and every parameter (defined, dense, x's dtype and device, shapes) and the options.
BlockDims check_block(const char* op, const Tensor& x, const std::vector<ExpertLayerParams>& layers,
                      const ExpertsOptions& o);

// Dropout masks for all experts of one layer as a CPU tensor [B, E*h] of 0 and 1/(1-p), drawn
// expert by expert (row-major within an expert) so that the unfused path, which draws [B, h] per
// expert, and the CUDA path, which copies this mask to the device, see the same values.
template <class T>
Tensor dropout_mask(int64_t B, int64_t E, int64_t h, double p, Generator& gen) {
  Tensor m = empty({B, E * h}, {.dtype = dtype_of<T>::value});
  T* pm = m.template data<T>();
  const T keep = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < h; ++c) pm[b * E * h + e * h + c] = gen.uniform() < p ? T(0) : keep;
  return m;
}

// The inputs of the block's autograd node: x, then per layer the E weights, the E biases (if
// any), the E BatchNorm gammas and the E betas (if BatchNorm).
std::vector<Tensor> block_inputs(const Tensor& x, const std::vector<ExpertLayerParams>& layers);

// Where each layer's parameters sit among those inputs, and which gradients the backward needs.
struct BlockGradPlan {
  BlockGradPlan(const BlockDims& d, size_t n_inputs, const std::vector<bool>& need);
  bool any(size_t lo, size_t hi) const;  // some input in [lo, hi) needs a gradient
  size_t weight_at(int64_t k) const { return base[k]; }
  size_t bias_at(int64_t k) const { return base[k] + E; }
  size_t gamma_at(int64_t k) const { return base[k] + E * (has_bias[k] ? 2 : 1); }
  size_t beta_at(int64_t k) const { return gamma_at(k) + E; }

  const std::vector<bool>& need;
  size_t E;
  std::vector<bool> has_bias;
  std::vector<size_t> base;  // input index of layer k's first weight
  std::vector<bool> below;   // x or a parameter of layers 0..k needs a gradient
};

#ifdef RECHUB_WITH_CUDA
// The CUDA paths (core/ops_fused_cuda.cpp), called by experts_forward and gate_mix after their
// checks when the input lives on a CUDA device (f32 only).
Tensor experts_forward_cuda(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& o,
                            const BlockDims& d);
GateMixOutput gate_mix_cuda(const Tensor& x, const Tensor& w, const Tensor& b, const std::vector<Tensor>& experts,
                            int64_t h, const std::vector<int64_t>& counts);
#endif

}  // namespace rechub::ops::fused_detail
