// experts_forward and gate_mix: forward and hand-written backward (see core/ops_fused.h for the
// layout), plus their compositions from basic ops. This file is the CPU path (f32/f64) and the
// reference for the CUDA path (f32), core/ops_fused_cuda.cpp, which computes the same formulas
// and shares the checks and bookkeeping of core/ops_fused_internal.h.
//
// Expert block, one layer k with C = E*h columns (per column c: gamma, beta, bias b):
//   z = a_prev W^T                      (one GEMM for k = 0, one per expert for k > 0; no bias)
//   training BN:  mu = mean_B z, var = mean_B (z - mu)^2, s = (z - mu) / sqrt(var + eps)
//                 (the bias cancels in s; it only enters the running mean: mean of z + b)
//   eval BN:      s = (z + b - running_mean) / sqrt(running_var + eps)
//   no BN:        s = z + b
//   y = gamma * s + beta (BN) or y = s;  a = act(y) * mask
// Backward with dy = da * mask * act'(y):
//   training BN:  dz = gamma/sqrt(var+eps) * (dy - mean_B dy - s * mean_B(dy * s)), db = 0
//                 (a bias before batch normalisation has exactly zero gradient)
//   eval BN:      dz = dy * gamma / sqrt(running_var + eps), db = sum_B dz
//   no BN:        dz = dy, db = sum_B dy
//   dgamma = sum_B dy * s, dbeta = sum_B dy, dW = dz^T a_prev, da_prev = dz W.
//
// Gate mix, per sample: g = softmax(x Wg^T + bg), out = sum_e g_e X_e. Backward:
//   dX_e = g_e dout, dg_e = <dout, X_e>, dlogit_e = g_e (dg_e - sum_j g_j dg_j),
//   dWg = dlogit^T x, dbg = sum_B dlogit, dx = dlogit Wg.
#include "rechub/core/ops_fused.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>

#include "rechub/core/dispatch.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/ops.h"
#include "rechub/core/ops_fused_internal.h"
#include "rechub/kernels/cpu/experts.h"
#include "rechub/kernels/cpu/gemm.h"

