#pragma once
// Reverse-mode autograd on a dynamic tape.
//
// Every op that sees an input requiring grad records a Node: its inputs and a backward closure
// written beside the forward. Nodes carry a creation number, so decreasing creation order is a
// valid reverse topological order and the engine needs no recursion. `grad` is the primitive;
// `backward` accumulates into `.grad` of the leaves.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rechub/core/tensor.h"

namespace rechub {

// Backward closure: gets the gradient of the node's output and, for each input, whether a
// gradient is needed; returns one gradient per input (undefined where not needed or zero).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out, const std::vector<bool>& needs)>;

struct Node {
  uint64_t seq = 0;
  const char* name = "";
  std::vector<Tensor> inputs;
  std::vector<uint64_t> input_versions;  // storage versions when the op ran
  BackwardFn backward;
  bool released = false;
};

bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Called by op front-ends: if grad mode is on and any input requires grad, attach a node to
// `out` (which must be freshly created by the op) and mark it as requiring grad.
Tensor record(Tensor out, const char* name, std::vector<Tensor> inputs, BackwardFn fn);
bool any_requires_grad(std::initializer_list<const Tensor*> ts);

struct GradOptions {
  bool retain_graph = false;  // keep the saved tensors so a second pass can run
  bool allow_unused = false;  // an input unreachable from the outputs gives an undefined Tensor
};

// Gradients of sum_i <grad_outputs[i], outputs[i]> with respect to `inputs`, without touching
// any `.grad`. grad_outputs may be empty when every output has one element (then 1 is used).
// The backward pass records no graph: the gradients returned are constants (there are no
// higher-order gradients; torch's create_graph has no counterpart here).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, GradOptions opts = {});

// Accumulates d(loss)/d(leaf) into `.grad` of every leaf that requires grad.
void backward(const Tensor& loss, const Tensor& grad_output = {}, bool retain_graph = false);

// a + b for gradients (dense or row-sparse); either may be undefined.
Tensor accumulate_grad(const Tensor& a, const Tensor& b);

}  // namespace rechub
