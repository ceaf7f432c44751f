#pragma once
// Optimizers with PyTorch's update rules, parameter groups, row-sparse updates for embedding
// gradients, gradient clipping, and state export/import for checkpoints.
//
// Dense gradients: exactly torch.optim.SGD / Adam / AdamW / Adagrad (same formulas and operation
// order, in the parameter's dtype). Row-sparse gradients (EmbeddingCollection with sparse = true)
// update only the rows in the gradient:
//   Adam / AdamW  lazy Adam, torch.optim.SparseAdam's formula: the moments of untouched rows are
//                 left as they are; the step count (one per parameter, as SparseAdam keeps it) and
//                 the bias corrections advance on every step the parameter has a gradient. Weight
//                 decay (not in SparseAdam) applies to the touched rows only: Adam adds wd * p to
//                 their gradient, AdamW scales them by (1 - lr * wd).
//   Adagrad       torch's sparse Adagrad (accumulator and parameter updated on the touched rows);
//                 weight decay, which torch refuses for sparse gradients, adds wd * p on those rows.
//   SGD           p[rows] -= lr * (g + wd * p[rows]); with momentum the buffer rows are updated
//                 lazily (untouched rows keep their buffer; a row's first update takes d as torch's
//                 first step does when dampening is 0).
// Gradients with repeated rows are coalesced first (the update is non-linear).
//
// CUDA parameters (f32): the updates run as fused kernels (kernels/cuda/optim.h) with the same
// rules; state tensors live on the parameter's device. A row-sparse CUDA gradient is taken to hold
// unique rows, as one CUDA embedding backward yields (checking would read device memory); only a
// gradient with more rows than the table is coalesced (on the device). Code that sums row-sparse
// gradients itself (the task balancers) coalesces with coalesce_sparse_grad. Two backward passes
// into .grad without zero_grad() on a CUDA sparse table are NOT supported (duplicate rows would be
// updated as if unique, except in the case above). Build the optimizer after Module::to(): state
// on another device than its parameter is refused by step(). state_tensors() returns CPU copies;
// load_state() copies onto each parameter's device.
//
// Every update runs under NoGradGuard, in place, and bumps the parameter's version.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rechub/core/tensor.h"
#include "rechub/nn/module.h"

namespace rechub::nn {

struct ParamGroup {
  std::vector<Tensor> params = {};
  double lr = 1e-3;
  double weight_decay = 0;
  std::string name = {};
};

// Parameter identity -> dotted name, for state export (see Optimizer::state_tensors).
using ParamNames = std::unordered_map<const TensorImpl*, std::string>;
ParamNames param_names(const Module& m);

class Optimizer {
 public:
  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
  struct ParamState {
    int64_t step = 0;                       // updates applied (Adam, AdamW, Adagrad)
    std::map<std::string, Tensor> tensors;  // "exp_avg", "exp_avg_sq", "sum", "momentum_buffer"
  };

  // Parameters must be distinct leaves that require grad, dense and floating point; lr and
  // weight_decay non-negative.
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string kind() const = 0;  // "sgd", "adam", "adamw", "adagrad"

  // Updates every parameter that has a gradient (parameters without one are skipped, as in PyTorch).
  void step();
  void zero_grad();  // drops the gradients (set_to_none)

  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t i) const;
  double lr(size_t group) const;
  void set_lr(size_t group, double lr);
  void set_lr(double lr);  // every group
  // The state of parameter p (null before its first update).
  const ParamState* state(const Tensor& p) const;