namespace rechub::ops {
namespace {
namespace kc = kernels::cpu;

static_assert(static_cast<int>(Activation::tanh) == static_cast<int>(kc::ExpertAct::tanh) &&
                  static_cast<int>(Activation::relu) == static_cast<int>(kc::ExpertAct::relu) &&
                  static_cast<int>(Activation::leaky_relu) == static_cast<int>(kc::ExpertAct::leaky_relu) &&
                  static_cast<int>(Activation::sigmoid) == static_cast<int>(kc::ExpertAct::sigmoid),
              "Activation and ExpertAct must list the activations in the same order");
kc::ExpertAct kernel_act(Activation a) { return static_cast<kc::ExpertAct>(a); }

template <class T>
void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
            T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if constexpr (std::is_same_v<T, float>)
    kc::sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  else
    kc::dgemm(ta, tb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
}

std::string tensor_label(const Tensor& t, const char* role, int64_t layer, int64_t expert) {
  std::ostringstream os;
  os << role << " of expert " << expert << " in layer " << layer;
  if (!t.name().empty()) os << " ('" << t.name() << "')";
  return os.str();
}

void check_vec(const char* op, const std::vector<Tensor>& v, int64_t E, int64_t h, DType dt, Device dev,
               const char* role, int64_t layer) {
  RECHUB_CHECK(static_cast<int64_t>(v.size()) == E,
               op << ": layer " << layer << " has " << v.size() << " " << role << " tensors for " << E << " experts");
  for (int64_t e = 0; e < E; ++e) {
    const Tensor& t = v[e];
    RECHUB_CHECK(t.defined() && !t.is_sparse() && t.device() == dev, op << ": " << tensor_label(t, role, layer, e)
                                                                        << " must be a dense tensor on " << dev.str()
                                                                        << " (the input's device)");
    RECHUB_CHECK(t.dtype() == dt, op << ": " << tensor_label(t, role, layer, e) << " is " << dtype_name(t.dtype())
                                     << " but the input is " << dtype_name(dt));
    RECHUB_CHECK(t.dim() == 1 && t.size(0) == h, op << ": " << tensor_label(t, role, layer, e) << " has shape "
                                                    << shape_str(t.shape()) << ", expected [" << h << "]");
  }
}

}  // namespace

namespace fused_detail {

BlockDims check_block(const char* op, const Tensor& x, const std::vector<ExpertLayerParams>& layers,
                      const ExpertsOptions& o) {
  detail::check_float_operands(op, {&x});
  RECHUB_CHECK(x.dim() == 2, op << ": expected the input [batch, features], got " << shape_str(x.shape()));
  RECHUB_CHECK(!layers.empty(), op << ": the expert block has no layers");
  BlockDims d;
  d.B = x.size(0);
  d.in = x.size(1);
  d.E = static_cast<int64_t>(layers[0].weight.size());
  RECHUB_CHECK(d.E >= 1, op << ": the expert block has no experts (layer 0 has no weights)");
  int64_t h_in = d.in;
  for (size_t k = 0; k < layers.size(); ++k) {
    const ExpertLayerParams& L = layers[k];
    const int64_t lk = static_cast<int64_t>(k);
    RECHUB_CHECK(static_cast<int64_t>(L.weight.size()) == d.E, op << ": layer " << k << " has " << L.weight.size()
                                                                  << " weights but layer 0 has " << d.E << " experts");
    int64_t h = -1;
    for (int64_t e = 0; e < d.E; ++e) {
      const Tensor& w = L.weight[e];
      RECHUB_CHECK(w.defined() && !w.is_sparse() && w.device() == x.device(),
                   op << ": " << tensor_label(w, "weight", lk, e) << " must be a dense tensor on " << x.device().str()
                      << " (the input's device)");
      RECHUB_CHECK(w.dtype() == x.dtype(), op << ": " << tensor_label(w, "weight", lk, e) << " is "
                                              << dtype_name(w.dtype()) << " but the input is "
                                              << dtype_name(x.dtype()));
      RECHUB_CHECK(w.dim() == 2 && w.size(1) == h_in, op << ": " << tensor_label(w, "weight", lk, e) << " has shape "
                                                         << shape_str(w.shape()) << ", expected [out, " << h_in << "] ("
                                                         << (k == 0 ? "the input width" : "the previous layer's width")
                                                         << " is " << h_in << ")");
      if (h < 0) h = w.size(0);
      RECHUB_CHECK(w.size(0) == h, op << ": experts of layer " << k << " differ in width (" << h << " vs " << w.size(0)
                                      << "); an expert block needs equal widths");
    }
    RECHUB_CHECK(h >= 1, op << ": layer " << k << " has width 0");
    const bool has_bias = !L.bias.empty();
    if (has_bias) check_vec(op, L.bias, d.E, h, x.dtype(), x.device(), "bias", lk);
    const bool has_bn = !L.bn_weight.empty() || !L.bn_bias.empty() || !L.running_mean.empty() || !L.running_var.empty();
    if (has_bn) {
      check_vec(op, L.bn_weight, d.E, h, x.dtype(), x.device(), "BatchNorm weight", lk);
      check_vec(op, L.bn_bias, d.E, h, x.dtype(), x.device(), "BatchNorm bias", lk);
      check_vec(op, L.running_mean, d.E, h, x.dtype(), x.device(), "BatchNorm running_mean", lk);
      check_vec(op, L.running_var, d.E, h, x.dtype(), x.device(), "BatchNorm running_var", lk);
      RECHUB_CHECK(!o.training || d.B > 1, op << ": BatchNorm in training needs more than 1 sample per batch (got "
                                              << d.B << "), as PyTorch's BatchNorm1d does");
    }
    d.h.push_back(h);
    d.bias.push_back(has_bias);
    d.bn.push_back(has_bn);
    h_in = h;
  }
  RECHUB_CHECK(o.dropout >= 0.0 && o.dropout < 1.0, op << ": dropout must be in [0, 1), got " << o.dropout);
  RECHUB_CHECK(o.bn_momentum >= 0.0 && o.bn_momentum <= 1.0,
               op << ": BatchNorm momentum must be in [0, 1], got " << o.bn_momentum);
  RECHUB_CHECK(o.bn_eps > 0.0, op << ": BatchNorm eps must be positive, got " << o.bn_eps);
  return d;
}

std::vector<Tensor> block_inputs(const Tensor& x, const std::vector<ExpertLayerParams>& layers) {
  std::vector<Tensor> inputs{x};
  for (const ExpertLayerParams& P : layers) {
    inputs.insert(inputs.end(), P.weight.begin(), P.weight.end());
    inputs.insert(inputs.end(), P.bias.begin(), P.bias.end());
    inputs.insert(inputs.end(), P.bn_weight.begin(), P.bn_weight.end());
    inputs.insert(inputs.end(), P.bn_bias.begin(), P.bn_bias.end());
  }
  return inputs;
}

BlockGradPlan::BlockGradPlan(const BlockDims& d, size_t n_inputs, const std::vector<bool>& need_)
    : need(need_), E(static_cast<size_t>(d.E)), has_bias(d.bias) {
  const size_t L = d.h.size();
  base.resize(L);
  size_t pos = 1;
  for (size_t k = 0; k < L; ++k) {
    base[k] = pos;
    pos += E * (1 + (d.bias[k] ? 1 : 0) + (d.bn[k] ? 2 : 0));
  }
  below.resize(L);
  bool acc = need[0];
  for (size_t k = 0; k < L; ++k) {
    acc = acc || any(base[k], k + 1 < L ? base[k + 1] : n_inputs);
    below[k] = acc;
  }
}

bool BlockGradPlan::any(size_t lo, size_t hi) const {
  for (size_t i = lo; i < hi; ++i)
    if (need[i]) return true;
  return false;
}

}  // namespace fused_detail

namespace {
using fused_detail::BlockDims;
using fused_detail::BlockGradPlan;
using fused_detail::dropout_mask;

template <class T>
std::vector<Tensor> dropout_masks_per_expert(const Tensor& m, int64_t B, int64_t E, int64_t h) {
  std::vector<Tensor> out;
  const T* pm = m.template data<T>();
  for (int64_t e = 0; e < E; ++e) {
    Tensor t = empty({B, h}, {.dtype = dtype_of<T>::value});
    T* pt = t.template data<T>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < h; ++c) pt[b * h + c] = pm[b * E * h + e * h + c];
    out.push_back(t);
  }
  return out;
}

// Concatenates E per-expert vectors [h] into a [E*h] buffer of T.
template <class T>
std::vector<T> concat_cols(const std::vector<Tensor>& v, int64_t h) {
  std::vector<T> out(v.size() * h);
  for (size_t e = 0; e < v.size(); ++e) {
    const T* p = v[e].template data<T>();
    std::copy(p, p + h, out.begin() + static_cast<int64_t>(e) * h);
  }
  return out;
}

// The stacked [E*h, in] first-layer weight: a view when the experts' weights lie back to back.
template <class T>
Tensor stacked_weight(const std::vector<Tensor>& w, int64_t h, int64_t in) {
  const int64_t E = static_cast<int64_t>(w.size());
  const T* base = w[0].template data<T>();
  bool adjacent = true;
  for (int64_t e = 1; e < E && adjacent; ++e)
    adjacent = w[e].impl()->storage == w[0].impl()->storage && w[e].template data<T>() == base + e * h * in;
  if (adjacent) return make_view(w[0].detach(), 0, {E * h, in});
  Tensor s = empty({E * h, in}, {.dtype = dtype_of<T>::value});
  T* ps = s.template data<T>();
  for (int64_t e = 0; e < E; ++e) std::copy(w[e].template data<T>(), w[e].template data<T>() + h * in, ps + e * h * in);
  return s;
}

template <class T>
struct SavedLayer {
  Tensor s;                            // [B, C]: normalised (BN) or biased pre-activation (no BN)
  Tensor a;                            // [B, C]: the layer's output (input of the next layer)
  Tensor mask;                         // [B, C] or undefined
  std::vector<T> gamma, beta, invstd;  // per column (BN only)
  std::vector<Tensor> w;               // per expert, detached
};

template <class T>
struct BlockState {
  BlockDims d;
  Activation act;
  bool training;
  Tensor x, w0;  // input and stacked first-layer weight
  std::vector<SavedLayer<T>> layers;
};

template <class T>
Tensor experts_forward_impl(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& o,
                            BlockDims d) {
  const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(layers.size());
  auto st = std::make_shared<BlockState<T>>();
  st->act = o.activation;
  st->training = o.training;
  st->x = x.detach();
  st->w0 = stacked_weight<T>(layers[0].weight, d.h[0], d.in);
  Generator& gen = o.generator ? *o.generator : default_generator();
  const bool drop = o.training && o.dropout > 0.0;
  dist::Communicator* bn_group = o.training ? dist::batch_stats_group() : nullptr;
  int64_t bn_rows = B;  // rows BatchNorm's statistics span (all ranks' in data-parallel training)
  Tensor prev = st->x;
  for (int64_t k = 0; k < L; ++k) {
    const ExpertLayerParams& P = layers[k];
    const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
    SavedLayer<T> S;
    for (const Tensor& w : P.weight) S.w.push_back(w.detach());
    Tensor z = empty({B, C}, {.dtype = dtype_of<T>::value});
    if (k == 0) {
      gemm_t<T>(false, true, B, C, d.in, prev.template data<T>(), d.in, st->w0.template data<T>(), d.in, T(0),
                z.template data<T>(), C);
    } else {
      const T* pp = prev.template data<T>();
      T* pz = z.template data<T>();
      kc::for_each_expert(E, [&](int64_t e) {
        gemm_t<T>(false, true, B, h, hp, pp + e * hp, Cp, S.w[e].template data<T>(), hp, T(0), pz + e * h, C);
      });
    }
    std::vector<T> bias = d.bias[k] ? concat_cols<T>(P.bias, h) : std::vector<T>(C, T(0));
    std::vector<T> shift(C), scale(C, T(1));
    if (d.bn[k]) {
      S.gamma = concat_cols<T>(P.bn_weight, h);
      S.beta = concat_cols<T>(P.bn_bias, h);
      S.invstd.resize(C);
      if (o.training) {
        std::vector<double> mean(C), var(C);
        kc::column_mean_var<T>(B, C, z.template data<T>(), C, mean.data(), var.data());
        // Data-parallel training: the statistics of the global batch (core/dist/sync.h).
        if (bn_group) bn_rows = dist::global_mean_var(*bn_group, B, mean.data(), var.data(), C);
        const double m = o.bn_momentum, unbias = static_cast<double>(bn_rows) / static_cast<double>(bn_rows - 1);
        for (int64_t c = 0; c < C; ++c) {
          shift[c] = static_cast<T>(mean[c]);
          S.invstd[c] = static_cast<T>(1.0 / std::sqrt(var[c] + o.bn_eps));
        }
        for (int64_t e = 0; e < E; ++e) {
          Tensor rm = P.running_mean[e], rv = P.running_var[e];
          T* prm = rm.template data<T>();
          T* prv = rv.template data<T>();
          for (int64_t c = 0; c < h; ++c) {
            const int64_t j = e * h + c;
            prm[c] = static_cast<T>((1.0 - m) * prm[c] + m * (mean[j] + static_cast<double>(bias[j])));
            prv[c] = static_cast<T>((1.0 - m) * prv[c] + m * var[j] * unbias);
          }
          rm.bump_version();
          rv.bump_version();
        }
      } else {
        for (int64_t e = 0; e < E; ++e) {
          const T* prm = P.running_mean[e].template data<T>();
          const T* prv = P.running_var[e].template data<T>();
          for (int64_t c = 0; c < h; ++c) {
            shift[e * h + c] = prm[c] - bias[e * h + c];
            S.invstd[e * h + c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(prv[c]) + o.bn_eps));
          }
        }
      }
      scale = S.invstd;
    } else {
      for (int64_t c = 0; c < C; ++c) shift[c] = -bias[c];
    }
    if (drop) S.mask = dropout_mask<T>(B, E, h, o.dropout, gen);
    Tensor a = empty({B, C}, {.dtype = dtype_of<T>::value});
    kc::normalize_activate<T>(B, C, z.template data<T>(), shift.data(), scale.data(),
                              d.bn[k] ? S.gamma.data() : nullptr, d.bn[k] ? S.beta.data() : nullptr,
                              kernel_act(o.activation), S.mask.defined() ? S.mask.template data<T>() : nullptr,
                              a.template data<T>());
    S.s = z;
    S.a = a;
    prev = a;
    st->layers.push_back(std::move(S));
  }
  Tensor out = prev;
  // The output's own handle must not be kept by its node (a cycle): keep a detached alias.
  st->layers.back().a = out.detach();
  st->d = d;

