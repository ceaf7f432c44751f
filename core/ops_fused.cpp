// experts_forward and gate_mix: forward and hand-written backward (see core/ops_fused.h for the
// layout), plus their compositions from basic ops. Each op is written once for every device: the
// shapes, the saved tensors, the autograd node and the order of kernel calls live here
// (experts_forward_impl, gate_mix_impl), the device work behind the entry points of
// kernels/experts.h (kernels/cpu/experts.cpp for f32/f64, kernels/cuda/experts.cu for f32).
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
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

#include "rechub/core/autograd.h"
#include "rechub/core/dispatch.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/experts.h"

namespace rechub::ops {
namespace {
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

// Shapes of an expert block, as check_block validated them.
struct BlockDims {
  int64_t B = 0, in = 0, E = 0;
  std::vector<int64_t> h;      // width of each layer
  std::vector<bool> bias, bn;  // per layer: has a bias, has BatchNorm
};

// Validates x and every parameter (defined, dense, x's dtype and device, shapes) and the options.
BlockDims check_block(const char* op, const Tensor& x, const std::vector<ExpertLayerParams>& layers,
                      const ExpertsOptions& o);

// Dropout masks for all experts of one layer as a CPU tensor [B, E*h] of 0 and 1/(1-p), drawn
// expert by expert (row-major within an expert) so that the unfused path, which draws [B, h] per
// expert, and the CUDA path, which copies this mask to the device, see the same values.
template <class T>
Tensor dropout_mask(int64_t B, int64_t E, int64_t h, double p, Generator& gen) {
  Tensor m = empty({B, E * h}, {.dtype = dtype_of<T>::value});
  T* pm = m.template data<T>();
  const T keep = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < h; ++c) pm[b * E * h + e * h + c] = gen.uniform() < p ? T(0) : keep;
  return m;
}

// The inputs of the block's autograd node: x, then per layer the E weights, the E biases (if
// any), the E BatchNorm gammas and the E betas (if BatchNorm).
std::vector<Tensor> block_inputs(const Tensor& x, const std::vector<ExpertLayerParams>& layers);

// Where each layer's parameters sit among those inputs, and which gradients the backward needs.
struct BlockGradPlan {
  BlockGradPlan(const BlockDims& d, size_t n_inputs, const std::vector<bool>& need);
  bool any(size_t lo, size_t hi) const;  // some input in [lo, hi) needs a gradient
  size_t weight_at(int64_t k) const { return base[k]; }
  size_t bias_at(int64_t k) const { return base[k] + E; }
  size_t gamma_at(int64_t k) const { return base[k] + E * (has_bias[k] ? 2 : 1); }
  size_t beta_at(int64_t k) const { return gamma_at(k) + E; }

