// The CUDA path of the fused ops experts_forward and gate_mix (f32): the same computation as the
// CPU path in core/ops_fused.cpp (read that file first: its header comment has the formulas), with
// cuBLAS for the GEMMs and the kernels of kernels/cuda/fused.h for the rest. Checks, dropout
// masks and the gradient bookkeeping are shared with the CPU path (core/ops_fused_internal.h).
//
// Expert block, per layer k over C = E*h columns of one [B, C] buffer:
//   forward:  z = a_prev W^T: k = 0 one GEMM of x against the stacked [E*h, in] weight; k > 0 one
//             strided-batched GEMM over the experts (expert e reads columns [e*hp, (e+1)*hp) of
//             a_prev through lda = E*hp and writes columns [e*h, (e+1)*h) of z through ldc = C;
//             its weight is matrix e of the stacked [E*h, hp] weight, stride h*hp);
//             BatchNorm: column mean/var (double) -> experts_bn_prepare (shift, invstd, running
//             statistics in place) -> experts_normalize_activate (s, y, act, dropout mask).
//   backward: experts_activation_backward (dy and its column sums) -> experts_bn_grad_columns
//             (per-column factors and the bias/gamma/beta gradients) -> BatchNorm's backward
//             (training: experts_activation_bn_backward; eval: scale_columns) -> cuBLAS for dW,
//             da_prev (strided-batched for k > 0) and dx.
// Per-expert parameters (weights, bias, gamma, beta, running statistics) are used as one stacked
// tensor: a view when the experts' tensors lie back to back in one storage (as nn allocates
// them), else a device copy made once per call (the running statistics are copied back).
// Nothing is read back to the host: dropout masks are drawn on the CPU from the generator, in
// the CPU path's order, and queued to the device asynchronously.
#ifdef RECHUB_WITH_CUDA

#include <memory>

#include "rechub/core/dispatch.h"
#include "rechub/core/ops.h"
#include "rechub/core/ops_fused_internal.h"
#include "rechub/kernels/cuda/fused.h"
#include "rechub/kernels/cuda/ops.h"