  std::vector<Tensor> inputs = fused_detail::block_inputs(x, layers);
  const size_t n_inputs = inputs.size();
  return record(
      out, "experts_forward", std::move(inputs),
      [st, n_inputs, bn_group, bn_rows](const Tensor& g, const std::vector<bool>& need) {
        const BlockDims& d = st->d;
        const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(st->layers.size());
        std::vector<Tensor> grads(n_inputs);
        const BlockGradPlan plan(d, n_inputs, need);
        auto any_need = [&](size_t lo, size_t hi) { return plan.any(lo, hi); };
        Tensor da = g;
        for (int64_t k = L - 1; k >= 0; --k) {
          if (!plan.below[k]) break;
          const SavedLayer<T>& S = st->layers[k];
          const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
          const bool bn = d.bn[k];
          const Tensor& prev = k == 0 ? st->x : st->layers[k - 1].a;
          Tensor dz = empty({B, C}, {.dtype = dtype_of<T>::value});
          std::vector<double> sum_dy(C, 0.0), sum_dys(C, 0.0);
          const T* pmask = S.mask.defined() ? S.mask.template data<T>() : nullptr;
          const bool bn_train = bn && st->training;
          // BatchNorm in training: the first pass only sums, the second recomputes dy.
          kc::activation_backward<T>(B, C, da.template data<T>(), S.s.template data<T>(), bn ? S.gamma.data() : nullptr,
                                     bn ? S.beta.data() : nullptr, kernel_act(st->act), S.a.template data<T>(), pmask,
                                     bn_train ? nullptr : dz.template data<T>(), sum_dy.data(),
                                     bn ? sum_dys.data() : nullptr);
          std::vector<double> dbias(C, 0.0);
          if (bn) {
            std::vector<T> kcol(C);
            for (int64_t c = 0; c < C; ++c) kcol[c] = S.gamma[c] * S.invstd[c];
            if (st->training) {
              std::vector<T> m1(C), m2(C);
              // Data-parallel: the means over the global batch; sum_dy and sum_dys stay this
              // rank's share for γ's and β's gradients (reduced with the other gradients).
              std::vector<double> gdy, gdys;
              if (bn_group) {
                gdy = sum_dy, gdys = sum_dys;
                dist::global_column_sums(*bn_group, gdy.data(), gdys.data(), C);
              }
              const std::vector<double>& tdy = bn_group ? gdy : sum_dy;
              const std::vector<double>& tdys = bn_group ? gdys : sum_dys;
              for (int64_t c = 0; c < C; ++c) {
                m1[c] = static_cast<T>(tdy[c] / static_cast<double>(bn_rows));
                m2[c] = static_cast<T>(tdys[c] / static_cast<double>(bn_rows));
              }
              kc::activation_batchnorm_backward<T>(B, C, da.template data<T>(), S.s.template data<T>(), S.gamma.data(),
                                                   S.beta.data(), kernel_act(st->act), S.a.template data<T>(), pmask,
                                                   kcol.data(), m1.data(), m2.data(), dz.template data<T>());
            } else {
              kc::batchnorm_backward<T>(B, C, dz.template data<T>(), S.s.template data<T>(), kcol.data(), nullptr,
                                        nullptr);
              for (int64_t c = 0; c < C; ++c) dbias[c] = static_cast<double>(kcol[c]) * sum_dy[c];
            }
          } else {
            dbias = sum_dy;
          }
          // Parameter gradients, per expert as views of one buffer per kind.
          const size_t w_at = plan.weight_at(k), b_at = plan.bias_at(k), g_at = plan.gamma_at(k),
                       be_at = plan.beta_at(k);
          const bool need_w = any_need(w_at, w_at + E), need_prev = k > 0 && plan.below[k - 1];
          Tensor dw = need_w ? empty({C, hp}, {.dtype = dtype_of<T>::value}) : Tensor();
          Tensor dprev = need_prev ? empty({B, Cp}, {.dtype = dtype_of<T>::value}) : Tensor();
          const T* pdz = dz.template data<T>();
          if (k == 0) {
            if (need_w)
              gemm_t<T>(true, false, C, hp, B, pdz, C, prev.template data<T>(), hp, T(0), dw.template data<T>(), hp);
          } else if (need_w || need_prev) {
            // Per expert: dW_e = dz_e^T a_prev,e and da_prev,e = dz_e W_e, one expert per thread.
            const T* pp = prev.template data<T>();
            T* pdw = need_w ? dw.template data<T>() : nullptr;
            T* pdp = need_prev ? dprev.template data<T>() : nullptr;
            kc::for_each_expert(E, [&](int64_t e) {
              if (pdw) gemm_t<T>(true, false, h, hp, B, pdz + e * h, C, pp + e * hp, Cp, T(0), pdw + e * h * hp, hp);
              if (pdp)
                gemm_t<T>(false, false, B, hp, h, pdz + e * h, C, S.w[e].template data<T>(), hp, T(0), pdp + e * hp,
                          Cp);
            });
          }
          if (need_w)
            for (int64_t e = 0; e < E; ++e)
              if (need[w_at + e]) grads[w_at + e] = make_view(dw, e * h * hp, {h, hp});
          auto vec_grads = [&](size_t at, const std::vector<double>& v) {
            if (!any_need(at, at + E)) return;
            Tensor t = empty({C}, {.dtype = dtype_of<T>::value});
            T* pt = t.template data<T>();
            for (int64_t c = 0; c < C; ++c) pt[c] = static_cast<T>(v[c]);
            for (int64_t e = 0; e < E; ++e)
              if (need[at + e]) grads[at + e] = make_view(t, e * h, {h});
          };
          if (d.bias[k]) vec_grads(b_at, dbias);
          if (bn) {
            vec_grads(g_at, sum_dys);
            vec_grads(be_at, sum_dy);
          }
          if (need_prev) {
            da = dprev;
          } else if (k == 0 && need[0]) {
            Tensor dx = empty({B, d.in}, {.dtype = dtype_of<T>::value});
            gemm_t<T>(false, false, B, d.in, C, dz.template data<T>(), C, st->w0.template data<T>(), d.in, T(0),
                      dx.template data<T>(), d.in);
            grads[0] = dx;
          }
        }
        return grads;
      });
}

