#include "rechub/mtl/trainer/balance.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/nn/optim.h"

namespace rechub::trainer {

// ---- gradient helpers ---------------------------------------------------------------------------

namespace {

template <class T>
double dense_dot(const T* a, const T* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

double dense_dot_any(const Tensor& a, const Tensor& b, int64_t a_off, int64_t b_off, int64_t n) {
  RECHUB_CHECK(a.dtype() == b.dtype(), "gradient dtypes differ: " << dtype_name(a.dtype()) << " vs "
                                                                  << dtype_name(b.dtype()));
  if (a.dtype() == DType::f32) return dense_dot(a.data<float>() + a_off, b.data<float>() + b_off, n);
  if (a.dtype() == DType::f64) return dense_dot(a.data<double>() + a_off, b.data<double>() + b_off, n);
  RECHUB_FAIL("gradients must be f32 or f64, got " << dtype_name(a.dtype()));
}

}  // namespace

// Gradients on a CUDA device: the dot products run on host copies (the strategies that need them,
// GradNorm, MetaBalance and PCGrad, read a few numbers per step; correctness over speed here).
static Tensor on_host(const Tensor& t) { return t.device().is_cpu() ? t : t.to(Device::cpu()); }

double grad_dot(const Tensor& a_in, const Tensor& b_in) {
  if (!a_in.defined() || !b_in.defined()) return 0;
  const Tensor a = on_host(a_in), b = on_host(b_in);
  RECHUB_CHECK(a.shape() == b.shape(),
               "gradient shapes differ: " << shape_str(a.shape()) << " vs " << shape_str(b.shape()));
  if (!a.is_sparse() && !b.is_sparse()) return dense_dot_any(a, b, 0, 0, a.numel());
  const int64_t width = a.dim() > 1 ? a.numel() / a.size(0) : 1;
  if (a.is_sparse() && b.is_sparse()) {
    const Tensor ca = a.coalesce(), cb = b.coalesce();
    const auto ia = ca.sparse_indices().to_vector<int64_t>(), ib = cb.sparse_indices().to_vector<int64_t>();
    const Tensor va = ca.sparse_values(), vb = cb.sparse_values();
    double s = 0;
    size_t i = 0, j = 0;
    while (i < ia.size() && j < ib.size()) {
      if (ia[i] < ib[j]) {
        ++i;
      } else if (ib[j] < ia[i]) {
        ++j;
      } else {
        s += dense_dot_any(va, vb, static_cast<int64_t>(i) * width, static_cast<int64_t>(j) * width, width);
        ++i;
        ++j;
      }
    }
    return s;
  }
  const Tensor& sp = a.is_sparse() ? a : b;
  const Tensor& de = a.is_sparse() ? b : a;
  const Tensor c = sp.coalesce();
  const auto idx = c.sparse_indices().to_vector<int64_t>();
  const Tensor v = c.sparse_values();
  double s = 0;
  for (size_t k = 0; k < idx.size(); ++k)
    s += dense_dot_any(v, de, static_cast<int64_t>(k) * width, idx[k] * width, width);
  return s;
}

double grad_sq_norm(const Tensor& g_in) {
  if (!g_in.defined()) return 0;
  const Tensor g = on_host(g_in);
  if (g.is_sparse()) {
    const Tensor v = g.coalesce().sparse_values();
    return dense_dot_any(v, v, 0, 0, v.numel());
  }
  return dense_dot_any(g, g, 0, 0, g.numel());
}

Tensor grad_scale(const Tensor& g, double s) {
  if (!g.defined()) return g;
  NoGradGuard ng;
  if (g.is_sparse()) return Tensor::sparse_rows(g.sparse_indices(), ops::mul(g.sparse_values(), s), g.shape());
  return ops::mul(g, s);
}

namespace {

// ---- small pieces shared by the strategies --------------------------------------------------------

std::vector<double> loss_values(const std::vector<Tensor>& losses) {
  std::vector<double> v;
  if (!losses.empty() && losses[0].defined() && losses[0].device().is_cuda()) {  // one read for all
    NoGradGuard ng;
    std::vector<Tensor> flat;
    for (const Tensor& l : losses) flat.push_back(ops::reshape(l.detach(), {1}));
    return ops::concat(flat, 0).to_vector<double>();
  }
  for (const Tensor& l : losses) v.push_back(l.item());
  return v;
}

// Σ w_i L_i, then one backward pass into .grad.
void weighted_backward(const std::vector<Tensor>& losses, const std::vector<double>& w) {
  Tensor total;
  for (size_t i = 0; i < losses.size(); ++i) {
    Tensor term = w[i] == 1.0 ? losses[i] : losses[i] * w[i];
    total = total.defined() ? total + term : term;
  }
  rechub::backward(total);
}

// Per-task gradients of every parameter, from one forward pass.
std::vector<std::vector<Tensor>> task_gradients(const std::vector<Tensor>& losses, const std::vector<double>& w,
                                                const std::vector<Tensor>& params) {
  std::vector<std::vector<Tensor>> g;
  for (size_t i = 0; i < losses.size(); ++i) {
    const Tensor li = w[i] == 1.0 ? losses[i] : losses[i] * w[i];
    g.push_back(rechub::grad({li}, params, {}, {.retain_graph = i + 1 < losses.size(), .allow_unused = true}));
  }
  return g;
}

// Adam (PyTorch's update) on a handful of scalars.
struct ScalarAdam {
  std::vector<double> m, v;
  int64_t t = 0;
  void step(std::vector<double>& x, const std::vector<double>& g, double lr) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    if (m.empty()) m.assign(x.size(), 0.0), v.assign(x.size(), 0.0);
    ++t;
    const double bc1 = 1 - std::pow(b1, static_cast<double>(t)), bc2 = 1 - std::pow(b2, static_cast<double>(t));
    for (size_t i = 0; i < x.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      x[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + eps);
    }
  }
  nlohmann::json to_json() const { return {{"m", m}, {"v", v}, {"t", t}}; }
  void from_json(const nlohmann::json& j) {
    m = j.at("m").get<std::vector<double>>();
    v = j.at("v").get<std::vector<double>>();
    t = j.at("t").get<int64_t>();
  }
};

// ---- fixed ----------------------------------------------------------------------------------------

class FixedWeights : public TaskBalancer {
 public:
  explicit FixedWeights(std::vector<double> w) : w_(std::move(w)) {}
  std::string name() const override { return "fixed"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams&) override { weighted_backward(losses, w_); }
  std::vector<double> weights() const override { return w_; }
  nlohmann::json state() const override { return {{"weights", w_}}; }
  void load_state(const nlohmann::json& j) override { w_ = j.at("weights").get<std::vector<double>>(); }