namespace rechub::ops::fused_detail {
namespace {
namespace kcu = kernels::cuda;

static_assert(static_cast<int>(Activation::identity) == static_cast<int>(kcu::ExpertAct::identity) &&
                  static_cast<int>(Activation::relu) == static_cast<int>(kcu::ExpertAct::relu) &&
                  static_cast<int>(Activation::leaky_relu) == static_cast<int>(kcu::ExpertAct::leaky_relu) &&
                  static_cast<int>(Activation::sigmoid) == static_cast<int>(kcu::ExpertAct::sigmoid) &&
                  static_cast<int>(Activation::tanh) == static_cast<int>(kcu::ExpertAct::tanh),
              "Activation and kernels::cuda::ExpertAct must list the activations in the same order");
kcu::ExpertAct cuda_act(Activation a) { return static_cast<kcu::ExpertAct>(a); }

TensorOptions f32_on(const Device& dev) { return {.dtype = DType::f32, .device = dev}; }
TensorOptions f64_on(const Device& dev) { return {.dtype = DType::f64, .device = dev}; }

const float* cptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* mptr(Tensor t) { return t.defined() ? t.data<float>() : nullptr; }

// E per-expert tensors of shape `each` as one stacked tensor [E * each[0], each[1:]...].
struct Stacked {
  Tensor t;
  bool view = false;  // a view of the experts' own storage (else a copy)
};
Stacked stack_experts(const std::vector<Tensor>& v) {
  const Shape& each = v[0].shape();
  const int64_t E = static_cast<int64_t>(v.size()), n = v[0].numel();
  Shape stacked = each;
  stacked[0] *= E;
  const float* base = v[0].data<float>();
  bool adjacent = true;
  for (int64_t e = 1; e < E && adjacent; ++e)
    adjacent = v[e].impl()->storage == v[0].impl()->storage && v[e].data<float>() == base + e * n;
  if (adjacent) return {make_view(v[0].detach(), 0, stacked), true};
  Tensor s = empty(stacked, f32_on(v[0].device()));
  for (int64_t e = 0; e < E; ++e) make_view(s, e * n, each).copy_(v[e].detach());  // device-to-device, queued
  return {s, false};
}

// Per layer, what the backward needs (device tensors).
struct CudaSavedLayer {
  Tensor s;                    // [B, C]: normalised (BN) or biased pre-activation (no BN)
  Tensor a;                    // [B, C]: the layer's output
  Tensor mask;                 // [B, C] or undefined
  Tensor w;                    // stacked weights [C, hp]
  Tensor gamma, beta, invstd;  // [C] each (BN only)
};

struct CudaBlockState {
  BlockDims d;
  Activation act = Activation::relu;
  bool training = true;
  Tensor x;
  std::vector<CudaSavedLayer> layers;
};

}  // namespace

Tensor experts_forward_cuda(const Tensor& x, const std::vector<ExpertLayerParams>& layers, const ExpertsOptions& o,
                            const BlockDims& d) {
  const Device dev = x.device();
  cuda::use_device(dev.index);
  const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(layers.size());
  auto st = std::make_shared<CudaBlockState>();
  st->d = d;
  st->act = o.activation;
  st->training = o.training;
  st->x = x.detach();
  Generator& gen = o.generator ? *o.generator : default_generator();
  const bool drop = o.training && o.dropout > 0.0;
  Tensor prev = st->x;
  for (int64_t k = 0; k < L; ++k) {
    const ExpertLayerParams& P = layers[k];
    const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
    CudaSavedLayer S;
    S.w = stack_experts(P.weight).t;
    // z = a_prev W^T, no bias.
    Tensor z = empty({B, C}, f32_on(dev));
    if (k == 0) {
      if (d.in == 0)
        z.zero_();
      else
        kcu::sgemm(false, true, B, C, d.in, 1.0f, prev.data<float>(), d.in, S.w.data<float>(), d.in, 0.0f,
                   z.data<float>(), C);
    } else {
      kcu::sgemm_strided_batched(false, true, B, h, hp, 1.0f, prev.data<float>(), Cp, hp, S.w.data<float>(), hp, h * hp,
                                 0.0f, z.data<float>(), C, h, E);
    }
    const Tensor bias = d.bias[k] ? stack_experts(P.bias).t : Tensor();
    Tensor shift;
    if (d.bn[k]) {
      S.gamma = stack_experts(P.bn_weight).t;
      S.beta = stack_experts(P.bn_bias).t;
      Stacked rm = stack_experts(P.running_mean), rv = stack_experts(P.running_var);
      S.invstd = empty({C}, f32_on(dev));
      shift = empty({C}, f32_on(dev));
      Tensor mean, var;
      if (o.training) {
        mean = empty({C}, f64_on(dev));
        var = empty({C}, f64_on(dev));
        kcu::column_mean_var(B, C, z.data<float>(), C, mean.data<double>(), var.data<double>());
      }
      const double unbias = B > 1 ? static_cast<double>(B) / static_cast<double>(B - 1) : 1.0;
      kcu::experts_bn_prepare(C, o.training, o.training ? mean.data<double>() : nullptr,
                              o.training ? var.data<double>() : nullptr, cptr(bias), o.bn_momentum, o.bn_eps, unbias,
                              rm.t.data<float>(), rv.t.data<float>(), shift.data<float>(), S.invstd.data<float>());
      if (o.training) {
        for (int64_t e = 0; e < E; ++e) {
          Tensor rme = P.running_mean[e], rve = P.running_var[e];  // handles to the caller's buffers
          if (rm.view) {
            rme.bump_version();
          } else {
            rme.copy_(make_view(rm.t, e * h, {h}));  // copy_ bumps the version
          }
          if (rv.view) {
            rve.bump_version();
          } else {
            rve.copy_(make_view(rv.t, e * h, {h}));
          }
        }
      }
    }
    if (drop) {
      const Tensor m = dropout_mask<float>(B, E, h, o.dropout, gen);
      S.mask = empty({B, C}, f32_on(dev));
      cuda::upload(S.mask.raw_data(), dev.index, m.raw_data(), m.nbytes());  // pinned staging, no host wait
    }
    Tensor a = empty({B, C}, f32_on(dev));
    // BatchNorm: the bias cancels in training and is folded into the shift in eval.
    kcu::experts_normalize_activate(B, C, z.data<float>(), d.bn[k] ? nullptr : cptr(bias), cptr(shift), cptr(S.invstd),
                                    cptr(S.gamma), cptr(S.beta), cuda_act(o.activation), cptr(S.mask), a.data<float>());
    S.s = z;
    S.a = a;
    prev = a;
    st->layers.push_back(std::move(S));
  }
  Tensor out = prev;
  // The output's own handle must not be kept by its node (a cycle): keep a detached alias.
  st->layers.back().a = out.detach();

  std::vector<Tensor> inputs = block_inputs(x, layers);
  const size_t n_inputs = inputs.size();
  return record(
      out, "experts_forward", std::move(inputs), [st, n_inputs](const Tensor& g, const std::vector<bool>& need) {
        const BlockDims& d = st->d;
        const Device dev = st->x.device();
        cuda::use_device(dev.index);
        const int64_t B = d.B, E = d.E, L = static_cast<int64_t>(st->layers.size());
        std::vector<Tensor> grads(n_inputs);
        const BlockGradPlan plan(d, n_inputs, need);
        Tensor da = g;
        for (int64_t k = L - 1; k >= 0; --k) {
          if (!plan.below[k]) break;
          const CudaSavedLayer& S = st->layers[k];
          const int64_t h = d.h[k], C = E * h, hp = k == 0 ? d.in : d.h[k - 1], Cp = k == 0 ? d.in : E * hp;
          const bool bn = d.bn[k], bn_train = bn && st->training;
          const Tensor& prev = k == 0 ? st->x : st->layers[k - 1].a;
          const size_t w_at = plan.weight_at(k), b_at = plan.bias_at(k), g_at = plan.gamma_at(k),
                       be_at = plan.beta_at(k);
          const bool need_w = plan.any(w_at, w_at + E), need_prev = k > 0 && plan.below[k - 1];
          const bool need_b = d.bias[k] && plan.any(b_at, b_at + E);
          const bool need_g = bn && plan.any(g_at, g_at + E), need_be = bn && plan.any(be_at, be_at + E);

          // dy and its column sums; dz = dy unless BatchNorm's training backward follows.
          Tensor dz = empty({B, C}, f32_on(dev));
          Tensor sums = empty({2, C}, f64_on(dev));
          double* sum_dy = sums.data<double>();
          double* sum_dys = bn ? sum_dy + C : nullptr;
          kcu::experts_activation_backward(B, C, da.data<float>(), S.s.data<float>(), cptr(S.gamma), cptr(S.beta),
                                           cuda_act(st->act), S.a.data<float>(), cptr(S.mask),
                                           bn_train ? nullptr : dz.data<float>(), sum_dy, sum_dys);
          // Per-column factors and the vector gradients (one [C] tensor per kind, viewed per expert).
          Tensor kcol = bn ? empty({C}, f32_on(dev)) : Tensor();
          Tensor m12 = bn_train ? empty({2, C}, f32_on(dev)) : Tensor();
          Tensor dbias = need_b ? empty({C}, f32_on(dev)) : Tensor();
          Tensor dgamma = need_g ? empty({C}, f32_on(dev)) : Tensor();
          Tensor dbeta = need_be ? empty({C}, f32_on(dev)) : Tensor();
          const kcu::ExpertBnMode mode =
              !bn ? kcu::ExpertBnMode::none : (st->training ? kcu::ExpertBnMode::train : kcu::ExpertBnMode::eval);
          kcu::experts_bn_grad_columns(C, B, mode, sum_dy, sum_dys, cptr(S.gamma), cptr(S.invstd), mptr(kcol),
                                       bn_train ? m12.data<float>() : nullptr,
                                       bn_train ? m12.data<float>() + C : nullptr, mptr(dbias), mptr(dgamma),
                                       mptr(dbeta));
          if (bn_train)
            kcu::experts_activation_bn_backward(B, C, da.data<float>(), S.s.data<float>(), S.gamma.data<float>(),
                                                S.beta.data<float>(), cuda_act(st->act), S.a.data<float>(),
                                                cptr(S.mask), kcol.data<float>(), m12.data<float>(),
                                                m12.data<float>() + C, dz.data<float>());
          else if (bn)
            kcu::scale_columns(B, C, dz.data<float>(), kcol.data<float>());

          // dW = dz^T a_prev and da_prev = dz W, per expert (strided-batched) for k > 0.
          Tensor dw = need_w ? empty({C, hp}, f32_on(dev)) : Tensor();
          Tensor dprev = need_prev ? empty({B, Cp}, f32_on(dev)) : Tensor();
          const float* pdz = dz.data<float>();
          if (k == 0) {
            if (need_w) {
              if (B == 0)
                dw.zero_();
              else
                kcu::sgemm(true, false, C, hp, B, 1.0f, pdz, C, prev.data<float>(), hp, 0.0f, dw.data<float>(), hp);
            }
          } else {
            if (need_w) {
              if (B == 0)
                dw.zero_();
              else
                kcu::sgemm_strided_batched(true, false, h, hp, B, 1.0f, pdz, C, h, prev.data<float>(), Cp, hp, 0.0f,
                                           dw.data<float>(), hp, h * hp, E);
            }
            if (need_prev)
              kcu::sgemm_strided_batched(false, false, B, hp, h, 1.0f, pdz, C, h, S.w.data<float>(), hp, h * hp, 0.0f,
                                         dprev.data<float>(), Cp, hp, E);
          }
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
            Tensor dx = empty({B, d.in}, f32_on(dev));
            kcu::sgemm(false, false, B, d.in, C, 1.0f, pdz, C, S.w.data<float>(), d.in, 0.0f, dx.data<float>(), d.in);
            grads[0] = dx;
          }
        }
        return grads;
      });
}

