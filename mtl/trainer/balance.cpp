#include "rechub/mtl/trainer/balance.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
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
  RECHUB_CHECK(a.dtype() == b.dtype(),
               "gradient dtypes differ: " << dtype_name(a.dtype()) << " vs " << dtype_name(b.dtype()));
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

// Per-task gradients of every parameter, from one forward pass. A task without labels in the
// batch (labelled[i] false) gets undefined gradients: its masked loss is a constant 0.
std::vector<std::vector<Tensor>> task_gradients(const std::vector<Tensor>& losses, const std::vector<double>& w,
                                                const std::vector<Tensor>& params,
                                                const std::vector<bool>& labelled = {}) {
  std::vector<std::vector<Tensor>> g;
  for (size_t i = 0; i < losses.size(); ++i) {
    if (!labelled.empty() && !labelled[i]) {
      g.emplace_back(params.size());
      continue;
    }
    const Tensor li = w[i] == 1.0 ? losses[i] : losses[i] * w[i];
    g.push_back(rechub::grad({li}, params, {}, {.retain_graph = i + 1 < losses.size(), .allow_unused = true}));
  }
  return g;
}

// Sets every parameter's gradient: Σ_i coef[i]·g_i on shared parameters, Σ_i g_i on the others.
void set_combined_grads(const std::vector<std::vector<Tensor>>& g, const std::vector<double>& coef,
                        const BalanceParams& p) {
  for (size_t k = 0; k < p.params.size(); ++k) {
    Tensor sum;
    for (size_t i = 0; i < g.size(); ++i) {
      if (!g[i][k].defined()) continue;
      if (!p.shared[k]) {
        sum = accumulate_grad(sum, g[i][k]);
      } else if (coef[i] != 0) {
        sum = accumulate_grad(sum, coef[i] == 1.0 ? g[i][k] : grad_scale(g[i][k], coef[i]));
      }
    }
    if (sum.defined()) {
      Tensor param = p.params[k];
      // Summed row-sparse gradients repeat rows; the optimizers need them unique.
      param.set_grad(sum.is_sparse() ? nn::coalesce_sparse_grad(sum) : sum);
    }
  }
}

// Whether parameter t's gradient holds this rank's rows only (BalanceParams::sharded).
bool is_sharded(const BalanceParams& p, const Tensor& t) { return p.shards && p.sharded.count(t.impl()) > 0; }
// v summed over the ranks of p.shards (in place; nothing without sharded parameters).
void sum_over_shards(const BalanceParams& p, std::vector<double>& v) {
  if (p.shards && !p.sharded.empty() && !v.empty()) p.shards->allreduce(v.data(), static_cast<int64_t>(v.size()));
}

// The Gram matrix (row-major) of the tasks `tasks` on the shared parameters (as one vector).
std::vector<double> shared_gram(const std::vector<std::vector<Tensor>>& g, const std::vector<size_t>& tasks,
                                const BalanceParams& p) {
  const size_t m = tasks.size();
  std::vector<double> M(m * m, 0.0), S(p.sharded.empty() ? 0 : m * m, 0.0);
  for (size_t a = 0; a < m; ++a)
    for (size_t b = a; b < m; ++b) {
      double s = 0, sh = 0;
      for (size_t k = 0; k < p.params.size(); ++k) {
        if (!p.shared[k]) continue;
        if (is_sharded(p, p.params[k]))
          sh += grad_dot(g[tasks[a]][k], g[tasks[b]][k]);
        else
          s += grad_dot(g[tasks[a]][k], g[tasks[b]][k]);
      }
      M[a * m + b] = M[b * m + a] = s;
      if (!S.empty()) S[a * m + b] = S[b * m + a] = sh;
    }
  sum_over_shards(p, S);  // the sharded rows of every rank
  for (size_t i = 0; i < S.size(); ++i) M[i] += S[i];
  return M;
}

