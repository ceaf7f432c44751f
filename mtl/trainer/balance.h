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
//                bias correction, as the authors' code); an auxiliary task's gradient becomes
//                g_i·(m_main/(m_i+1e-5))·r + g_i·(1−r); the gradient is their sum. Which auxiliary
//                gradients are adapted is the paper's strategy: all of them ("all"), only those
//                whose moving norm exceeds the main task's ("reduce": m_i > m_main), or only the
//                smaller ones ("enlarge": m_i < m_main); the others keep g_i. The main task's
//                gradient is never rescaled. The 1e-5 is torch-rechub's (the moving norms start
//                at 0, so in the first steps m_i is small and the 1e-5 keeps the ratio finite
//                when a task has sent no gradient yet). Where the main task has never sent a
//                gradient to a parameter (m_main = 0: the parameter is shared by the other tasks
//                only), the formula would shrink every auxiliary gradient there by (1−r); rechub
//                leaves that parameter's gradients unscaled instead and warns once, naming it
//                (when an auxiliary task does send a gradient there).
//                Task-specific parameters get Σ_i g_i. Row-sparse (embedding) gradients are
//                scaled and summed as row-sparse tensors.
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
//   mgda         Sener & Koltun, NeurIPS 2018 (MGDA, "Multi-Task Learning as Multi-Objective
//                Optimization"). With g_i the gradient of task i on the shared parameters (all of
//                them as one vector, each optionally divided by a normaliser n_i: none, l2 = ‖g_i‖,
//                loss = L_i, loss+ = L_i‖g_i‖), α = argmin_{α ∈ simplex} ‖Σ α_i g_i‖². Two tasks:
//                the paper's closed form γ = clip((g_2−g_1)·g_2 / ‖g_1−g_2‖², 0, 1). More tasks:
//                the paper's Frank-Wolfe solver, started from the best pair's solution (as the
//                authors' code): a step towards e_t̂, t̂ = argmin_r (Mα)_r, with the exact line
//                search, plus away steps (Lacoste-Julien & Jaggi, NeurIPS 2015: away from the
//                support vertex with the largest (Mα)_s) so that it converges linearly instead of
//                at O(1/k), until the Frank-Wolfe gap αᵀMα − min_r (Mα)_r is below 1e-12 of the
//                largest ‖g_i‖² (at most 10000 steps). The shared gradient is
//                Σ α_i g_i/n_i; task-specific parameters get Σ_i g_i (the paper's Algorithm 2).
//                This is MGDA on the shared parameters; MGDA-UB, the paper's cheaper bound, uses
//                the gradients with respect to the shared representation instead.
//   cagrad       Liu et al., NeurIPS 2021 (Conflict-Averse Gradient descent). With g_0 = mean_i
//                g_i and M the Gram matrix of the g_i: w = argmin_{w ∈ simplex} g_wᵀg_0 +
//                c'·‖g_w‖, c' = c·‖g_0‖ (+1e-8 in both norms, as LibMTL and the authors' code),
//                solved by projected gradient descent with backtracking on the simplex, until a
//                step moves w by less than 1e-13 or none lowers the objective beyond rounding
//                (the authors and LibMTL call scipy's SLSQP); d = (g_0 + c'/‖g_w‖·g_w)/(1+c²) (the
//                authors' default rescale),
//                multiplied by the task count to match the summed loss the other strategies use
//                (as the authors' code does; LibMTL leaves the mean). c = 0 gives Σ g_i but
//                for the 1e-8 terms (which matter only when ‖g_w‖ is near 1e-8).
//                Task-specific parameters get Σ_i g_i.
// Tasks without a label in a batch (set_labelled_tasks): their loss is a constant 0 and sends no
// gradient. MGDA and CAGrad solve over the labelled tasks only (an unlabelled task's zero
// gradient would make MGDA's min-norm point 0); GradNorm and UWL leave the weight (and its Adam
// moments) of an unlabelled task untouched, GradNorm renormalises the labelled tasks' weights to
// their previous sum and sets L_i(0) at the task's first labelled batch; MetaBalance does not
// decay an unlabelled task's moving norms. PCGrad, DWA and fixed need nothing: a zero gradient
// projects nothing and adds nothing.
// GradNorm, MetaBalance, PCGrad, MGDA and CAGrad take per-task gradients from one forward pass with
// rechub::grad(..., {.retain_graph = true}); the fixed task weights multiply the losses first
// (metabalance, pcgrad, mgda, cagrad), or are replaced by the strategy's own (gradnorm, uwl, dwa).
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "rechub/core/dist/communicator.h"
#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/defaults.h"

