#pragma once
// Fused ops of the multi-task models, each with its backward written by hand beside its forward:
//
//   experts_forward  E expert MLPs reading the same input, as one GEMM for the first layer and one
//                    GEMM per expert for later layers, with bias, BatchNorm, activation and
//                    dropout applied in one pass per layer over all experts;
//   gate_mix         gate logits x Wg^T + bg, softmax over the experts, and the gate-weighted sum
//                    of the expert outputs, as one op.
//
// Layout: E experts of width h produce one row-major [B, E*h] tensor, expert e in columns
// [e*h, (e+1)*h). That is what the first-layer GEMM against the stacked weights [E*h, in]
// produces without any copy, later per-expert GEMMs read and write column blocks through the
// leading dimension, BatchNorm and bias see one wide matrix with per-column parameters, and
// gate_mix reads each sample's E*h expert values as one contiguous row. ([E, B, h] would need a
// transpose after the first GEMM and scatter each sample over E strided rows in gate_mix.)
//
// Parameters stay per expert, each exactly one PyTorch nn.Linear / nn.BatchNorm1d tensor, so
// checkpoints and parity tests map 1:1 to per-expert PyTorch modules. When the first-layer weights
// of the E experts lie back to back in one storage the stacked [E*h, in] weight is a view;
// otherwise it is gathered (E*h*in elements, small against the GEMM).
//
// Devices: CPU (f32, f64) and CUDA (f32), one op code (core/ops_fused.cpp) over the kernel entry
// points of kernels/experts.h (kernels/cpu/experts.cpp, kernels/cuda/experts.cu). All parameters
// must live on the input's device.
//
// The `_unfused` variants compose the same computation from basic ops (linear, mean, softmax, ...):
// the reference the fused ops are tested against, and the `.fused = false` path of the models.
#include <cstdint>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"
#include "rechub/kernels/activation.h"

namespace rechub::ops {

// The activations of expert blocks (the kernels' enum, kernels/activation.h).
using Activation = kernels::Activation;
// "relu", "leaky_relu" (slope 0.01), "sigmoid", "tanh", "linear" (also "identity", "none");
// anything else throws rechub::Error naming `what` (e.g. "MMoE.expert_activation").
Activation activation_from_name(const std::string& name, const std::string& what = "activation");
const char* activation_name(Activation a);
// The activation with basic ops (differentiable).
Tensor activate(const Tensor& x, Activation a);

// One layer of an expert block: E experts' parameters, one tensor per expert.
struct ExpertLayerParams {
  std::vector<Tensor> weight{};  // [h_out, h_in] each (nn.Linear.weight)
  std::vector<Tensor> bias{};    // [h_out] each, or empty: no bias
  // nn.BatchNorm1d(h_out) per expert, or all four empty: no BatchNorm in this layer.
  std::vector<Tensor> bn_weight{}, bn_bias{};         // affine gamma, beta (parameters)
  std::vector<Tensor> running_mean{}, running_var{};  // buffers, updated in place in training
};

struct ExpertsOptions {
  Activation activation = Activation::relu;
  // Training: BatchNorm uses batch statistics and updates the running ones (PyTorch's momentum
  // rule, unbiased variance); dropout is applied. Eval: running statistics, no dropout.
  bool training = true;
  double bn_momentum = 0.1;
  double bn_eps = 1e-5;
  double dropout = 0.0;            // probability of zeroing an activation (training only)
  Generator* generator = nullptr;  // for dropout masks; the default generator when null
};

// Per expert e and layer k: a = dropout(act(BN(a_prev W_k,e^T + b_k,e))), a_0 = x [B, in].
// Returns [B, E*h_last] (expert e in columns [e*h_last, (e+1)*h_last)).
// Dropout masks are drawn layer by layer, expert by expert, row-major within an expert, so the
// fused and the unfused path draw the same masks from the same generator state.
Tensor experts_forward(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& opts = {});

// While one lives on a thread, experts_forward there in eval mode without autograd (on the CPU)
// keeps, per expert layer, what depends on its parameters only between calls instead of deriving it
// on every call: the experts' weights stacked and transposed so the GEMM reads them in place (copying
// and packing them was most of a batch-1 MMoE forward), and BatchNorm's folded shift and 1/std. The
// result has the same bits as without the scope. What is kept is used again only while every source tensor is
// the same one, in the same storage, with the same version: Tensor's in-place ops (copy_, fill_,
// an optimizer step, load_checkpoint) bump it, but a write through a raw data pointer does not, so
// hold one only where the weights are not written that way (Predictor::predict does).
class ConstantWeightsScope {
 public:
  ConstantWeightsScope();
  ~ConstantWeightsScope();
  ConstantWeightsScope(const ConstantWeightsScope&) = delete;
  ConstantWeightsScope& operator=(const ConstantWeightsScope&) = delete;
  static bool active();

 private:
  bool was_;
};
Tensor experts_forward_unfused(const Tensor& x, const std::vector<ExpertLayerParams>& layers,
                               const ExpertsOptions& opts = {});

struct GateMixOutput {
  Tensor mixed{};  // [B, h]: sum_e g[b, e] * expert_e[b, :]
  Tensor gates{};  // [B, E]: the softmax weights (no history; for inspection)
};
// g = softmax(x W^T + b) over E experts; W [E, in], b [E] (may be undefined). `experts` are
// blocks [B, E_i * expert_dim] whose experts are numbered in order (sum of E_i = E): a PLE task
// gate passes its task's experts then the shared ones, without concatenating them.
GateMixOutput gate_mix(const Tensor& x, const Tensor& weight, const Tensor& bias, const std::vector<Tensor>& experts,
                       int64_t expert_dim);
GateMixOutput gate_mix_unfused(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const std::vector<Tensor>& experts, int64_t expert_dim);

}  // namespace rechub::ops