 private:
  std::vector<double> w_;
};

// ---- GradNorm -------------------------------------------------------------------------------------

class GradNorm : public TaskBalancer {
 public:
  GradNorm(int64_t n, double alpha, double lr) : w_(static_cast<size_t>(n), 1.0), alpha_(alpha), lr_(lr) {}
  std::string name() const override { return "gradnorm"; }

  void backward(const std::vector<Tensor>& losses, const BalanceParams& p) override {
    RECHUB_CHECK(!p.last_shared.empty(), "gradnorm: the model names no last shared layer (W)");
    const size_t n = losses.size();
    const std::vector<double> L = loss_values(losses);
    if (L0_.empty()) {
      for (size_t i = 0; i < n; ++i)
        RECHUB_CHECK(L[i] > 0, "gradnorm: the first loss of task " << i << " is " << L[i]
                                                                   << "; L_i(0) must be positive");
      L0_ = L;
    }
    // ‖∇_W L_i‖ for each task, W all tensors of the last shared layer as one vector.
    std::vector<double> gnorm(n);
    for (size_t i = 0; i < n; ++i) {
      const auto g = rechub::grad({losses[i]}, p.last_shared, {}, {.retain_graph = true, .allow_unused = true});
      double s = 0;
      for (const Tensor& t : g) s += grad_sq_norm(t);
      gnorm[i] = std::sqrt(s);
    }
    std::vector<double> G(n), Lhat(n);
    for (size_t i = 0; i < n; ++i) {
      G[i] = w_[i] * gnorm[i];
      Lhat[i] = L[i] / L0_[i];
    }
    const double meanG = std::accumulate(G.begin(), G.end(), 0.0) / static_cast<double>(n);
    const double meanL = std::accumulate(Lhat.begin(), Lhat.end(), 0.0) / static_cast<double>(n);
    std::vector<double> dw(n);
    for (size_t i = 0; i < n; ++i) {
      const double target = meanG * std::pow(Lhat[i] / meanL, alpha_);
      const double diff = G[i] - target;
      dw[i] = (diff > 0 ? 1.0 : diff < 0 ? -1.0 : 0.0) * gnorm[i];
    }
    // The model's update uses the weights of this step.
    weighted_backward(losses, w_);
    adam_.step(w_, dw, lr_);
    double sum = 0;
    for (double& w : w_) {
      w = std::max(w, 1e-6);  // weights stay positive
      sum += w;
    }
    for (double& w : w_) w *= static_cast<double>(n) / sum;
    last_dw_ = dw;
  }
  std::vector<double> weights() const override { return w_; }
  nlohmann::json state() const override {
    return {{"weights", w_}, {"initial_losses", L0_}, {"adam", adam_.to_json()}};
  }
  void load_state(const nlohmann::json& j) override {
    w_ = j.at("weights").get<std::vector<double>>();
    L0_ = j.at("initial_losses").get<std::vector<double>>();
    adam_.from_json(j.at("adam"));
  }