// Adam (PyTorch's update) on a handful of scalars.
struct ScalarAdam {
  std::vector<double> m, v;
  int64_t t = 0;
  // Entries with active[i] false (tasks without labels in the batch) keep x, m and v as they are.
  void step(std::vector<double>& x, const std::vector<double>& g, double lr, const std::vector<bool>& active = {}) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    if (m.empty()) m.assign(x.size(), 0.0), v.assign(x.size(), 0.0);
    ++t;
    const double bc1 = 1 - std::pow(b1, static_cast<double>(t)), bc2 = 1 - std::pow(b2, static_cast<double>(t));
    for (size_t i = 0; i < x.size(); ++i) {
      if (!active.empty() && !active[i]) continue;
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
    // Only the tasks with labels in this batch take part; an unlabelled task's weight, Adam
    // moments and L_i(0) wait for its next labelled batch (L0 = 0 marks "not seen yet").
    std::vector<bool> on(n);
    size_t n_on = 0;
    for (size_t i = 0; i < n; ++i) n_on += (on[i] = labelled(i)) ? 1 : 0;
    if (L0_.empty()) L0_.assign(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
      if (!on[i] || L0_[i] > 0) continue;
      RECHUB_CHECK(L[i] > 0, "gradnorm: the first loss of task " << i << " is " << L[i] << "; L_i(0) must be positive");
      L0_[i] = L[i];
    }
    // The model's update uses the weights of this step.
    if (n_on == 0) {
      weighted_backward(losses, w_);
      return;
    }
    // ‖∇_W L_i‖ for each task, W all tensors of the last shared layer as one vector.
    std::vector<double> gnorm(n, 0.0), sq(n, 0.0), sq_sharded(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
      if (!on[i]) continue;
      const auto g = rechub::grad({losses[i]}, p.last_shared, {}, {.retain_graph = true, .allow_unused = true});
      for (size_t k = 0; k < g.size(); ++k)
        (is_sharded(p, p.last_shared[k]) ? sq_sharded : sq)[i] += grad_sq_norm(g[k]);
    }
    for (size_t k = 0; k < p.last_shared.size(); ++k)
      if (is_sharded(p, p.last_shared[k])) {  // W holds sharded rows: their squares over every rank
        sum_over_shards(p, sq_sharded);
        break;
      }
    for (size_t i = 0; i < n; ++i) gnorm[i] = std::sqrt(sq[i] + sq_sharded[i]);
    std::vector<double> G(n, 0.0), Lhat(n, 0.0);
    double meanG = 0, meanL = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!on[i]) continue;
      G[i] = w_[i] * gnorm[i];
      Lhat[i] = L[i] / L0_[i];
      meanG += G[i], meanL += Lhat[i];
    }
    meanG /= static_cast<double>(n_on);
    meanL /= static_cast<double>(n_on);
    std::vector<double> dw(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
      if (!on[i]) continue;
      const double target = meanG * std::pow(Lhat[i] / meanL, alpha_);
      const double diff = G[i] - target;
      dw[i] = (diff > 0 ? 1.0 : diff < 0 ? -1.0 : 0.0) * gnorm[i];
    }
    weighted_backward(losses, w_);
    // The labelled tasks' weights keep their sum (the task count when every task is labelled).
    double before = 0;
    for (size_t i = 0; i < n; ++i) before += on[i] ? w_[i] : 0.0;
    if (n_on == n) before = static_cast<double>(n);
    adam_.step(w_, dw, lr_, n_on == n ? std::vector<bool>{} : on);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!on[i]) continue;
      w_[i] = std::max(w_[i], 1e-6);  // weights stay positive
      sum += w_[i];
    }
    for (size_t i = 0; i < n; ++i)
      if (on[i]) w_[i] *= before / sum;
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
  enum class Which : uint8_t { all, reduce, enlarge };
  MetaBalance(std::vector<double> w, double relax, double beta, int64_t main, Which which)
      : w_(std::move(w)), relax_(relax), beta_(beta), main_(static_cast<size_t>(main)), which_(which) {}
  std::string name() const override { return "metabalance"; }

  void backward(const std::vector<Tensor>& losses, const BalanceParams& p) override {
    const size_t n = losses.size(), np = p.params.size();
    const auto g = task_gradients(losses, w_, p.params, labelled_);
    if (norms_.empty()) norms_.assign(np, std::vector<double>(n, 0.0));
    RECHUB_CHECK(norms_.size() == np,
                 "metabalance: the state holds " << norms_.size() << " parameters, the model " << np);
    if (warned_.size() != np) warned_.assign(np, false);
    // ‖g_i‖² of each shared parameter; a sharded one's squares summed over the ranks (one allreduce).
    std::vector<double> sq(np * n, 0.0), sq_sharded;
    std::vector<size_t> sharded_k;
    for (size_t k = 0; k < np; ++k) {
      if (!p.shared[k]) continue;
      for (size_t i = 0; i < n; ++i) sq[k * n + i] = g[i][k].defined() ? grad_sq_norm(g[i][k]) : 0.0;
      if (is_sharded(p, p.params[k])) {
        sharded_k.push_back(k);
        sq_sharded.insert(sq_sharded.end(), sq.begin() + static_cast<std::ptrdiff_t>(k * n),
                          sq.begin() + static_cast<std::ptrdiff_t>((k + 1) * n));
      }
    }
    sum_over_shards(p, sq_sharded);
    for (size_t j = 0; j < sharded_k.size(); ++j)
      for (size_t i = 0; i < n; ++i) sq[sharded_k[j] * n + i] = sq_sharded[j * n + i];
    for (size_t k = 0; k < np; ++k) {
      Tensor sum;
      if (p.shared[k]) {
        // An unlabelled task's gradient is undefined here, so its moving norm does not decay.
        for (size_t i = 0; i < n; ++i) {
          if (!g[i][k].defined()) continue;
          norms_[k][i] = beta_ * norms_[k][i] + (1 - beta_) * std::sqrt(sq[k * n + i]);
        }
        const double m_main = norms_[k][main_];
        // The main task has never sent a gradient here: leave the auxiliary gradients unscaled
        // (the formula would shrink them all by 1 − r) and say so once.
        const bool unscaled = m_main == 0;
        // Worth a word only where an auxiliary task does send something (a bias before a
        // BatchNorm gets exactly 0 from every task).
        bool aux_sends = false;
        for (size_t i = 0; i < n; ++i) aux_sends = aux_sends || (i != main_ && norms_[k][i] > 0);
        if (unscaled && aux_sends && labelled(main_) && !warned_[k]) {
          warned_[k] = true;
          const std::string name = k < p.names.size() ? "'" + p.names[k] + "'" : "#" + std::to_string(k);
          warnings_.push_back("metabalance: the main task (task " + std::to_string(main_) +
                              ") sends no gradient to the shared parameter " + name +
                              "; its auxiliary gradients are left unscaled there");
        }
        for (size_t i = 0; i < n; ++i) {
          if (!g[i][k].defined()) continue;
          Tensor gi = g[i][k];
          const double m_i = norms_[k][i];
          const bool adapt = which_ == Which::all || (which_ == Which::reduce && m_i > m_main) ||
                             (which_ == Which::enlarge && m_i < m_main);
          if (i != main_ && !unscaled && adapt) {
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
  void load_state(const nlohmann::json& j) override { norms_ = j.at("norms").get<std::vector<std::vector<double>>>(); }

 private:
  std::vector<double> w_;
  double relax_, beta_;
  size_t main_;
  Which which_;
  std::vector<std::vector<double>> norms_;  // [shared param][task] moving average of ‖g‖
  std::vector<bool> warned_;                // per parameter: the m_main = 0 warning was given
};

// ---- uncertainty weighting ------------------------------------------------------------------------

class Uncertainty : public TaskBalancer {
 public:
  Uncertainty(std::vector<data::TaskType> types, double lr)
      : types_(std::move(types)), s_(types_.size(), 0.0), lr_(lr) {}
  std::string name() const override { return "uwl"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams&) override {
    const std::vector<double> L = loss_values(losses);
    std::vector<double> w(s_.size()), ds(s_.size());
    std::vector<bool> on(s_.size());
    bool all_on = true;
    for (size_t i = 0; i < s_.size(); ++i) {
      w[i] = std::exp(-s_[i]);
      // d/ds [exp(−s) L + k s] = −exp(−s) L + k; a task without labels in the batch has no term.
      on[i] = labelled(i);
      all_on = all_on && on[i];
      ds[i] = on[i] ? -w[i] * L[i] + reg(i) : 0.0;
    }
    weighted_backward(losses, w);
    adam_.step(s_, ds, lr_, all_on ? std::vector<bool>{} : on);
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
    const auto g = task_gradients(losses, w_, p.params, labelled_);
    std::vector<size_t> shared_idx;
    for (size_t k = 0; k < np; ++k)
      if (p.shared[k]) shared_idx.push_back(k);
    bool any_sharded = false;
    for (size_t k : shared_idx) any_sharded = any_sharded || is_sharded(p, p.params[k]);
    auto dot = [&](const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
      double s = 0;
      std::vector<double> sh(any_sharded ? 1 : 0, 0.0);
      for (size_t k : shared_idx) {
        if (any_sharded && is_sharded(p, p.params[k]))
          sh[0] += grad_dot(a[k], b[k]);
        else
          s += grad_dot(a[k], b[k]);
      }
      sum_over_shards(p, sh);  // every rank's rows: the same value, and decision, on every rank
      return any_sharded ? s + sh[0] : s;
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

// ---- MGDA -----------------------------------------------------------------------------------------

// Tasks with labels in this batch, in order.
std::vector<size_t> labelled_indices(size_t n, const std::vector<bool>& labelled) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < n; ++i)
    if (labelled.empty() || labelled[i]) idx.push_back(i);
  return idx;
}

class MGDA : public TaskBalancer {
 public:
  MGDA(std::vector<double> w, std::string normalization)
      : w_(std::move(w)), norm_(std::move(normalization)), coef_(w_.size(), 1.0 / static_cast<double>(w_.size())) {}
  std::string name() const override { return "mgda"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams& p) override {
    const size_t n = losses.size();
    const auto g = task_gradients(losses, w_, p.params, labelled_);
    const std::vector<size_t> on = labelled_indices(n, labelled_);
    const size_t m = on.size();
    std::vector<double> M = shared_gram(g, on, p);
    std::vector<double> L;
    if (norm_ == "loss" || norm_ == "loss+") L = loss_values(losses);
    std::vector<double> gn(m, 1.0);
    for (size_t a = 0; a < m; ++a) {
      const double l = norm_ == "loss" || norm_ == "loss+" ? w_[on[a]] * L[on[a]] : 1.0;
      const double l2 = norm_ == "l2" || norm_ == "loss+" ? std::sqrt(M[a * m + a]) : 1.0;
      gn[a] = l * l2;
      if (!(gn[a] > 0) || !std::isfinite(gn[a])) gn[a] = 1.0;  // a zero gradient or loss stays as it is
    }
    for (size_t a = 0; a < m; ++a)
      for (size_t b = 0; b < m; ++b) M[a * m + b] /= gn[a] * gn[b];
    const std::vector<double> alpha = min_norm_weights(M, m);
    coef_.assign(n, 0.0);
    for (size_t a = 0; a < m; ++a) coef_[on[a]] = alpha[a] / gn[a];
    set_combined_grads(g, coef_, p);
  }
  // The factor on each task's shared gradient in the last step (α_i / n_i; 0 for a task without labels).
  std::vector<double> weights() const override { return coef_; }
  nlohmann::json state() const override { return {{"coefficients", coef_}}; }
  void load_state(const nlohmann::json& j) override { coef_ = j.at("coefficients").get<std::vector<double>>(); }

 private:
  std::vector<double> w_;
  std::string norm_;
  std::vector<double> coef_;
};

// ---- CAGrad ---------------------------------------------------------------------------------------

class CAGrad : public TaskBalancer {
 public:
  CAGrad(std::vector<double> w, double c) : w_(std::move(w)), c_(c), coef_(w_.size(), 1.0) {}
  std::string name() const override { return "cagrad"; }
  void backward(const std::vector<Tensor>& losses, const BalanceParams& p) override {
    const size_t n = losses.size();
    const auto g = task_gradients(losses, w_, p.params, labelled_);
    const std::vector<size_t> on = labelled_indices(n, labelled_);
    const size_t m = on.size();
    coef_.assign(n, 0.0);
    if (m > 0) {
      const std::vector<double> M = shared_gram(g, on, p);
      const double mm = static_cast<double>(m);
      const double g0_norm = std::sqrt(std::accumulate(M.begin(), M.end(), 0.0) / (mm * mm) + 1e-8);
      const double cp = c_ * g0_norm + 1e-8;
      const std::vector<double> x = cagrad_weights(M, m, cp);
      double xMx = 0;
      for (size_t a = 0; a < m; ++a)
        for (size_t b = 0; b < m; ++b) xMx += x[a] * M[a * m + b] * x[b];
      const double lambda = cp / (std::sqrt(std::max(xMx, 0.0)) + 1e-8);
      // d = (g_0 + λ g_w) / (1 + c²), times m to match the summed loss.
      for (size_t a = 0; a < m; ++a) coef_[on[a]] = mm * (1.0 / mm + lambda * x[a]) / (1 + c_ * c_);
    }
    set_combined_grads(g, coef_, p);
  }
  // The factor on each task's shared gradient in the last step (0 for a task without labels).
  std::vector<double> weights() const override { return coef_; }
  nlohmann::json state() const override { return {{"coefficients", coef_}}; }
  void load_state(const nlohmann::json& j) override { coef_ = j.at("coefficients").get<std::vector<double>>(); }

 private:
  std::vector<double> w_;
  double c_;
  std::vector<double> coef_;
};

}  // namespace

// ---- the two small solvers ------------------------------------------------------------------------

namespace {

// Sener & Koltun's Algorithm 1: γ minimising ‖γ·v1 + (1−γ)·v2‖² from v1·v1, v1·v2, v2·v2.
double min_norm_two(double v11, double v12, double v22) {
  if (v12 >= v11) return 1.0;
  if (v12 >= v22) return 0.0;
  return (v22 - v12) / (v11 + v22 - 2 * v12);
}

// Euclidean projection onto the probability simplex (sort, then threshold).
std::vector<double> project_simplex(const std::vector<double>& y) {
  std::vector<double> u = y;
  std::sort(u.begin(), u.end(), std::greater<>());
  double cum = 0, theta = 0;
  for (size_t j = 0; j < u.size(); ++j) {
    cum += u[j];
    const double t = (cum - 1.0) / static_cast<double>(j + 1);
    if (u[j] - t > 0) theta = t;
  }
  std::vector<double> x(y.size());
  for (size_t i = 0; i < y.size(); ++i) x[i] = std::max(y[i] - theta, 0.0);
  return x;
}

}  // namespace

std::vector<double> min_norm_weights(const std::vector<double>& M, size_t n) {
  RECHUB_CHECK(M.size() == n * n, "min_norm_weights: a " << n << "x" << n << " Gram matrix needs " << n * n
                                                         << " entries, got " << M.size());
  if (n == 0) return {};
  std::vector<double> alpha(n, 0.0);
  if (n == 1) return alpha[0] = 1.0, alpha;
  // The best pair (exact for two tasks).
  double best = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      const double v11 = M[i * n + i], v12 = M[i * n + j], v22 = M[j * n + j];
      const double gm = min_norm_two(v11, v12, v22);
      const double cost = gm * gm * v11 + 2 * gm * (1 - gm) * v12 + (1 - gm) * (1 - gm) * v22;
      if (cost < best) {
        best = cost;
        std::fill(alpha.begin(), alpha.end(), 0.0);
        alpha[i] = gm, alpha[j] = 1 - gm;
      }
    }
  if (n == 2) return alpha;
  // Frank-Wolfe with away steps: towards the vertex e_t with the smallest (Mα)_t, or away from the
  // vertex e_s of the support with the largest (Mα)_s, whichever promises more (Lacoste-Julien &
  // Jaggi, NeurIPS 2015: linear convergence, where the paper's plain steps creep at O(1/k) when a
  // task's weight must go to exactly 0); exact line search along the chosen direction. Stops when
  // the Frank-Wolfe gap αᵀMα − min_t (Mα)_t (an upper bound on the distance to the optimum)
  // is below 1e-12 of the largest ‖g_i‖², or after 10000 steps.
  double scale = 0;
  for (size_t r = 0; r < n; ++r) scale = std::max(scale, M[r * n + r]);
  if (!(scale > 0)) return alpha;
  std::vector<double> Ma(n), d(n), Md(n);
  for (int it = 0; it < 10000; ++it) {
    double aMa = 0;
    for (size_t r = 0; r < n; ++r) {
      Ma[r] = 0;
      for (size_t c = 0; c < n; ++c) Ma[r] += M[r * n + c] * alpha[c];
      aMa += alpha[r] * Ma[r];
    }
    size_t t = 0, s = n;
    for (size_t r = 1; r < n; ++r)
      if (Ma[r] < Ma[t]) t = r;
    for (size_t r = 0; r < n; ++r)
      if (alpha[r] > 0 && (s == n || Ma[r] > Ma[s])) s = r;
    const double gap_fw = aMa - Ma[t], gap_away = Ma[s] - aMa;
    if (gap_fw <= 1e-12 * scale) break;
    double max_step = 1.0;
    const bool away = gap_away > gap_fw && alpha[s] < 1.0;
    if (!away) {
      for (size_t r = 0; r < n; ++r) d[r] = (r == t ? 1.0 : 0.0) - alpha[r];
    } else {
      for (size_t r = 0; r < n; ++r) d[r] = alpha[r] - (r == s ? 1.0 : 0.0);
      max_step = alpha[s] / (1.0 - alpha[s]);
    }
    // min over γ ∈ [0, max_step] of (α + γd)ᵀM(α + γd): γ = −αᵀMd / dᵀMd.
    double aMd = 0, dMd = 0;
    for (size_t r = 0; r < n; ++r) {
      Md[r] = 0;
      for (size_t c = 0; c < n; ++c) Md[r] += M[r * n + c] * d[c];
      aMd += alpha[r] * Md[r];
      dMd += d[r] * Md[r];
    }
    if (!(dMd > 0) || aMd >= 0) break;
    const double step = std::min(max_step, -aMd / dMd);
    for (size_t r = 0; r < n; ++r) alpha[r] = std::max(0.0, alpha[r] + step * d[r]);
    if (away && step == max_step) alpha[s] = 0.0;  // a drop step: that weight is exactly 0
  }
  double sum = 0;
  for (double a : alpha) sum += a;
  for (double& a : alpha) a /= sum;
  return alpha;
}

std::vector<double> cagrad_weights(const std::vector<double>& M, size_t n, double cp) {
  RECHUB_CHECK(M.size() == n * n,
               "cagrad_weights: a " << n << "x" << n << " Gram matrix needs " << n * n << " entries, got " << M.size());
  if (n == 0) return {};
  const double b = 1.0 / static_cast<double>(n);
  std::vector<double> x(n, b), Mx(n), grad(n);
  // F(x) = xᵀM·b + c'·sqrt(xᵀMx + 1e-8); ∇F = M·b + c'·Mx / sqrt(xᵀMx + 1e-8).
  auto value = [&](const std::vector<double>& v, std::vector<double>* g) {
    double lin = 0, quad = 0;
    for (size_t r = 0; r < n; ++r) {
      double mv = 0, mb = 0;
      for (size_t c = 0; c < n; ++c) mv += M[r * n + c] * v[c], mb += M[r * n + c] * b;
      lin += v[r] * mb;
      quad += v[r] * mv;
      if (g) (*g)[r] = mb, Mx[r] = mv;
    }
    const double root = std::sqrt(std::max(quad, 0.0) + 1e-8);
    if (g)
      for (size_t r = 0; r < n; ++r) (*g)[r] += cp * Mx[r] / root;
    return lin + cp * root;
  };
  double trace = 0;
  for (size_t r = 0; r < n; ++r) trace += std::abs(M[r * n + r]);
  double step = 1.0 / (trace * (1.0 + cp * 1e4) + 1e-300);  // grows or shrinks below
  double f = value(x, &grad);
  for (int it = 0; it < 10000; ++it) {
    std::vector<double> next;
    double fn = 0, moved = 0;
    bool accepted = false;
    for (int bt = 0; bt < 200; ++bt) {
      std::vector<double> y(n);
      for (size_t r = 0; r < n; ++r) y[r] = x[r] - step * grad[r];
      next = project_simplex(y);
      fn = value(next, nullptr);
      double lin = 0, sq = 0;
      moved = 0;
      for (size_t r = 0; r < n; ++r) {
        const double d = next[r] - x[r];
        lin += grad[r] * d, sq += d * d, moved += std::abs(d);
      }
      if (fn <= f + lin + sq / (2 * step)) {
        accepted = true;
        break;
      }
      step *= 0.5;
      if (moved < 1e-15) break;
    }
    if (!accepted) break;  // no step lowers F beyond rounding: converged
    x = next;
    f = value(x, &grad);
    if (moved < 1e-13) break;
    step *= 2;
  }
  return x;
}

namespace {}  // namespace

std::vector<std::string> balance_strategies() {
  return {"fixed", "gradnorm", "metabalance", "uwl", "dwa", "pcgrad", "mgda", "cagrad"};
}

std::unique_ptr<TaskBalancer> make_balancer(int64_t num_tasks, const BalanceOptions& o) {
  RECHUB_CHECK(num_tasks >= 1, "task balancing needs at least one task, got " << num_tasks);
  std::vector<double> w = o.task_weights;
  if (w.empty()) w.assign(static_cast<size_t>(num_tasks), 1.0);
  RECHUB_CHECK(static_cast<int64_t>(w.size()) == num_tasks,
               "task_weights: " << w.size() << " weights for " << num_tasks << " tasks");
  for (double x : w)
    RECHUB_CHECK(std::isfinite(x) && x >= 0, "task_weights: every weight must be finite and >= 0, got " << x);
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
    const std::string& st = o.metabalance_strategy;
    RECHUB_CHECK(st == "all" || st == "reduce" || st == "enlarge" || st.empty(),
                 "metabalance_strategy must be all, reduce or enlarge, got '" << st << "'");
    const auto which = st == "reduce"    ? MetaBalance::Which::reduce
                       : st == "enlarge" ? MetaBalance::Which::enlarge
                                         : MetaBalance::Which::all;
    return std::make_unique<MetaBalance>(w, o.relax_factor, o.beta, o.main_task, which);
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
  if (s == "mgda") {
    const std::string& nm = o.mgda_normalization;
    RECHUB_CHECK(nm == "none" || nm == "l2" || nm == "loss" || nm == "loss+",
                 "mgda_normalization must be none, l2, loss or loss+, got '" << nm << "'");
    return std::make_unique<MGDA>(w, nm);
  }
  if (s == "cagrad") {
    RECHUB_CHECK(std::isfinite(o.cagrad_c) && o.cagrad_c >= 0, "cagrad_c must be finite and >= 0, got " << o.cagrad_c);
    return std::make_unique<CAGrad>(w, o.cagrad_c);
  }
  RECHUB_FAIL("unknown task balancing strategy '"
              << s << "' (expected fixed, gradnorm, metabalance, uwl, dwa, pcgrad, mgda or cagrad)");
}

}  // namespace rechub::trainer