template <class T>
GateMixOutput gate_mix_impl(const Tensor& x, const Tensor& w, const Tensor& b, const std::vector<Tensor>& experts,
                            int64_t h, const std::vector<int64_t>& counts) {
  const int64_t B = x.size(0), in = x.size(1), E = w.size(0);
  Tensor gates = empty({B, E}, {.dtype = dtype_of<T>::value});
  T* pg = gates.template data<T>();
  T beta = T(0);
  if (b.defined()) {
    const T* pb = b.template data<T>();
    for (int64_t r = 0; r < B; ++r) std::copy(pb, pb + E, pg + r * E);
    beta = T(1);
  } else if (in == 0) {
    gates.zero_();
  }
  if (in > 0) gemm_t<T>(false, true, B, E, in, x.template data<T>(), in, w.template data<T>(), in, beta, pg, E);
  kc::softmax_rows<T>(B, E, pg);
  std::vector<kc::ExpertBlock<T>> blocks;
  std::vector<Tensor> saved;
  for (size_t i = 0; i < experts.size(); ++i) {
    saved.push_back(experts[i].detach());
    blocks.push_back({experts[i].template data<T>(), counts[i] * h, counts[i]});
  }
  Tensor mixed = empty({B, h}, {.dtype = dtype_of<T>::value});
  kc::gate_mix_forward<T>(B, h, blocks.data(), static_cast<int64_t>(blocks.size()), pg, E, mixed.template data<T>());
  std::vector<Tensor> inputs{x, w, b};
  inputs.insert(inputs.end(), experts.begin(), experts.end());
  mixed = record(mixed, "gate_mix", std::move(inputs),
                 [xs = x.detach(), ws = w.detach(), gates, saved, counts, h, B, in, E](const Tensor& g,
                                                                                       const std::vector<bool>& need) {
                   std::vector<Tensor> grads(3 + saved.size());
                   std::vector<kc::ExpertBlock<T>> blocks;
                   std::vector<T*> dptr;
                   for (size_t i = 0; i < saved.size(); ++i) {
                     blocks.push_back({saved[i].template data<T>(), counts[i] * h, counts[i]});
                     if (need[3 + i]) {
                       grads[3 + i] = empty(saved[i].shape(), {.dtype = dtype_of<T>::value});
                       dptr.push_back(grads[3 + i].template data<T>());
                     } else {
                       dptr.push_back(nullptr);
                     }
                   }
                   const bool gate_params = need[0] || need[1] || need[2];
                   Tensor dlogits = gate_params ? empty({B, E}, {.dtype = dtype_of<T>::value}) : Tensor();
                   kc::gate_mix_backward<T>(B, h, blocks.data(), dptr.data(), static_cast<int64_t>(blocks.size()),
                                            gates.template data<T>(), E, g.template data<T>(),
                                            gate_params ? dlogits.template data<T>() : nullptr);
                   if (need[0]) {
                     grads[0] = empty({B, in}, {.dtype = dtype_of<T>::value});
                     if (in > 0)
                       gemm_t<T>(false, false, B, in, E, dlogits.template data<T>(), E, ws.template data<T>(), in, T(0),
                                 grads[0].template data<T>(), in);
                   }
                   if (need[1]) {
                     grads[1] = empty({E, in}, {.dtype = dtype_of<T>::value});
                     if (in > 0)
                       gemm_t<T>(true, false, E, in, B, dlogits.template data<T>(), E, xs.template data<T>(), in, T(0),
                                 grads[1].template data<T>(), in);
                   }
                   if (need[2]) {
                     std::vector<double> s(E);
                     kc::column_sums<T>(B, E, dlogits.template data<T>(), s.data());
                     grads[2] = empty({E}, {.dtype = dtype_of<T>::value});
                     for (int64_t e = 0; e < E; ++e) grads[2].template data<T>()[e] = static_cast<T>(s[e]);
                   }
                   return grads;
                 });
  return {mixed, gates};
}