 private:
  std::vector<double> w_, L0_, last_dw_;
  double alpha_, lr_;
  ScalarAdam adam_;
};

// ---- MetaBalance ----------------------------------------------------------------------------------

class MetaBalance : public TaskBalancer {
 public:
  MetaBalance(std::vector<double> w, double relax, double beta, int64_t main)
      : w_(std::move(w)), relax_(relax), beta_(beta), main_(static_cast<size_t>(main)) {}
  std::string name() const override { return "metabalance"; }

  void backward(const std::vector<Tensor>& losses, const BalanceParams& p) override {
    const size_t n = losses.size(), np = p.params.size();
    const auto g = task_gradients(losses, w_, p.params);
    if (norms_.empty()) norms_.assign(np, std::vector<double>(n, 0.0));
    RECHUB_CHECK(norms_.size() == np, "metabalance: the state holds " << norms_.size() << " parameters, the model "
                                                                      << np);
    for (size_t k = 0; k < np; ++k) {
      Tensor sum;
      if (p.shared[k]) {
        for (size_t i = 0; i < n; ++i) {
          if (!g[i][k].defined()) continue;
          norms_[k][i] = beta_ * norms_[k][i] + (1 - beta_) * std::sqrt(grad_sq_norm(g[i][k]));
        }
        for (size_t i = 0; i < n; ++i) {
          if (!g[i][k].defined()) continue;
          Tensor gi = g[i][k];
          if (i != main_) {
            // g·(m_main/m_i)·r + g·(1−r) = g·((m_main/m_i)·r + 1 − r)
            const double s = norms_[k][main_] / (norms_[k][i] + 1e-5) * relax_ + (1 - relax_);
            gi = grad_scale(gi, s);
          }
          sum = accumulate_grad(sum, gi);
        }
      } else {
        for (size_t i = 0; i < n; ++i) sum = accumulate_grad(sum, g[i][k]);
      }
      if (sum.defined()) {
        Tensor param = p.params[k];
        // Summed row-sparse gradients repeat rows; the optimizers need them unique (on CUDA they are
        // not checked on the host).
        param.set_grad(sum.defined() && sum.is_sparse() ? nn::coalesce_sparse_grad(sum) : sum);
      }
    }
  }
  std::vector<double> weights() const override { return w_; }
  nlohmann::json state() const override { return {{"norms", norms_}}; }
  void load_state(const nlohmann::json& j) override {
    norms_ = j.at("norms").get<std::vector<std::vector<double>>>();
  }

