#pragma once
// The optimizers' update rules written out in double precision, one element at a time, from the
// formulas in nn/optim.h (torch.optim.Adam / AdamW / Adagrad / SGD, torch.optim.SparseAdam for the
// row-sparse Adam). Tests drive an optimizer and this reference with the same gradients and compare,
// so a wrong sign, a missing square root or a misplaced eps in any code path (generic, AVX2,
// AVX-512) shows up without PyTorch.
#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

namespace rechub::testing {

enum class OptimKind { adam, adamw, adagrad, sgd };

struct OptimRefConfig {
  OptimKind kind = OptimKind::adam;
  double lr = 0.01;
  double weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;                       // Adam / AdamW
  double lr_decay = 0, initial_accumulator_value = 0, ag_eps = 1e-10;  // Adagrad
  double momentum = 0, dampening = 0;                                  // SGD
  bool nesterov = false;
};

// One [rows, width] parameter with its optimizer state, in f64.
class OptimReference {
 public:
  OptimReference(OptimRefConfig c, std::vector<double> p, int64_t width)
      : c_(c),
        p_(std::move(p)),
        d_(width),
        m_(p_.size(), 0.0),
        v_(p_.size(), 0.0),
        sum_(p_.size(), c.initial_accumulator_value),
        buf_(p_.size(), 0.0) {}

  const std::vector<double>& param() const { return p_; }
  int64_t steps() const { return t_; }

  // A dense gradient (same size as the parameter).
  void dense_step(const std::vector<double>& g) {
    ++t_;
    for (size_t i = 0; i < p_.size(); ++i) element(i, g[i], /*sparse=*/false);
    first_ = false;
  }

  // A row-sparse gradient: rows[k] gets values[k * width ..]; repeated rows are summed first.
  void sparse_step(const std::vector<int64_t>& rows, const std::vector<double>& values) {
    ++t_;
    std::map<int64_t, std::vector<double>> summed;
    for (size_t k = 0; k < rows.size(); ++k) {
      auto& s = summed[rows[k]];
      s.resize(static_cast<size_t>(d_), 0.0);
      for (int64_t j = 0; j < d_; ++j)
        s[static_cast<size_t>(j)] += values[k * static_cast<size_t>(d_) + static_cast<size_t>(j)];
    }
    for (const auto& [r, g] : summed)
      for (int64_t j = 0; j < d_; ++j) element(static_cast<size_t>(r * d_ + j), g[static_cast<size_t>(j)], true);
    first_ = false;
  }

 private:
  void element(size_t i, double g, bool sparse) {
    double& p = p_[i];
    const double t = static_cast<double>(t_), wd = c_.weight_decay;
    switch (c_.kind) {
      case OptimKind::adam:
      case OptimKind::adamw: {
        if (c_.kind == OptimKind::adamw)
          p *= 1.0 - c_.lr * wd;
        else
          g += wd * p;
        m_[i] = c_.beta1 * m_[i] + (1.0 - c_.beta1) * g;
        v_[i] = c_.beta2 * v_[i] + (1.0 - c_.beta2) * g * g;
        const double bc1 = 1.0 - std::pow(c_.beta1, t), bc2 = 1.0 - std::pow(c_.beta2, t);
        if (sparse)  // SparseAdam: eps is added to sqrt(v) before the bias correction scales the step
          p -= c_.lr * std::sqrt(bc2) / bc1 * m_[i] / (std::sqrt(v_[i]) + c_.eps);
        else  // Adam: the bias-corrected second moment, then eps
          p -= c_.lr / bc1 * m_[i] / (std::sqrt(v_[i] / bc2) + c_.eps);
        break;
      }
      case OptimKind::adagrad: {
        g += wd * p;
        sum_[i] += g * g;
        const double clr = c_.lr / (1.0 + (t - 1.0) * c_.lr_decay);
        p -= clr * g / (std::sqrt(sum_[i]) + c_.ag_eps);
        break;
      }
      case OptimKind::sgd: {
        double d = g + wd * p;
        if (c_.momentum != 0) {
          buf_[i] = first_ ? d : c_.momentum * buf_[i] + (1.0 - c_.dampening) * d;
          d = c_.nesterov ? d + c_.momentum * buf_[i] : buf_[i];
        }
        p -= c_.lr * d;
        break;
      }
    }
  }

  OptimRefConfig c_;
  std::vector<double> p_;
  int64_t d_;
  std::vector<double> m_, v_, sum_, buf_;
  int64_t t_ = 0;
  bool first_ = true;
};

}  // namespace rechub::testing
