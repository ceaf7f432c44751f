#include "rechub/nn/module.h"

#include <algorithm>
#include <sstream>
#include <unordered_set>

#include "rechub/core/autograd.h"
#include "rechub/core/device.h"

namespace rechub::nn {

namespace {

template <class Get>
void collect_named(const Module& m, const std::string& prefix, Get get, std::unordered_set<const TensorImpl*>& seen,
                   std::vector<std::pair<std::string, Tensor>>& out) {
  for (const auto& [name, t] : get(m))
    if (seen.insert(t.impl()).second) out.emplace_back(prefix.empty() ? name : prefix + "." + name, t);
  for (const auto& [name, child] : m.named_children())
    collect_named(*child, prefix.empty() ? name : prefix + "." + name, get, seen, out);
}

std::string list_names(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i].first;
  return v.empty() ? std::string("none") : os.str();
}

}  // namespace

// Own tensors, exposed to the walkers above without making them public.
struct ModuleAccess {
  static const std::deque<std::pair<std::string, Tensor>>& params(const Module& m);
  static const std::deque<std::pair<std::string, Tensor>>& buffers(const Module& m);
};

void Module::check_new_name(const std::string& name, const char* what) const {
  RECHUB_CHECK(!name.empty(), describe() << ": a " << what << " needs a non-empty name");
  RECHUB_CHECK(name.find('.') == std::string::npos,
               describe() << ": " << what << " name '" << name << "' must not contain '.' (dots separate modules)");
  auto taken = [&](const auto& v) {
    return std::any_of(v.begin(), v.end(), [&](const auto& p) { return p.first == name; });
  };
  RECHUB_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_),
               describe() << ": the name '" << name << "' is already used by a parameter, buffer or child module");
}

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name, "parameter");
  RECHUB_CHECK(t.defined(), describe() << ": parameter '" << name << "' is an undefined tensor");
  RECHUB_CHECK(!t.is_sparse(), describe() << ": parameter '" << name << "' must be dense");
  RECHUB_CHECK(is_floating(t.dtype()),
               describe() << ": parameter '" << name << "' must be floating point, got " << dtype_name(t.dtype()));
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(true);
  t.set_name(full_name(name));
  params_.emplace_back(name, t);
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name, "buffer");
  RECHUB_CHECK(t.defined() && !t.is_sparse(), describe() << ": buffer '" << name << "' must be a defined dense tensor");
  if (!t.is_leaf()) t = t.detach();
  t.set_name(full_name(name));
  buffers_.emplace_back(name, t);
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name, "child module");
  RECHUB_CHECK(m != nullptr, describe() << ": child module '" << name << "' is null");
  RECHUB_CHECK(m.get() != this, describe() << ": a module cannot be its own child");
  m->set_path(full_name(name));
  children_.emplace_back(name, std::move(m));
}

void Module::set_path(const std::string& path) {
  path_ = path;
  for (auto& [name, t] : params_) t.set_name(full_name(name));
  for (auto& [name, t] : buffers_) t.set_name(full_name(name));
  for (auto& [name, c] : children_) c->set_path(full_name(name));
}

const std::deque<std::pair<std::string, Tensor>>& ModuleAccess::params(const Module& m) { return m.params_; }
const std::deque<std::pair<std::string, Tensor>>& ModuleAccess::buffers(const Module& m) { return m.buffers_; }

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::unordered_set<const TensorImpl*> seen;
  collect_named(
      *this, "", [](const Module& m) -> const auto& { return ModuleAccess::params(m); }, seen, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::unordered_set<const TensorImpl*> seen;
  collect_named(
      *this, "", [](const Module& m) -> const auto& { return ModuleAccess::buffers(m); }, seen, out);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const auto& [name, c] : children_) {
    out.emplace_back(name, c);
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(name + "." + sub, m);
  }
  return out;
}

Tensor Module::parameter(const std::string& dotted_name) const {
  const auto all = named_parameters();
  for (const auto& [n, t] : all)
    if (n == dotted_name) return t;
  RECHUB_FAIL(describe() << ": no parameter named '" << dotted_name << "'; parameters: " << list_names(all));
}

Tensor Module::buffer(const std::string& dotted_name) const {
  const auto all = named_buffers();
  for (const auto& [n, t] : all)
    if (n == dotted_name) return t;
  RECHUB_FAIL(describe() << ": no buffer named '" << dotted_name << "'; buffers: " << list_names(all));
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

Module& Module::to(Device device) {
  if (device.is_cuda()) {
    const int n = cuda_device_count();  // core/device.h: 0 without the CUDA backend
    RECHUB_CHECK(n > 0, describe() << ": cannot move to " << device.str()
                                   << ": this build has no CUDA backend or no CUDA device is visible");
    RECHUB_CHECK(device.index >= 0 && device.index < n,
                 describe() << ": cannot move to " << device.str() << ": only " << n << " CUDA device(s) are visible");
  }
  NoGradGuard ng;
  for (auto& [name, t] : named_parameters()) {
    Tensor p = t;
    p.zero_grad();
    p.move_to_(device);
  }
  for (auto& [name, t] : named_buffers()) {
    Tensor b = t;
    b.move_to_(device);
  }
  return *this;
}

Device Module::device() const {
  const auto ps = named_parameters();
  if (!ps.empty()) return ps.front().second.device();
  const auto bs = named_buffers();
  if (!bs.empty()) return bs.front().second.device();
  return Device::cpu();
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

std::string Module::describe() const {
  return type_name() + (path_.empty() ? std::string(" (root)") : " '" + path_ + "'");
}

}  // namespace rechub::nn