 private:
  std::vector<double> w_;
  double relax_, beta_;
  size_t main_;
  std::vector<std::vector<double>> norms_;  // [shared param][task] moving average of ‖g‖
};

// ---- uncertainty weighting ------------------------------------------------------------------------

class Uncertainty : public TaskBalancer {
 public:
  Uncertainty(std::vector<data::TaskType> types, double lr) : types_(std::move(types)), s_(types_.size(), 0.0), lr_(lr) {}
  std::string name() const override { return "uwl"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams&) override {
    const std::vector<double> L = loss_values(losses);
    std::vector<double> w(s_.size()), ds(s_.size());
    for (size_t i = 0; i < s_.size(); ++i) {
      w[i] = std::exp(-s_[i]);
      // d/ds [exp(−s) L + k s] = −exp(−s) L + k
      ds[i] = -w[i] * L[i] + reg(i);
    }
    weighted_backward(losses, w);
    adam_.step(s_, ds, lr_);
  }
  std::vector<double> weights() const override {
    std::vector<double> w;
    for (double s : s_) w.push_back(std::exp(-s));
    return w;
  }
  nlohmann::json state() const override { return {{"log_var", s_}, {"adam", adam_.to_json()}}; }
  void load_state(const nlohmann::json& j) override {
    s_ = j.at("log_var").get<std::vector<double>>();
    adam_.from_json(j.at("adam"));
  }

 private:
  double reg(size_t i) const { return types_[i] == data::TaskType::regression ? 1.0 : 0.5; }
  std::vector<data::TaskType> types_;
  std::vector<double> s_;
  double lr_;
  ScalarAdam adam_;
};

// ---- DWA ------------------------------------------------------------------------------------------

class DynamicWeightAverage : public TaskBalancer {
 public:
  DynamicWeightAverage(int64_t n, double T) : w_(static_cast<size_t>(n), 1.0), T_(T) {}
  std::string name() const override { return "dwa"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams&) override { weighted_backward(losses, w_); }
  void end_epoch(const std::vector<double>& mean_losses) override {
    history_.push_back(mean_losses);
    if (history_.size() < 2) return;
    const auto& a = history_[history_.size() - 1];
    const auto& b = history_[history_.size() - 2];
    const size_t n = w_.size();
    std::vector<double> e(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      const double r = b[i] > 0 ? a[i] / b[i] : 1.0;
      e[i] = std::exp(r / T_);
      sum += e[i];
    }
    for (size_t i = 0; i < n; ++i) w_[i] = static_cast<double>(n) * e[i] / sum;
  }
  std::vector<double> weights() const override { return w_; }
  nlohmann::json state() const override { return {{"weights", w_}, {"history", history_}}; }
  void load_state(const nlohmann::json& j) override {
    w_ = j.at("weights").get<std::vector<double>>();
    history_ = j.at("history").get<std::vector<std::vector<double>>>();
  }

 private:
  std::vector<double> w_;
  double T_;
  std::vector<std::vector<double>> history_;
};

// ---- PCGrad ---------------------------------------------------------------------------------------

class PCGrad : public TaskBalancer {
 public:
  PCGrad(std::vector<double> w, uint64_t seed) : w_(std::move(w)), gen_(seed) {}
  std::string name() const override { return "pcgrad"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams& p) override {
    const size_t n = losses.size(), np = p.params.size();
    const auto g = task_gradients(losses, w_, p.params);
    std::vector<size_t> shared_idx;
    for (size_t k = 0; k < np; ++k)
      if (p.shared[k]) shared_idx.push_back(k);
    auto dot = [&](const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
      double s = 0;
      for (size_t k : shared_idx) s += grad_dot(a[k], b[k]);
      return s;
    };
    std::vector<double> sq(n);
    for (size_t j = 0; j < n; ++j) sq[j] = dot(g[j], g[j]);
    std::vector<std::vector<Tensor>> proj = g;
    for (size_t i = 0; i < n; ++i) {
      std::vector<size_t> order(n);
      std::iota(order.begin(), order.end(), size_t{0});
      for (size_t k = n - 1; k > 0; --k) std::swap(order[k], order[gen_.randint(k + 1)]);
      for (size_t j : order) {
        if (j == i || sq[j] == 0) continue;
        const double d = dot(proj[i], g[j]);
        if (d >= 0) continue;
        const double c = d / sq[j];
        for (size_t k : shared_idx) {
          if (!g[j][k].defined()) continue;
          proj[i][k] = accumulate_grad(proj[i][k], grad_scale(g[j][k], -c));
          if (proj[i][k].is_sparse()) proj[i][k] = proj[i][k].coalesce();
        }
      }
    }
    for (size_t k = 0; k < np; ++k) {
      Tensor sum;
      for (size_t i = 0; i < n; ++i) sum = accumulate_grad(sum, p.shared[k] ? proj[i][k] : g[i][k]);
      if (sum.defined()) {
        Tensor param = p.params[k];
        // Summed row-sparse gradients repeat rows; the optimizers need them unique (on CUDA they are
        // not checked on the host).
        param.set_grad(sum.defined() && sum.is_sparse() ? nn::coalesce_sparse_grad(sum) : sum);
      }
    }
  }
  std::vector<double> weights() const override { return w_; }
  nlohmann::json state() const override {
    const auto st = gen_.state();
    return {{"rng", {st.s[0], st.s[1], st.s[2], st.s[3]}}, {"rng_has_spare", st.has_spare}, {"rng_spare", st.spare}};
  }
  void load_state(const nlohmann::json& j) override {
    Generator::State st{};
    const auto s = j.at("rng").get<std::vector<uint64_t>>();
    RECHUB_CHECK(s.size() == 4, "pcgrad: the generator state needs 4 words, got " << s.size());
    for (int k = 0; k < 4; ++k) st.s[k] = s[static_cast<size_t>(k)];
    st.has_spare = j.at("rng_has_spare").get<bool>();
    st.spare = j.at("rng_spare").get<double>();
    gen_.set_state(st);
  }