  // ---- checkpoints ----
  // State as tensors named "<param name>.<key>", key "exp_avg", ..., and "<param name>.step" (i64
  // scalar) for the kinds that count steps. Names come from `names`, else from Tensor::name()
  // (set by Module registration); an unnamed or twice-named parameter is an error.
  NamedTensors state_tensors(const ParamNames* names = nullptr) const;
  // {"kind", "options": {...}, "groups": [{"name", "lr", "weight_decay", "params": [names]}]}
  nlohmann::json config_json(const ParamNames* names = nullptr) const;
  // Every reason `load_state` would refuse these (empty when they fit); changes nothing.
  std::vector<std::string> check_state(const NamedTensors& state, const nlohmann::json& config,
                                       const ParamNames* names = nullptr) const;
  // Replaces the state (copies) and restores each group's lr and weight_decay; options given to
  // the constructor (betas, momentum, ...) stay. Throws listing every problem before changing anything.
  void load_state(const NamedTensors& state, const nlohmann::json& config, const ParamNames* names = nullptr);

 protected:
  // One parameter's update. `grad` is dense, or row-sparse with unique sorted rows.
  virtual void update(Tensor& p, const Tensor& grad, const ParamGroup& g, ParamState& st) = 0;
  virtual std::vector<std::string> state_keys() const = 0;
  virtual bool counts_steps() const { return true; }
  virtual nlohmann::json options_json() const = 0;

 private:
  std::vector<std::string> resolve_names(const ParamNames* names) const;

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;
};

struct SGDOptions {
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;  // needs momentum > 0 and dampening 0
};
// d = g + wd p; buf = d on the first step, then momentum buf + (1 - dampening) d;
// d = nesterov ? d + momentum buf : buf; p -= lr d.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions opts = {});
  std::string kind() const override { return "sgd"; }
  const SGDOptions& options() const { return opts_; }

 protected:
  void update(Tensor& p, const Tensor& grad, const ParamGroup& g, ParamState& st) override;
  std::vector<std::string> state_keys() const override;
  bool counts_steps() const override { return false; }
  nlohmann::json options_json() const override;

 private:
  SGDOptions opts_;
};

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};
// torch.optim.Adam: g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions opts = {});
  std::string kind() const override { return decoupled_ ? "adamw" : "adam"; }
  const AdamOptions& options() const { return opts_; }

 protected:
  Adam(std::vector<ParamGroup> groups, AdamOptions opts, bool decoupled);
  void update(Tensor& p, const Tensor& grad, const ParamGroup& g, ParamState& st) override;
  std::vector<std::string> state_keys() const override { return {"exp_avg", "exp_avg_sq"}; }
  nlohmann::json options_json() const override;

 private:
  AdamOptions opts_;
  bool decoupled_;
};

// torch.optim.AdamW: p *= 1 - lr wd, then Adam without weight decay in the gradient.
// (The group's weight_decay applies; PyTorch's default for AdamW is 1e-2, ours is the group's.)
class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, AdamOptions opts = {}) : Adam(std::move(groups), opts, true) {}
};

struct AdagradOptions {
  double lr_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};
// torch.optim.Adagrad: g += wd p; clr = lr / (1 + (t - 1) lr_decay); sum += g^2;
// p -= clr g / (sqrt(sum) + eps).
class Adagrad : public Optimizer {
 public:
  explicit Adagrad(std::vector<ParamGroup> groups, AdagradOptions opts = {});
  std::string kind() const override { return "adagrad"; }
  const AdagradOptions& options() const { return opts_; }

 protected:
  void update(Tensor& p, const Tensor& grad, const ParamGroup& g, ParamState& st) override;
  std::vector<std::string> state_keys() const override { return {"sum"}; }
  nlohmann::json options_json() const override;

 private:
  AdagradOptions opts_;
};

// Scales the gradients of `params` in place so that their global norm (all gradients as one
// vector; row-sparse ones coalesced first) is at most max_norm, exactly like
// torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), capped at 1). Returns the
// norm before clipping. norm_type is p > 0 or INFINITY. Parameters without a gradient are skipped.
// On CUDA gradients the norm is accumulated on the device and read back once (one synchronisation).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

// A row-sparse gradient with duplicate rows summed and rows sorted, on its own device (CUDA: a sort
// on the device, reading back the unique count). Dense tensors are returned as they are.
Tensor coalesce_sparse_grad(const Tensor& g);

}  // namespace rechub::nn