  const std::vector<bool>& need;
  size_t E;
  std::vector<bool> has_bias;
  std::vector<size_t> base;  // input index of layer k's first weight
  std::vector<bool> below;   // x or a parameter of layers 0..k needs a gradient
};

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

// The kernel entry points of the device `dev` (kernels/experts.h); CUDA runs f32 only, which
// check_float_operands enforced.
template <class T>
const kernels::ExpertKernels<T>& kernels_on(const Device& dev) {
#ifdef RECHUB_WITH_CUDA
  if constexpr (std::is_same_v<T, float>)
    if (dev.is_cuda()) return kernels::cuda::expert_kernels();
#endif
  RECHUB_CHECK(dev.is_cpu(), "experts_forward/gate_mix: no kernels for " << dev.str());
  return kernels::cpu::expert_kernels<T>();
}

// Kernels launch on the current CUDA device: makes `dev` current (nothing to do on the CPU).
void make_current(const Device& dev) {
#ifdef RECHUB_WITH_CUDA
  if (dev.is_cuda()) cuda::use_device(dev.index);
#else
  (void)dev;
#endif
}

using detail::cptr;
using detail::mptr;

// E per-expert tensors of the same shape as one stacked tensor [E * each[0], each[1:]...].
struct Stacked {
  Tensor t;
  bool view = false;  // a view of the experts' own storage (else a copy)
};
// Tensors derived from weights that do not change between calls, for inference (no autograd,
// BatchNorm in eval mode, CPU): an expert layer's E weights are separate tensors, and copying them
// into one block on every call was a third of a batch-1 MMoE forward; packing the stacked [E*h, in]
// weight's transpose for a single row was most of what was left. An entry holds while every source
// tensor lives in the same storage, at the same offset, with the same version (each in-place write
// bumps it: an optimizer step, a checkpoint load, copy_); a miss derives new tensors, so a tensor
// handed out earlier never changes. Entries are keyed by their first source; dead entries go when a
// new one is stored.
class ConstantCache {
 public:
  static ConstantCache& get() {
    static ConstantCache* c = new ConstantCache();  // never destroyed: used until the process ends
    return *c;
  }
  // The derived tensors of `src`, or none.
  std::vector<Tensor> find(const std::vector<Tensor>& src) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = map_.find(src[0].impl());
    if (it == map_.end() || it->second.src.size() != src.size()) return {};
    for (size_t e = 0; e < src.size(); ++e) {
      const Source& s = it->second.src[e];
      if (s.impl != src[e].impl() || s.storage.lock() != src[e].impl()->storage || s.offset != src[e].impl()->offset ||
          s.version != src[e].version())
        return {};
    }
    return it->second.derived;
  }
  void put(const std::vector<Tensor>& src, std::vector<Tensor> derived) {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = map_.begin(); it != map_.end();)
      it = it->second.src[0].storage.expired() ? map_.erase(it) : std::next(it);
    Entry& en = map_[src[0].impl()];
    en.src.clear();
    for (const Tensor& t : src) en.src.push_back({t.impl(), t.impl()->storage, t.impl()->offset, t.version()});
    en.derived = std::move(derived);
  }

 private:
  struct Source {
    const TensorImpl* impl;
    std::weak_ptr<Storage> storage;
    int64_t offset;
    uint64_t version;
  };
  struct Entry {
    std::vector<Source> src;
    std::vector<Tensor> derived;
  };
  std::mutex mu_;
  std::map<const TensorImpl*, Entry> map_;
};

template <class T>
Stacked stack_experts(const std::vector<Tensor>& v) {
  const Shape& each = v[0].shape();
  const int64_t E = static_cast<int64_t>(v.size()), n = v[0].numel();
  Shape stacked = each;
  stacked[0] *= E;
  const T* base = v[0].template data<T>();
  bool adjacent = true;
  for (int64_t e = 1; e < E && adjacent; ++e)
    adjacent = v[e].impl()->storage == v[0].impl()->storage && v[e].template data<T>() == base + e * n;
  if (adjacent) return {make_view(v[0].detach(), 0, stacked), true};
  Tensor s = empty(stacked, {.dtype = dtype_of<T>::value, .device = v[0].device()});
  for (int64_t e = 0; e < E; ++e) make_view(s, e * n, each).copy_(v[e].detach());  // on CUDA: queued
  return {s, false};
}

// What an expert layer computes in eval mode that depends on its parameters only (CPU): the weights
// transposed to [in, E*h] for the first layer and to E blocks [h_prev, h] after it, so the GEMM
// reads them in place as a plain B (kernels/cpu: no per-call packing, and the few-rows path for a
// single request); BatchNorm's folded shift and 1/std (bn_prepare, as every eval call computes them,
// bias included), gamma and beta stacked; the bias stacked where there is no BatchNorm. The GEMM sums
// each element's products in the same order as against the untransposed weight, so the result has
// the same bits.
struct LayerConstants {
  Tensor wt, bias, shift, invstd, gamma, beta;
};

