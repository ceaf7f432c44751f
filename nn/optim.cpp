// Optimizer base: parameter groups, the step loop, state export/import; gradient clipping.
#include "rechub/nn/optim.h"

#include <cmath>
#include <set>
#include <sstream>
#include <unordered_set>

#include "rechub/core/autograd.h"
#include "rechub/core/dispatch.h"
#include "rechub/core/ops_optim.h"

namespace rechub::nn {

ParamNames param_names(const Module& m) {
  ParamNames n;
  for (const auto& [name, t] : m.named_parameters()) n.emplace(t.impl(), name);
  return n;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  RECHUB_CHECK(!groups_.empty(), "optimizer: no parameter groups given");
  std::unordered_set<const TensorImpl*> seen;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const std::string gname = "group " + std::to_string(gi) + (g.name.empty() ? "" : " ('" + g.name + "')");
    RECHUB_CHECK(!g.params.empty(), "optimizer: " << gname << " has no parameters");
    RECHUB_CHECK(g.lr >= 0 && std::isfinite(g.lr), "optimizer: " << gname << ": invalid learning rate " << g.lr);
    RECHUB_CHECK(g.weight_decay >= 0 && std::isfinite(g.weight_decay),
                 "optimizer: " << gname << ": invalid weight_decay " << g.weight_decay);
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      RECHUB_CHECK(p.defined(), "optimizer: " << gname << ", parameter " << i << " is undefined");
      const std::string pn = p.name().empty() ? "parameter " + std::to_string(i) : "parameter '" + p.name() + "'";
      RECHUB_CHECK(p.is_leaf() && p.requires_grad(),
                   "optimizer: " << gname << ", " << pn << " must be a leaf that requires grad");
      RECHUB_CHECK(!p.is_sparse() && is_floating(p.dtype()),
                   "optimizer: " << gname << ", " << pn << " must be a dense floating-point tensor");
      RECHUB_CHECK(seen.insert(p.impl()).second,
                   "optimizer: " << pn << " appears more than once (in one group or in several groups)");
    }
  }
  state_.resize(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) state_[gi].resize(groups_[gi].params.size());
}

const ParamGroup& Optimizer::group(size_t i) const {
  RECHUB_CHECK(i < groups_.size(), "optimizer: group " << i << " does not exist (" << groups_.size() << " groups)");
  return groups_[i];
}
double Optimizer::lr(size_t i) const { return group(i).lr; }
void Optimizer::set_lr(size_t i, double lr) {
  group(i);
  RECHUB_CHECK(lr >= 0 && std::isfinite(lr), "optimizer: invalid learning rate " << lr << " for group " << i);
  groups_[i].lr = lr;
}
void Optimizer::set_lr(double lr) {
  for (size_t i = 0; i < groups_.size(); ++i) set_lr(i, lr);
}

const Optimizer::ParamState* Optimizer::state(const Tensor& p) const {
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    for (size_t i = 0; i < groups_[gi].params.size(); ++i)
      if (groups_[gi].params[i].impl() == p.impl()) {
        const ParamState& s = state_[gi][i];
        return s.step == 0 && s.tensors.empty() ? nullptr : &s;
      }
  return nullptr;
}

namespace {
// The row-sparse gradient `g` of `p` with sorted unique rows, as the update rules need it: on the
// CPU coalesced (coalesce returns g itself when its rows already are); on CUDA the embedding
// backward's rows are trusted (checking would read device memory) unless there are more of them
// than the table has rows, which only accumulated gradients produce.
Tensor with_unique_rows(const Tensor& g, const Tensor& p) {
  if (g.device().is_cuda()) return g.sparse_indices().numel() > p.size(0) ? ops::coalesce_on_device(g) : g;
  return g.coalesce();
}
}  // namespace

