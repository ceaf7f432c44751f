#pragma once
// Module: a named tree of parameters, buffers and child modules, as in PyTorch's nn.Module.
//
// Naming. A parameter registered as "weight" in a module registered as "1" in a module registered
// as "towers" is "towers.1.weight": named_parameters() walks the tree in registration order (own
// parameters first, then each child), exactly as PyTorch builds state_dict keys. Names are also
// written onto the tensors themselves (Tensor::name()) as soon as the tree is assembled, so an
// error message or an optimizer sees the full dotted name; a module's path() is its own prefix.
// A tensor registered twice (shared) is listed once, under its first name.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "rechub/core/tensor.h"

namespace rechub::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registers a trainable tensor: marks it requires_grad (detaching it if it has history) and
  // names it. Names are non-empty, contain no '.', and are unique within the module.
  Tensor& register_parameter(const std::string& name, Tensor t);
  // A tensor saved with the module but not trained (BatchNorm running statistics).
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    static_assert(std::is_base_of_v<Module, M>, "register_module: M must derive from rechub::nn::Module");
    add_child(name, std::static_pointer_cast<Module>(m));
    return m;
  }

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;  // "towers.1.layer0.weight", ...
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // Every descendant with its dotted path (pre-order, the module itself excluded).
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  // Looks up a parameter or buffer by dotted name; throws listing the known names.
  Tensor parameter(const std::string& dotted_name) const;
  Tensor buffer(const std::string& dotted_name) const;

  virtual void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // drops every parameter's gradient (PyTorch's set_to_none)

  // Moves every parameter and buffer of the tree to `device` IN PLACE (Tensor::move_to_): each
  // tensor keeps its identity (same TensorImpl, new storage), so handles held elsewhere (an
  // optimizer, a model's expert lists, shared embedding tables) follow. Gradients are dropped;
  // requires_grad and names stay. Build optimizers AFTER to(): an optimizer's state tensors are not
  // moved (Optimizer::step refuses state on another device than its parameter, naming both).
  // A no-op for tensors already there. Returns *this.
  Module& to(Device device);
  // The device of the tree's tensors (the first parameter's, else the first buffer's; cpu for a
  // tree without tensors).
  Device device() const;
  int64_t parameter_count() const;

  // Dotted path of this module in its tree ("" for a root); layers use it in error messages.
  const std::string& path() const { return path_; }
  // "Linear", "BatchNorm1d", ...: for messages.
  virtual std::string type_name() const { return "Module"; }
  // "Linear 'towers.1.layer0'" (or "Linear (root)"): the prefix of a layer's error messages.
  std::string describe() const;

 private:
  friend struct ModuleAccess;
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name, const char* what) const;
  void set_path(const std::string& path);
  std::string full_name(const std::string& local) const { return path_.empty() ? local : path_ + "." + local; }

  // deque: references returned by register_* stay valid as more are added.
  std::deque<std::pair<std::string, Tensor>> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  std::string path_;
};

// A module with one input and one output: layers, activations, Sequential, MLP.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

}  // namespace rechub::nn