std::vector<int64_t> check_gate(const char* op, const Tensor& x, const Tensor& w, const Tensor& b,
                                const std::vector<Tensor>& experts, int64_t h) {
  if (b.defined())
    detail::check_float_operands(op, {&x, &w, &b});
  else
    detail::check_float_operands(op, {&x, &w});
  RECHUB_CHECK(x.dim() == 2, op << ": expected the gate input [batch, features], got " << shape_str(x.shape()));
  RECHUB_CHECK(w.dim() == 2 && w.size(1) == x.size(1), op << ": gate weight " << shape_str(w.shape())
                                                          << (w.name().empty() ? "" : " ('" + w.name() + "')")
                                                          << " does not match the input " << shape_str(x.shape())
                                                          << ": expected [experts, " << x.size(1) << "]");
  const int64_t E = w.size(0);
  RECHUB_CHECK(E >= 1, op << ": the gate has no experts");
  if (b.defined())
    RECHUB_CHECK(b.dim() == 1 && b.size(0) == E,
                 op << ": gate bias " << shape_str(b.shape()) << " does not match " << E << " experts");
  RECHUB_CHECK(h >= 1, op << ": expert_dim must be positive, got " << h);
  RECHUB_CHECK(!experts.empty(), op << ": no expert outputs given");
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (size_t i = 0; i < experts.size(); ++i) {
    const Tensor& t = experts[i];
    detail::check_float_operands(op, {&x, &t});
    RECHUB_CHECK(t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) % h == 0 && t.size(1) > 0,
                 op << ": expert outputs " << i << " have shape " << shape_str(t.shape()) << ", expected [" << x.size(0)
                    << ", n * " << h << "] (the batch of the gate input, whole experts of width " << h << ")");
    counts.push_back(t.size(1) / h);
    total += counts.back();
  }
  RECHUB_CHECK(total == E, op << ": the gate weighs " << E << " experts but " << total << " expert outputs were given");
  return counts;
}

}  // namespace