void Optimizer::step() {
  NoGradGuard ng;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    ParamGroup& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i) {
      Tensor& p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      RECHUB_CHECK(grad.shape() == p.shape() && grad.dtype() == p.dtype(),
                   "optimizer: the gradient of '" << p.name() << "' is " << shape_str(grad.shape()) << " "
                                                  << dtype_name(grad.dtype()) << " but the parameter is "
                                                  << shape_str(p.shape()) << " " << dtype_name(p.dtype()));
      const Device dev = p.device();
      RECHUB_CHECK(grad.device() == dev, "optimizer: parameter '" << p.name() << "' is on " << dev.str()
                                                                  << " but its gradient is on " << grad.device().str());
      for (const auto& [key, t] : state_[gi][i].tensors)
        RECHUB_CHECK(t.device() == dev, "optimizer: the '" << key << "' state of parameter '" << p.name() << "' is on "
                                                           << t.device().str() << " but the parameter is on "
                                                           << dev.str()
                                                           << "; move the model (Module::to) before building the "
                                                              "optimizer, or load the optimizer state after moving");
      if (dev.is_cuda()) {
        RECHUB_CHECK(p.dtype() == DType::f32, "optimizer: parameter '" << p.name() << "' on " << dev.str() << " is "
                                                                       << dtype_name(p.dtype())
                                                                       << "; CUDA optimizer updates support f32 only");
      }
      if (grad.is_sparse()) grad = with_unique_rows(grad, p);
      update(p, grad, g, state_[gi][i]);
      p.bump_version();
    }
  }
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

// ---- state export / import ----------------------------------------------------------------------

std::vector<std::string> Optimizer::resolve_names(const ParamNames* names) const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      const Tensor& p = groups_[gi].params[i];
      std::string n = p.name();
      if (names) {
        auto it = names->find(p.impl());
        RECHUB_CHECK(it != names->end(), "optimizer: parameter "
                                             << i << " of group " << gi << (n.empty() ? "" : " ('" + n + "')")
                                             << " is not a parameter of the model being saved/loaded");
        n = it->second;
      }
      RECHUB_CHECK(!n.empty(), "optimizer: parameter " << i << " of group " << gi
                                                       << " has no name; register it in a Module or name it");
      RECHUB_CHECK(seen.insert(n).second, "optimizer: two parameters are both named '" << n << "'");
      out.push_back(n);
    }
  return out;
}

Optimizer::NamedTensors Optimizer::state_tensors(const ParamNames* names) const {
  const auto pn = resolve_names(names);
  NamedTensors out;
  size_t k = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    for (size_t i = 0; i < groups_[gi].params.size(); ++i, ++k) {
      const ParamState& s = state_[gi][i];
      if (s.step == 0 && s.tensors.empty()) continue;
      // CPU copies: a checkpoint writes host memory (and the caller may keep them).
      for (const auto& [key, t] : s.tensors)
        out.emplace_back(pn[k] + "." + key, t.device().is_cpu() ? t : t.to(Device::cpu()));
      if (counts_steps()) out.emplace_back(pn[k] + ".step", from_vector(std::vector<int64_t>{s.step}, {}));
    }
  return out;
}

nlohmann::json Optimizer::config_json(const ParamNames* names) const {
  const auto pn = resolve_names(names);
  nlohmann::json j;
  j["kind"] = kind();
  j["options"] = options_json();
  j["groups"] = nlohmann::json::array();
  size_t k = 0;
  for (const auto& g : groups_) {
    nlohmann::json jg;
    jg["name"] = g.name;
    jg["lr"] = g.lr;
    jg["weight_decay"] = g.weight_decay;
    jg["params"] = nlohmann::json::array();
    for (size_t i = 0; i < g.params.size(); ++i) jg["params"].push_back(pn[k++]);
    j["groups"].push_back(jg);
  }
  return j;
}