template <class T>
LayerConstants layer_constants(const ExpertLayerParams& P, const fused_detail::BlockDims& d, int64_t k,
                               const ExpertsOptions& o) {
  std::vector<Tensor> src = P.weight;
  for (const std::vector<Tensor>* v : {&P.bias, &P.bn_weight, &P.bn_bias, &P.running_mean, &P.running_var})
    src.insert(src.end(), v->begin(), v->end());
  if (std::vector<Tensor> hit = ConstantCache::get().find(src); !hit.empty())
    return {hit[0], hit[1], hit[2], hit[3], hit[4], hit[5]};

  const int64_t E = d.E, h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1];
  const TensorOptions t_opts{.dtype = dtype_of<T>::value};
  LayerConstants lc;
  // Expert e's weight [h, hp]: row r, column i goes to Wt[i * C + e * h + r] in the first layer (one
  // [hp, C] matrix) and to Wt[e * hp * h + i * h + r] after it (E matrices [hp, h]).
  lc.wt = empty(k == 0 ? Shape{hp, C} : Shape{E * hp, h}, t_opts);
  T* wt = lc.wt.template data<T>();
  for (int64_t e = 0; e < E; ++e) {
    const T* pw = P.weight[e].template data<T>();
    T* dst = k == 0 ? wt + e * h : wt + e * hp * h;
    const int64_t ld = k == 0 ? C : h;
    for (int64_t r = 0; r < h; ++r)
      for (int64_t i = 0; i < hp; ++i) dst[i * ld + r] = pw[r * hp + i];
  }
  if (d.bias[k]) lc.bias = stack_experts<T>(P.bias).t;
  if (d.bn[k]) {
    lc.gamma = stack_experts<T>(P.bn_weight).t;
    lc.beta = stack_experts<T>(P.bn_bias).t;
    Tensor rm = stack_experts<T>(P.running_mean).t, rv = stack_experts<T>(P.running_var).t;
    lc.invstd = empty({C}, t_opts);
    lc.shift = empty({C}, t_opts);
    // Eval reads the running statistics only (unbias is not used).
    kernels::cpu::expert_kernels<T>().bn_prepare(C, false, nullptr, nullptr, cptr<T>(lc.bias), o.bn_momentum, o.bn_eps,
                                                 1.0, rm.template data<T>(), rv.template data<T>(),
                                                 lc.shift.template data<T>(), lc.invstd.template data<T>());
  }
  ConstantCache::get().put(src, {lc.wt, lc.bias, lc.shift, lc.invstd, lc.gamma, lc.beta});
  return lc;
}

// Per layer, what the backward needs (tensors on the input's device).
struct SavedLayer {
  Tensor s;                    // [B, C]: normalised (BN) or biased pre-activation (no BN)
  Tensor a;                    // [B, C]: the layer's output (input of the next layer)
  Tensor mask;                 // [B, C] or undefined
  Tensor w;                    // stacked weights [C, hp]
  Tensor gamma, beta, invstd;  // [C] each (BN only)
};

struct BlockState {
  BlockDims d;
  Activation act = Activation::relu;
  bool training = true;
  Tensor x;
  std::vector<SavedLayer> layers;
};