Activation activation_from_name(const std::string& name, const std::string& what) {
  if (name == "relu") return Activation::relu;
  if (name == "leaky_relu" || name == "leakyrelu") return Activation::leaky_relu;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "linear" || name == "identity" || name == "none") return Activation::identity;
  RECHUB_FAIL(what << ": unknown activation '" << name
                   << "': expected one of relu, leaky_relu, sigmoid, tanh, linear (prelu and dice have learnable "
                      "parameters and are not supported inside expert blocks)");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::identity:
      return "linear";
    case Activation::relu:
      return "relu";
    case Activation::leaky_relu:
      return "leaky_relu";
    case Activation::sigmoid:
      return "sigmoid";
    case Activation::tanh:
      return "tanh";
  }
  return "?";
}

Tensor activate(const Tensor& x, Activation a) {
  switch (a) {
    case Activation::identity:
      return x;
    case Activation::relu:
      return relu(x);
    case Activation::leaky_relu:
      return leaky_relu(x, kc::kLeakyReluSlope);
    case Activation::sigmoid:
      return sigmoid(x);
    case Activation::tanh:
      return tanh(x);
  }
  return x;
}

Tensor experts_forward(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& opts) {
  BlockDims d = fused_detail::check_block("experts_forward", x, layers, opts);
  Tensor out;
  // CUDA (f32): core/ops_fused_cuda.cpp, the same computation with cuBLAS and the kernels of
  // kernels/cuda/fused.h.
#ifdef RECHUB_WITH_CUDA
  if (x.device().is_cuda()) return fused_detail::experts_forward_cuda(x, layers, opts, d);
#endif
  RECHUB_FLOAT_DISPATCH(x.dtype(), "experts_forward", out = experts_forward_impl<scalar_t>(x, layers, opts, d));
  return out;
}