std::vector<std::string> Optimizer::check_state(const NamedTensors& state, const nlohmann::json& config,
                                                const ParamNames* names) const {
  std::vector<std::string> problems;
  const auto pn = resolve_names(names);
  std::map<std::string, size_t> flat;  // name -> flat index
  std::vector<const Tensor*> params;
  for (const auto& g : groups_)
    for (const auto& p : g.params) params.push_back(&p);
  for (size_t k = 0; k < pn.size(); ++k) flat[pn[k]] = k;

  // Config: kind and groups.
  if (!config.is_object() || !config.contains("kind") || !config["kind"].is_string()) {
    problems.push_back("optimizer record is missing or malformed (no \"kind\")");
  } else {
    if (config["kind"].get<std::string>() != kind())
      problems.push_back("optimizer kind: the checkpoint holds '" + config["kind"].get<std::string>() +
                         "' state but the optimizer is '" + kind() + "'");
    const auto& jg = config.contains("groups") ? config["groups"] : nlohmann::json();
    if (!jg.is_array() || jg.size() != groups_.size()) {
      problems.push_back("optimizer groups: the checkpoint has " + (jg.is_array() ? std::to_string(jg.size()) : "no") +
                         " parameter groups, the optimizer " + std::to_string(groups_.size()));
    } else {
      size_t k = 0;
      for (size_t gi = 0; gi < groups_.size(); ++gi) {
        const auto& g = jg[gi];
        const bool ok = g.is_object() && g.contains("lr") && g["lr"].is_number() && g.contains("weight_decay") &&
                        g["weight_decay"].is_number() && g.contains("params") && g["params"].is_array();
        if (!ok) {
          problems.push_back("optimizer group " + std::to_string(gi) +
                             " is malformed (needs lr, weight_decay, params)");
          k += groups_[gi].params.size();
          continue;
        }
        std::vector<std::string> mine(pn.begin() + k, pn.begin() + k + groups_[gi].params.size());
        k += groups_[gi].params.size();
        std::vector<std::string> theirs;
        for (const auto& n : g["params"]) theirs.push_back(n.is_string() ? n.get<std::string>() : "<not a string>");
        if (mine != theirs) {
          std::ostringstream os;
          os << "optimizer group " << gi << ": the checkpoint's parameters [";
          for (size_t i = 0; i < theirs.size(); ++i) os << (i ? ", " : "") << theirs[i];
          os << "] differ from the optimizer's [";
          for (size_t i = 0; i < mine.size(); ++i) os << (i ? ", " : "") << mine[i];
          os << "]";
          problems.push_back(os.str());
        }
      }
    }
  }

  // State tensors: "<param>.<key>".
  const auto keys = state_keys();
  std::map<std::string, std::set<std::string>> present;
  for (const auto& [full, t] : state) {
    const auto dot = full.rfind('.');
    const std::string pname = dot == std::string::npos ? "" : full.substr(0, dot);
    const std::string key = dot == std::string::npos ? full : full.substr(dot + 1);
    auto it = flat.find(pname);
    if (it == flat.end()) {
      problems.push_back("optimizer state '" + full + "' belongs to no parameter of the optimizer");
      continue;
    }
    const Tensor& p = *params[it->second];
    if (key == "step" && counts_steps()) {
      if (t.dtype() != DType::i64 || t.numel() != 1)
        problems.push_back("optimizer state '" + full + "': expected an i64 scalar, got " + shape_str(t.shape()) + " " +
                           dtype_name(t.dtype()));
      else if (t.to_vector<int64_t>()[0] < 0)
        problems.push_back("optimizer state '" + full + "': negative step count");
    } else if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
      if (t.shape() != p.shape() || t.dtype() != p.dtype())
        problems.push_back("optimizer state '" + full + "': shape/dtype " + shape_str(t.shape()) + " " +
                           dtype_name(t.dtype()) + " does not match the parameter's " + shape_str(p.shape()) + " " +
                           dtype_name(p.dtype()));
    } else {
      problems.push_back("optimizer state '" + full + "': '" + key + "' is not a state of a " + kind() + " optimizer");
      continue;
    }
    present[pname].insert(key);
  }
  // All of a parameter's state or none of it.
  std::set<std::string> expected(keys.begin(), keys.end());
  if (counts_steps()) expected.insert("step");
  for (const auto& [pname, got] : present)
    for (const auto& k : expected)
      if (!got.count(k)) problems.push_back("optimizer state '" + pname + "." + k + "' is missing");
  return problems;
}