template <class T>
Tensor experts_forward_impl(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& o,
                            const BlockDims& d) {
  const Device dev = x.device();
  make_current(dev);
  const kernels::ExpertKernels<T>& K = kernels_on<T>(dev);
  const TensorOptions t_opts{.dtype = dtype_of<T>::value, .device = dev}, f64_opts{.dtype = DType::f64, .device = dev};
  const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(layers.size());
  auto st = std::make_shared<BlockState>();
  st->d = d;
  st->act = o.activation;
  st->training = o.training;
  st->x = x.detach();
  Generator& gen = o.generator ? *o.generator : default_generator();
  const bool drop = o.training && o.dropout > 0.0;
  // Data-parallel training (CPU): BatchNorm's statistics over the global batch (core/dist/sync.h).
  dist::Communicator* bn_group = o.training && dev.is_cpu() ? dist::batch_stats_group() : nullptr;
  int64_t bn_rows = B;  // rows BatchNorm's statistics span (all ranks' in data-parallel training)
  Tensor prev = st->x;
  // Inference on the CPU inside a ConstantWeightsScope: what depends on the weights only is kept
  // between calls (layer_constants). No backward follows, so nothing is saved for one.
  const bool constant = !o.training && !grad_enabled() && ConstantWeightsScope::active() && dev.is_cpu();
  for (int64_t k = 0; k < L && constant; ++k) {
    const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
    const LayerConstants lc = layer_constants<T>(layers[k], d, k, o);
    Tensor z = empty({B, C}, t_opts);
    if (k == 0) {
      if (d.in == 0)
        z.zero_();
      else
        K.gemm(false, false, B, C, d.in, T(1), prev.template data<T>(), d.in, lc.wt.template data<T>(), C, T(0),
               z.template data<T>(), C);
    } else {
      K.gemm_strided_batched(false, false, B, h, hp, T(1), prev.template data<T>(), Cp, hp, lc.wt.template data<T>(), h,
                             hp * h, T(0), z.template data<T>(), C, h, E);
    }
    Tensor a = empty({B, C}, t_opts);
    K.normalize_activate(B, C, z.template data<T>(), d.bn[k] ? nullptr : cptr<T>(lc.bias), cptr<T>(lc.shift),
                         cptr<T>(lc.invstd), cptr<T>(lc.gamma), cptr<T>(lc.beta), o.activation, nullptr,
                         a.template data<T>());
    prev = a;
    if (k + 1 == L) return a;
  }
  for (int64_t k = 0; k < L; ++k) {
    const ExpertLayerParams& P = layers[k];
    const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
    SavedLayer S;
    S.w = stack_experts<T>(P.weight).t;
    // z = a_prev W^T, no bias: one GEMM against the stacked weight for k = 0; for k > 0 one per
    // expert, reading columns [e*hp, (e+1)*hp) of a_prev and writing columns [e*h, (e+1)*h) of z.
    Tensor z = empty({B, C}, t_opts);
    if (k == 0) {
      if (d.in == 0)
        z.zero_();
      else
        K.gemm(false, true, B, C, d.in, T(1), prev.template data<T>(), d.in, S.w.template data<T>(), d.in, T(0),
               z.template data<T>(), C);
    } else {
      K.gemm_strided_batched(false, true, B, h, hp, T(1), prev.template data<T>(), Cp, hp, S.w.template data<T>(), hp,
                             h * hp, T(0), z.template data<T>(), C, h, E);
    }
    const Tensor bias = d.bias[k] ? stack_experts<T>(P.bias).t : Tensor();
    Tensor shift;
    if (d.bn[k]) {
      S.gamma = stack_experts<T>(P.bn_weight).t;
      S.beta = stack_experts<T>(P.bn_bias).t;
      Stacked rm = stack_experts<T>(P.running_mean), rv = stack_experts<T>(P.running_var);
      S.invstd = empty({C}, t_opts);
      shift = empty({C}, t_opts);
      Tensor mean, var;
      if (o.training) {
        mean = empty({C}, f64_opts);
        var = empty({C}, f64_opts);
        K.column_mean_var(B, C, z.template data<T>(), C, mean.template data<double>(), var.template data<double>());
        if (bn_group) bn_rows = dist::global_mean_var(*bn_group, B, mean.data<double>(), var.data<double>(), C);
      }
      const double unbias = static_cast<double>(bn_rows) / static_cast<double>(bn_rows - 1);  // B > 1 (checked)
      K.bn_prepare(C, o.training, cptr<double>(mean), cptr<double>(var), cptr<T>(bias), o.bn_momentum, o.bn_eps, unbias,
                   rm.t.template data<T>(), rv.t.template data<T>(), shift.template data<T>(),
                   S.invstd.template data<T>());
      if (o.training) {
        for (int64_t e = 0; e < E; ++e) {
          Tensor rme = P.running_mean[e], rve = P.running_var[e];  // handles to the caller's buffers
          if (rm.view)
            rme.bump_version();
          else
            rme.copy_(make_view(rm.t, e * h, {h}));  // copy_ bumps the version
          if (rv.view)
            rve.bump_version();
          else
            rve.copy_(make_view(rv.t, e * h, {h}));
        }
      }
    }
    // Drawn on the CPU in the unfused path's order; on CUDA queued to the device without a wait.
    if (drop) S.mask = upload(dropout_mask<T>(B, E, h, o.dropout, gen), dev);
    Tensor a = empty({B, C}, t_opts);
    // BatchNorm: the bias cancels in training and is folded into the shift in eval.
    K.normalize_activate(B, C, z.template data<T>(), d.bn[k] ? nullptr : cptr<T>(bias), cptr<T>(shift),
                         cptr<T>(S.invstd), cptr<T>(S.gamma), cptr<T>(S.beta), o.activation, cptr<T>(S.mask),
                         a.template data<T>());
    S.s = z;
    S.a = a;
    prev = a;
    st->layers.push_back(std::move(S));
  }
  Tensor out = prev;
  // The output's own handle must not be kept by its node (a cycle): keep a detached alias.
  st->layers.back().a = out.detach();

  std::vector<Tensor> inputs = fused_detail::block_inputs(x, layers);
  const size_t n_inputs = inputs.size();
  return record(
      out, "experts_forward", std::move(inputs),
      [st, n_inputs, bn_group, bn_rows](const Tensor& g, const std::vector<bool>& need) {
        const BlockDims& d = st->d;
        const Device dev = st->x.device();
        make_current(dev);
        const kernels::ExpertKernels<T>& K = kernels_on<T>(dev);
        const TensorOptions t_opts{.dtype = dtype_of<T>::value, .device = dev},
            f64_opts{.dtype = DType::f64, .device = dev};
        const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(st->layers.size());
        std::vector<Tensor> grads(n_inputs);
        const BlockGradPlan plan(d, n_inputs, need);
        Tensor da = g;
        for (int64_t k = L - 1; k >= 0; --k) {
          if (!plan.below[k]) break;
          const SavedLayer& S = st->layers[k];
          const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
          const bool bn = d.bn[k], bn_train = bn && st->training;
          const Tensor& prev = k == 0 ? st->x : st->layers[k - 1].a;
          const size_t w_at = plan.weight_at(k), b_at = plan.bias_at(k), g_at = plan.gamma_at(k),
                       be_at = plan.beta_at(k);
          const bool need_w = plan.any(w_at, w_at + E), need_prev = k > 0 && plan.below[k - 1];
          const bool need_b = d.bias[k] && plan.any(b_at, b_at + E);
          const bool need_g = bn && plan.any(g_at, g_at + E), need_be = bn && plan.any(be_at, be_at + E);

          // dy and its column sums; dz = dy unless BatchNorm's training backward follows.
          Tensor dz = empty({B, C}, t_opts);
          Tensor sums = empty({2, C}, f64_opts);
          double* sum_dy = sums.data<double>();
          double* sum_dys = bn ? sum_dy + C : nullptr;
          K.activation_backward(B, C, da.template data<T>(), S.s.template data<T>(), cptr<T>(S.gamma), cptr<T>(S.beta),
                                st->act, S.a.template data<T>(), cptr<T>(S.mask),
                                bn_train ? nullptr : dz.template data<T>(), sum_dy, sum_dys);
          // Per-column factors and the vector gradients (one [C] tensor per kind, viewed per expert).
          Tensor kcol = bn ? empty({C}, t_opts) : Tensor();
          Tensor m12 = bn_train ? empty({2, C}, t_opts) : Tensor();
          Tensor dbias = need_b ? empty({C}, t_opts) : Tensor();
          Tensor dgamma = need_g ? empty({C}, t_opts) : Tensor();
          Tensor dbeta = need_be ? empty({C}, t_opts) : Tensor();
          T* m1 = bn_train ? m12.template data<T>() : nullptr;
          T* m2 = bn_train ? m1 + C : nullptr;
          const kernels::BnMode mode =
              !bn ? kernels::BnMode::none : (st->training ? kernels::BnMode::train : kernels::BnMode::eval);
          if (bn_group && bn_train) {
            // Data-parallel: the means over the global batch; sum_dy and sum_dys stay this rank's
            // share for gamma's and beta's gradients (reduced with the other gradients).
            Tensor global = sums.clone();
            double* gdy = global.data<double>();
            dist::global_column_sums(*bn_group, gdy, gdy + C, C);
            K.bn_grad_columns(C, bn_rows, mode, gdy, gdy + C, cptr<T>(S.gamma), cptr<T>(S.invstd), mptr<T>(kcol), m1,
                              m2, nullptr, nullptr, nullptr);
            K.bn_grad_columns(C, bn_rows, mode, sum_dy, sum_dys, cptr<T>(S.gamma), cptr<T>(S.invstd), nullptr, nullptr,
                              nullptr, mptr<T>(dbias), mptr<T>(dgamma), mptr<T>(dbeta));
          } else {
            K.bn_grad_columns(C, B, mode, sum_dy, sum_dys, cptr<T>(S.gamma), cptr<T>(S.invstd), mptr<T>(kcol), m1, m2,
                              mptr<T>(dbias), mptr<T>(dgamma), mptr<T>(dbeta));
          }
          if (bn_train)
            K.activation_bn_backward(B, C, da.template data<T>(), S.s.template data<T>(), S.gamma.template data<T>(),
                                     S.beta.template data<T>(), st->act, S.a.template data<T>(), cptr<T>(S.mask),
                                     kcol.template data<T>(), m1, m2, dz.template data<T>());
          else if (bn)
            K.scale_columns(B, C, dz.template data<T>(), kcol.template data<T>());

          // dW = dz^T a_prev and da_prev = dz W, per expert (strided-batched) for k > 0.
          Tensor dw = need_w ? empty({C, hp}, t_opts) : Tensor();
          Tensor dprev = need_prev ? empty({B, Cp}, t_opts) : Tensor();
          const T* pdz = dz.template data<T>();
          if (need_w && B == 0) {
            dw.zero_();
          } else if (need_w && k == 0) {
            K.gemm(true, false, C, hp, B, T(1), pdz, C, prev.template data<T>(), hp, T(0), dw.template data<T>(), hp);
          } else if (need_w) {
            K.gemm_strided_batched(true, false, h, hp, B, T(1), pdz, C, h, prev.template data<T>(), Cp, hp, T(0),
                                   dw.template data<T>(), hp, h * hp, E);
          }
          if (need_prev)
            K.gemm_strided_batched(false, false, B, hp, h, T(1), pdz, C, h, S.w.template data<T>(), hp, h * hp, T(0),
                                   dprev.template data<T>(), Cp, hp, E);
          if (need_w)
            for (int64_t e = 0; e < E; ++e)
              if (need[w_at + e]) grads[w_at + e] = make_view(dw, e * h * hp, {h, hp});
          auto vec_grads = [&](size_t at, const Tensor& t) {
            if (!t.defined()) return;
            for (int64_t e = 0; e < E; ++e)
              if (need[at + e]) grads[at + e] = make_view(t, e * h, {h});
          };
          vec_grads(b_at, dbias);
          vec_grads(g_at, dgamma);
          vec_grads(be_at, dbeta);
          if (need_prev) {
            da = dprev;
          } else if (k == 0 && need[0]) {
            Tensor dx = empty({B, d.in}, t_opts);
            K.gemm(false, false, B, d.in, C, T(1), pdz, C, S.w.template data<T>(), d.in, T(0), dx.template data<T>(),
                   d.in);
            grads[0] = dx;
          }
        }
        return grads;
      });
}

