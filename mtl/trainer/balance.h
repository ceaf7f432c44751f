#pragma once
// Task-balancing strategies: how the per-task losses of one batch become the parameters'
// gradients.
//
//   fixed        Σ w_i L_i with user weights (default all 1).
//   gradnorm     Chen et al., ICML 2018. On the last shared layer W:
//                  G_i = ‖∇_W w_i L_i‖ = w_i ‖∇_W L_i‖,   r_i = (L_i/L_i(0)) / mean_j(L_j/L_j(0)),
//                  target_i = mean_j(G_j) · r_i^α   (a constant: no gradient flows through it),
//                  L_grad = Σ_i |G_i − target_i|,   ∂L_grad/∂w_i = sign(G_i − target_i) · ‖∇_W L_i‖.
//                The model is updated from Σ w_i L_i with the weights before their update; the
//                weights then take one Adam step of their own learning rate and are renormalised
//                to sum to the number of tasks. L_i(0) are the losses of the first batch.
//   metabalance  He et al., WWW 2022. For each shared parameter, m_i ← β m_i + (1−β)‖g_i‖ (no
//                bias correction, as the authors' code); every auxiliary task's gradient becomes
//                g_i·(m_main/(m_i+1e-5))·r + g_i·(1−r); the gradient is their sum. The main task's
//                gradient is never rescaled. Task-specific parameters get Σ_i g_i. Row-sparse
//                (embedding) gradients are scaled and summed as row-sparse tensors.
//   uwl          Kendall, Gal & Cipolla, CVPR 2018, with s_i = log σ_i² learned per task:
//                  regression  exp(−s_i) L_i + s_i          (twice the paper's ½σ⁻²L + log σ)
//                  binary      exp(−s_i) L_i + s_i / 2      (the paper's σ⁻²L + log σ)
//                s takes Adam steps of the optimizer's learning rate; the reported weight is exp(−s_i).
//   dwa          Liu, Johns & Davison, CVPR 2019 (MTAN), T = 2: w_i(t) = K·exp(r_i/T)/Σ_j exp(r_j/T),
//                r_i = L̄_i(t−1)/L̄_i(t−2) from the epoch-mean training losses; 1 for the first two epochs.
//   pcgrad       Yu et al., NeurIPS 2020. On the shared parameters (as one vector), for each task i
//                in turn, over the other tasks j in a random order (the seeded generator):
//                if g_i·g_j < 0 then g_i ← g_i − (g_i·g_j)/‖g_j‖² g_j (g_j the unprojected
//                gradient); the gradient is Σ_i g_i. Task-specific parameters get Σ_i g_i.
// GradNorm, MetaBalance and PCGrad take per-task gradients from one forward pass with
// rechub::grad(..., {.retain_graph = true}); the fixed task weights multiply the losses first
// (metabalance, pcgrad), or are replaced by the strategy's own (gradnorm, uwl, dwa).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"
#include "rechub/mtl/data/schema.h"

namespace rechub::trainer {

// What a strategy sees of the model: every trainable parameter, which are shared, and GradNorm's W.
struct BalanceParams {
  std::vector<Tensor> params{};
  std::vector<bool> shared{};           // per entry of params
  std::vector<Tensor> last_shared{};    // GradNorm's W (one or more tensors, as one vector)
};

struct BalanceOptions {
  std::string strategy = "fixed";  // fixed | gradnorm | metabalance | uwl | dwa | pcgrad
  std::vector<double> task_weights{};
  std::vector<data::TaskType> task_types{};
  double gradnorm_alpha = 1.5;
  double gradnorm_lr = 0.025;
  double relax_factor = 0.7;
  double beta = 0.9;
  int64_t main_task = 0;
  double dwa_temperature = 2.0;
  double uwl_lr = 1e-3;
  uint64_t seed = 1;
};

class TaskBalancer {
 public:
  virtual ~TaskBalancer() = default;
  virtual std::string name() const = 0;
  // Sets the gradient of every parameter in `p.params` from the per-task losses (scalars of one
  // forward pass). Parameters start without gradients; the graph is released at the end.
  virtual void backward(const std::vector<Tensor>& losses, const BalanceParams& p) = 0;
  // The weights the losses carry now (for logs and the report).
  virtual std::vector<double> weights() const = 0;
  // Called after each epoch with its mean training loss per task (unweighted).
  virtual void end_epoch(const std::vector<double>& /*mean_losses*/) {}
  // Everything needed to continue exactly (checkpoints).
  virtual nlohmann::json state() const = 0;
  virtual void load_state(const nlohmann::json& j) = 0;
};

// Throws rechub::Error naming the strategy list on an unknown name or bad options.
std::unique_ptr<TaskBalancer> make_balancer(int64_t num_tasks, const BalanceOptions& options);
std::vector<std::string> balance_strategies();

// ---- gradient helpers (dense or row-sparse, f32 or f64) ----
double grad_dot(const Tensor& a, const Tensor& b);
double grad_sq_norm(const Tensor& g);
Tensor grad_scale(const Tensor& g, double s);

}  // namespace rechub::trainer