void Optimizer::load_state(const NamedTensors& state, const nlohmann::json& config, const ParamNames* names) {
  const auto problems = check_state(state, config, names);
  if (!problems.empty()) {
    std::ostringstream os;
    os << "optimizer: cannot load the state (" << problems.size() << " problem" << (problems.size() > 1 ? "s" : "")
       << "); nothing was changed:";
    for (const auto& p : problems) os << "\n  - " << p;
    RECHUB_FAIL(os.str());
  }
  const auto pn = resolve_names(names);
  std::map<std::string, Device> param_device;
  {
    size_t k = 0;
    for (const auto& g : groups_)
      for (const auto& p : g.params) param_device.emplace(pn[k++], p.device());
  }
  std::map<std::string, ParamState> fresh;
  for (const auto& [full, t] : state) {
    const auto dot = full.rfind('.');
    const std::string pname = full.substr(0, dot), key = full.substr(dot + 1);
    ParamState& s = fresh[pname];
    if (key == "step") {
      s.step = t.to_vector<int64_t>()[0];
    } else {
      // A copy on the parameter's device (the checkpoint's tensors are on the CPU).
      const Device d = param_device.at(pname);
      s.tensors[key] = t.device() == d ? t.clone() : t.to(d);
    }
  }
  size_t k = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    groups_[gi].lr = config["groups"][gi]["lr"].get<double>();
    groups_[gi].weight_decay = config["groups"][gi]["weight_decay"].get<double>();
    for (size_t i = 0; i < groups_[gi].params.size(); ++i, ++k) {
      auto it = fresh.find(pn[k]);
      state_[gi][i] = it == fresh.end() ? ParamState{} : it->second;
    }
  }
}

Tensor coalesce_sparse_grad(const Tensor& g) {
  if (!g.defined() || !g.is_sparse()) return g;
  NoGradGuard ng;
  return g.device().is_cuda() ? ops::coalesce_on_device(g) : g.coalesce();
}

// ---- gradient clipping ----------------------------------------------------------------------------

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  RECHUB_CHECK(norm_type > 0, "clip_grad_norm: norm_type must be positive or INFINITY, got " << norm_type);
  RECHUB_CHECK(max_norm >= 0, "clip_grad_norm: max_norm must be non-negative, got " << max_norm);
  NoGradGuard ng;
  std::vector<Tensor> grads;  // dense tensors or coalesced sparse values, one per parameter
  for (const Tensor& p : params) {
    if (!p.defined()) continue;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.is_sparse()) {
      const Tensor u = with_unique_rows(g, p);
      if (u.impl() != g.impl()) {
        g = u;
        Tensor(p).set_grad(g);
      }
      grads.push_back(g.sparse_values());
    } else {
      grads.push_back(g);
    }
  }
  const bool inf = std::isinf(norm_type);
  double acc = 0.0;  // sum of |g|^p (or max |g|), accumulated in double
  // CUDA gradients: accumulated on their device into one double, read back once.
  std::vector<Tensor> on_device;
  for (const Tensor& g : grads)
    if (g.device().is_cuda()) on_device.push_back(g);
  if (!on_device.empty()) {
    const double a = ops::grad_norm_on_device(on_device, norm_type);
    acc = inf ? std::max(acc, a) : acc + a;
  }
  for (const Tensor& g : grads) {
    if (g.device().is_cuda()) continue;
    RECHUB_FLOAT_DISPATCH(g.dtype(), "clip_grad_norm", {
      const scalar_t* d = g.data<scalar_t>();
      for (int64_t i = 0; i < g.numel(); ++i) {
        const double a = std::abs(static_cast<double>(d[i]));
        if (inf)
          acc = std::max(acc, a);
        else
          acc += norm_type == 2.0 ? a * a : std::pow(a, norm_type);
      }
    });
  }
  const double total = inf ? acc : (norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type));
  const double coef = std::min(1.0, max_norm / (total + 1e-6));
  if (coef < 1.0 || !std::isfinite(total)) {
    for (Tensor& g : grads) {
      if (g.device().is_cuda()) {
        ops::scale_on_device(g, coef);
      } else if (g.dtype() == DType::f32) {
        float* d = g.data<float>();
        const float c = static_cast<float>(coef);
        for (int64_t i = 0; i < g.numel(); ++i) d[i] *= c;
      } else {
        double* d = g.data<double>();
        for (int64_t i = 0; i < g.numel(); ++i) d[i] *= coef;
      }
      g.bump_version();
    }
  }
  return total;
}

}  // namespace rechub::nn