GateMixOutput gate_mix_cuda(const Tensor& x, const Tensor& w, const Tensor& b, const std::vector<Tensor>& experts,
                            int64_t h, const std::vector<int64_t>& counts) {
  const Device dev = x.device();
  cuda::use_device(dev.index);
  const int64_t B = x.size(0), in = x.size(1), E = w.size(0);
  // logits = x Wg^T + bg (the bias written first, the GEMM accumulating onto it), then softmax.
  Tensor logits = empty({B, E}, f32_on(dev));
  if (b.defined())
    kcu::broadcast_rows(b.data<float>(), B, E, logits.data<float>());
  else if (in == 0)
    logits.zero_();
  if (in > 0)
    kcu::sgemm(false, true, B, E, in, 1.0f, x.data<float>(), in, w.data<float>(), in, b.defined() ? 1.0f : 0.0f,
               logits.data<float>(), E);
  Tensor gates = empty({B, E}, f32_on(dev));
  kcu::softmax_forward(logits.data<float>(), B, E, 1, gates.data<float>(), false);

  // The expert blocks as the kernels take them; more than kMaxGateBlocks are concatenated first.
  std::vector<Tensor> saved;
  std::vector<int64_t> saved_counts;
  const bool merged = static_cast<int>(experts.size()) > kcu::kMaxGateBlocks;
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
  auto blocks_of = [h](const std::vector<Tensor>& ts, const std::vector<int64_t>& cs) {
    kcu::GateBlocks gb;
    gb.n = static_cast<int>(ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      gb.data[i] = ts[i].data<float>();
      gb.count[i] = cs[i];
    }
    (void)h;
    return gb;
  };
  Tensor mixed = empty({B, h}, f32_on(dev));
  kcu::gate_mix_forward(B, h, blocks_of(saved, saved_counts), gates.data<float>(), E, mixed.data<float>());

  std::vector<Tensor> inputs{x, w, b};
  inputs.insert(inputs.end(), experts.begin(), experts.end());
  const size_t n_blocks = experts.size();
  mixed = record(mixed, "gate_mix", std::move(inputs),
                 [xs = x.detach(), ws = w.detach(), gates, saved, saved_counts, counts, merged, blocks_of, n_blocks, h,
                  B, in, E, dev](const Tensor& g, const std::vector<bool>& need) {
                   cuda::use_device(dev.index);
                   std::vector<Tensor> grads(3 + n_blocks);
                   kcu::GateBlocks gb = blocks_of(saved, saved_counts);
                   bool any_block = false;
                   for (size_t i = 0; i < n_blocks; ++i) any_block = any_block || need[3 + i];
                   Tensor dmerged;
                   if (merged) {
                     if (any_block) {
                       dmerged = empty(saved[0].shape(), f32_on(dev));
                       gb.grad[0] = dmerged.data<float>();
                     }
                   } else {
                     for (size_t i = 0; i < n_blocks; ++i)
                       if (need[3 + i]) {
                         grads[3 + i] = empty(saved[i].shape(), f32_on(dev));
                         gb.grad[i] = grads[3 + i].data<float>();
                       }
                   }
                   const bool gate_params = need[0] || need[1] || need[2];
                   Tensor dlogits = gate_params ? empty({B, E}, f32_on(dev)) : Tensor();
                   if (gate_params || any_block)
                     kcu::gate_mix_backward(B, h, gb, gates.data<float>(), E, g.data<float>(), mptr(dlogits));
                   if (merged && any_block) {
                     int64_t at = 0;
                     for (size_t i = 0; i < n_blocks; ++i) {
                       if (need[3 + i]) grads[3 + i] = narrow(dmerged, 1, at, counts[i] * h).clone();
                       at += counts[i] * h;
                     }
                   }
                   if (need[0]) {
                     grads[0] = empty({B, in}, f32_on(dev));
                     if (in > 0)
                       kcu::sgemm(false, false, B, in, E, 1.0f, dlogits.data<float>(), E, ws.data<float>(), in, 0.0f,
                                  grads[0].data<float>(), in);
                   }
                   if (need[1]) {
                     grads[1] = empty({E, in}, f32_on(dev));
                     if (in > 0) {
                       if (B == 0)
                         grads[1].zero_();
                       else
                         kcu::sgemm(true, false, E, in, B, 1.0f, dlogits.data<float>(), E, xs.data<float>(), in, 0.0f,
                                    grads[1].data<float>(), in);
                     }
                   }
                   if (need[2]) {
                     grads[2] = empty({E}, f32_on(dev));
                     kcu::sum_dim(dlogits.data<float>(), 1, B, E, grads[2].data<float>());
                   }
                   return grads;
                 });
  return {mixed, gates};
}

}  // namespace rechub::ops::fused_detail

#endif  // RECHUB_WITH_CUDA