Tensor experts_forward_unfused(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& o) {
  BlockDims d = fused_detail::check_block("experts_forward_unfused", x, layers, o);
  const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(layers.size());
  // Masks first, layer by layer, so the draws match the fused op's order.
  std::vector<std::vector<Tensor>> masks(L);
  if (o.training && o.dropout > 0.0) {
    Generator& gen = o.generator ? *o.generator : default_generator();
    for (int64_t k = 0; k < L; ++k) {
      RECHUB_FLOAT_DISPATCH(x.dtype(), "experts_forward_unfused", {
        Tensor m = dropout_mask<scalar_t>(B, E, d.h[k], o.dropout, gen);
        masks[k] = dropout_masks_per_expert<scalar_t>(m, B, E, d.h[k]);
      });
      for (Tensor& t : masks[k]) t = t.to(x.device());  // drawn on the CPU, like the fused op's
    }
  }
  std::vector<Tensor> outs;
  for (int64_t e = 0; e < E; ++e) {
    Tensor a = x;
    for (int64_t k = 0; k < L; ++k) {
      const ExpertLayerParams& P = layers[k];
      Tensor z = linear(a, P.weight[e], d.bias[k] ? P.bias[e] : Tensor());
      Tensor y = z;
      if (d.bn[k]) {
        Tensor zhat;
        if (o.training) {
          Tensor mu = mean(z, 0, true);
          Tensor zc = z - mu;
          Tensor var = mean(zc * zc, 0, true);
          zhat = zc / sqrt(var + o.bn_eps);
          NoGradGuard ng;
          const double m = o.bn_momentum, unbias = static_cast<double>(B) / static_cast<double>(B - 1);
          Tensor rm = P.running_mean[e], rv = P.running_var[e];
          rm.copy_(add(mul(rm, 1.0 - m), mul(reshape(mu, {d.h[k]}), m)));
          rv.copy_(add(mul(rv, 1.0 - m), mul(reshape(var, {d.h[k]}), m * unbias)));
        } else {
          Tensor rm = P.running_mean[e].detach(), rv = P.running_var[e].detach();
          zhat = (z - rm) / sqrt(rv + o.bn_eps);
        }
        y = zhat * P.bn_weight[e] + P.bn_bias[e];
      }
      a = activate(y, o.activation);
      if (!masks[k].empty()) a = a * masks[k][e];
    }
    outs.push_back(a);
  }
  return E == 1 ? outs[0] : concat(outs, 1);
}