template <class T>
kernels::GateBlocks<T> gate_blocks(const std::vector<Tensor>& ts, const std::vector<int64_t>& counts) {
  kernels::GateBlocks<T> gb;
  gb.n = static_cast<int>(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    gb.data[i] = ts[i].template data<T>();
    gb.count[i] = counts[i];
  }
  return gb;
}

template <class T>
GateMixOutput gate_mix_impl(const Tensor& x, const Tensor& w, const Tensor& b, const std::vector<Tensor>& experts,
                            int64_t h, const std::vector<int64_t>& counts) {
  const Device dev = x.device();
  make_current(dev);
  const kernels::ExpertKernels<T>& K = kernels_on<T>(dev);
  const TensorOptions t_opts{.dtype = dtype_of<T>::value, .device = dev};
  const int64_t B = x.size(0), in = x.size(1), E = w.size(0);
  // logits = x Wg^T + bg (the bias written first, the GEMM accumulating onto it), then softmax.
  Tensor logits = empty({B, E}, t_opts);
  if (b.defined())
    K.broadcast_rows(b.template data<T>(), B, E, logits.template data<T>());
  else if (in == 0)
    logits.zero_();
  if (in > 0)
    K.gemm(false, true, B, E, in, T(1), x.template data<T>(), in, w.template data<T>(), in, b.defined() ? T(1) : T(0),
           logits.template data<T>(), E);
  Tensor gates = empty({B, E}, t_opts);
  K.softmax_rows(B, E, logits.template data<T>(), gates.template data<T>());

  // The expert blocks as the kernels take them; more than kMaxGateBlocks are concatenated first.
  std::vector<Tensor> saved;
  std::vector<int64_t> saved_counts;
  const bool merged = static_cast<int>(experts.size()) > kernels::kMaxGateBlocks;
  if (merged) {
    NoGradGuard ng;
    std::vector<Tensor> ds;
    for (const Tensor& t : experts) ds.push_back(t.detach());
    saved.push_back(concat(ds, 1));
    saved_counts.push_back(E);
  } else {
    for (const Tensor& t : experts) saved.push_back(t.detach());
    saved_counts = counts;
  }
  Tensor mixed = empty({B, h}, t_opts);
  K.gate_mix_forward(B, h, gate_blocks<T>(saved, saved_counts), gates.template data<T>(), E, mixed.template data<T>());

  std::vector<Tensor> inputs{x, w, b};
  inputs.insert(inputs.end(), experts.begin(), experts.end());
  const size_t n_blocks = experts.size();
  mixed = record(mixed, "gate_mix", std::move(inputs),
                 [xs = x.detach(), ws = w.detach(), gates, saved, saved_counts, counts, merged, n_blocks, h, B, in, E](
                     const Tensor& g, const std::vector<bool>& need) {
                   const Device dev = xs.device();
                   make_current(dev);
                   const kernels::ExpertKernels<T>& K = kernels_on<T>(dev);
                   const TensorOptions t_opts{.dtype = dtype_of<T>::value, .device = dev};
                   std::vector<Tensor> grads(3 + n_blocks);
                   kernels::GateBlocks<T> gb = gate_blocks<T>(saved, saved_counts);
                   bool any_block = false;
                   for (size_t i = 0; i < n_blocks; ++i) any_block = any_block || need[3 + i];
                   Tensor dmerged;
                   if (merged) {
                     if (any_block) {
                       dmerged = empty(saved[0].shape(), t_opts);
                       gb.grad[0] = dmerged.template data<T>();
                     }
                   } else {
                     for (size_t i = 0; i < n_blocks; ++i)
                       if (need[3 + i]) {
                         grads[3 + i] = empty(saved[i].shape(), t_opts);
                         gb.grad[i] = grads[3 + i].template data<T>();
                       }
                   }
                   const bool gate_params = need[0] || need[1] || need[2];
                   Tensor dlogits = gate_params ? empty({B, E}, t_opts) : Tensor();
                   if (gate_params || any_block)
                     K.gate_mix_backward(B, h, gb, gates.template data<T>(), E, g.template data<T>(), mptr<T>(dlogits));
                   if (merged && any_block) {
                     int64_t at = 0;
                     for (size_t i = 0; i < n_blocks; ++i) {
                       if (need[3 + i]) grads[3 + i] = narrow(dmerged, 1, at, counts[i] * h).clone();
                       at += counts[i] * h;
                     }
                   }
                   if (need[0]) {
                     grads[0] = empty({B, in}, t_opts);
                     if (in > 0)
                       K.gemm(false, false, B, in, E, T(1), dlogits.template data<T>(), E, ws.template data<T>(), in,
                              T(0), grads[0].template data<T>(), in);
                   }
                   if (need[1]) {
                     grads[1] = empty({E, in}, t_opts);
                     if (in > 0 && B == 0)
                       grads[1].zero_();
                     else if (in > 0)
                       K.gemm(true, false, E, in, B, T(1), dlogits.template data<T>(), E, xs.template data<T>(), in,
                              T(0), grads[1].template data<T>(), in);
                   }
                   if (need[2]) {
                     grads[2] = empty({E}, t_opts);
                     K.column_sums(B, E, dlogits.template data<T>(), grads[2].template data<T>());
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
      return leaky_relu(x, kernels::kLeakyReluSlope);
    case Activation::sigmoid:
      return sigmoid(x);
    case Activation::tanh:
      return tanh(x);
  }
  return x;
}

namespace {
thread_local bool t_constant_weights = false;
}  // namespace
ConstantWeightsScope::ConstantWeightsScope() : was_(t_constant_weights) { t_constant_weights = true; }
ConstantWeightsScope::~ConstantWeightsScope() { t_constant_weights = was_; }
bool ConstantWeightsScope::active() { return t_constant_weights; }

Tensor experts_forward(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& opts) {
  BlockDims d = fused_detail::check_block("experts_forward", x, layers, opts);
  Tensor out;
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