namespace rechub::trainer {

// What a strategy sees of the model: every trainable parameter, which are shared, and GradNorm's W.
struct BalanceParams {
  std::vector<Tensor> params{};
  std::vector<bool> shared{};         // per entry of params
  std::vector<Tensor> last_shared{};  // GradNorm's W (one or more tensors, as one vector)
  std::vector<std::string> names{};   // per entry of params (warnings); may be empty
  // Row-sharded parameters (sharded embeddings, nn/embedding.h): each rank's gradient holds its own
  // rows only, so the dot products and norms the strategies take over them are summed over the
  // ranks of `shards` (one allreduce per Gram matrix, per PCGrad projection test, per GradNorm
  // step and per MetaBalance step); every rank gets the unsharded run's values. Null: none.
  std::shared_ptr<dist::Communicator> shards{};
  std::unordered_set<const TensorImpl*> sharded{};
};

struct BalanceOptions {
  std::string strategy = "fixed";  // fixed | gradnorm | metabalance | uwl | dwa | pcgrad | mgda | cagrad
  std::vector<double> task_weights{};
  std::vector<data::TaskType> task_types{};
  double gradnorm_alpha = 1.5;
  double gradnorm_lr = 0.025;
  double relax_factor = 0.7;
  double beta = 0.9;
  int64_t main_task = 0;
  double dwa_temperature = 2.0;
  double uwl_lr = 1e-3;
  uint64_t seed = defaults::seed;
  std::string metabalance_strategy = "all";  // all | reduce | enlarge
  double cagrad_c = 0.5;                     // CAGrad's c (>= 0)
  std::string mgda_normalization = "none";   // none | l2 | loss | loss+
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

  // Which tasks have at least one label in the next batch (empty: all). The trainer sets it
  // before each backward when some task's labels may be missing.
  void set_labelled_tasks(std::vector<bool> labelled) { labelled_ = std::move(labelled); }
  // Warnings raised since the last call (e.g. MetaBalance's main task sending no gradient to a
  // shared parameter); the trainer prints them.
  std::vector<std::string> take_warnings() { return std::exchange(warnings_, {}); }

 protected:
  bool labelled(size_t task) const { return labelled_.empty() || labelled_.at(task); }
  std::vector<bool> labelled_{};
  std::vector<std::string> warnings_{};
};

// Throws rechub::Error naming the strategy list on an unknown name or bad options.
std::unique_ptr<TaskBalancer> make_balancer(int64_t num_tasks, const BalanceOptions& options);
std::vector<std::string> balance_strategies();

// The min-norm point of the convex hull of vectors given by their Gram matrix M (row-major n×n):
// α on the simplex minimising αᵀMα (MGDA's solver, see above). Exposed for tests.
std::vector<double> min_norm_weights(const std::vector<double>& gram, size_t n);
// CAGrad's inner problem: w on the simplex minimising wᵀM·(1/n) + c'·sqrt(wᵀMw + 1e-8).
std::vector<double> cagrad_weights(const std::vector<double>& gram, size_t n, double c_prime);

// ---- gradient helpers (dense or row-sparse, f32 or f64) ----
double grad_dot(const Tensor& a, const Tensor& b);
double grad_sq_norm(const Tensor& g);
Tensor grad_scale(const Tensor& g, double s);

}  // namespace rechub::trainer