 private:
  std::vector<double> w_;
  Generator gen_;
};

}  // namespace

std::vector<std::string> balance_strategies() { return {"fixed", "gradnorm", "metabalance", "uwl", "dwa", "pcgrad"}; }

std::unique_ptr<TaskBalancer> make_balancer(int64_t num_tasks, const BalanceOptions& o) {
  RECHUB_CHECK(num_tasks >= 1, "task balancing needs at least one task, got " << num_tasks);
  std::vector<double> w = o.task_weights;
  if (w.empty()) w.assign(static_cast<size_t>(num_tasks), 1.0);
  RECHUB_CHECK(static_cast<int64_t>(w.size()) == num_tasks,
               "task_weights: " << w.size() << " weights for " << num_tasks << " tasks");
  for (double x : w) RECHUB_CHECK(std::isfinite(x) && x >= 0, "task_weights: every weight must be finite and >= 0, got " << x);
  const std::string& s = o.strategy;
  if (s == "fixed" || s.empty()) return std::make_unique<FixedWeights>(w);
  if (s == "gradnorm") {
    RECHUB_CHECK(o.gradnorm_alpha >= 0, "gradnorm_alpha must be >= 0, got " << o.gradnorm_alpha);
    RECHUB_CHECK(o.gradnorm_lr > 0, "gradnorm_lr must be > 0, got " << o.gradnorm_lr);
    return std::make_unique<GradNorm>(num_tasks, o.gradnorm_alpha, o.gradnorm_lr);
  }
  if (s == "metabalance") {
    RECHUB_CHECK(o.relax_factor >= 0 && o.relax_factor <= 1, "relax_factor must be in [0, 1], got " << o.relax_factor);
    RECHUB_CHECK(o.beta >= 0 && o.beta < 1, "beta must be in [0, 1), got " << o.beta);
    RECHUB_CHECK(o.main_task >= 0 && o.main_task < num_tasks,
                 "main_task " << o.main_task << " is not a task index (0.." << num_tasks - 1 << ")");
    return std::make_unique<MetaBalance>(w, o.relax_factor, o.beta, o.main_task);
  }
  if (s == "uwl") {
    std::vector<data::TaskType> types = o.task_types;
    if (types.empty()) types.assign(static_cast<size_t>(num_tasks), data::TaskType::binary);
    RECHUB_CHECK(static_cast<int64_t>(types.size()) == num_tasks,
                 "uwl: " << types.size() << " task types for " << num_tasks << " tasks");
    return std::make_unique<Uncertainty>(types, o.uwl_lr);
  }
  if (s == "dwa") {
    RECHUB_CHECK(o.dwa_temperature > 0, "dwa_temperature must be > 0, got " << o.dwa_temperature);
    return std::make_unique<DynamicWeightAverage>(num_tasks, o.dwa_temperature);
  }
  if (s == "pcgrad") return std::make_unique<PCGrad>(w, o.seed);
  RECHUB_FAIL("unknown task balancing strategy '" << s << "' (expected fixed, gradnorm, metabalance, uwl, dwa or pcgrad)");
}

}  // namespace rechub::trainer