GateMixOutput gate_mix(const Tensor& x, const Tensor& weight, const Tensor& bias, const std::vector<Tensor>& experts,
                       int64_t expert_dim) {
  std::vector<int64_t> counts = check_gate("gate_mix", x, weight, bias, experts, expert_dim);
  GateMixOutput out;
  // CUDA (f32): core/ops_fused_cuda.cpp.
#ifdef RECHUB_WITH_CUDA
  if (x.device().is_cuda()) return fused_detail::gate_mix_cuda(x, weight, bias, experts, expert_dim, counts);
#endif
  RECHUB_FLOAT_DISPATCH(x.dtype(), "gate_mix",
                        out = gate_mix_impl<scalar_t>(x, weight, bias, experts, expert_dim, counts));
  return out;
}

GateMixOutput gate_mix_unfused(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const std::vector<Tensor>& experts, int64_t expert_dim) {
  check_gate("gate_mix_unfused", x, weight, bias, experts, expert_dim);
  const int64_t B = x.size(0), E = weight.size(0);
  Tensor g = softmax(linear(x, weight, bias), 1);
  Tensor all = experts.size() == 1 ? experts[0] : concat(experts, 1);
  Tensor weighted = reshape(all, {B, E, expert_dim}) * unsqueeze(g, 2);
  return {sum(weighted, 1), g.detach()};
}

}  // namespace rechub::ops
