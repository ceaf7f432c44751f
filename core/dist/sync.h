#pragma once
// What data-parallel training changes inside core, installed for the length of a training run by
// the data-parallel driver (nn/data_parallel.h) and absent otherwise (then core behaves exactly as
// in a single process):
//
// - BatchNorm's batch statistics span the global batch: with a batch-statistics group installed,
//   batch_norm and the fused expert block combine every rank's per-channel mean and variance
//   (Chan's parallel formula, in rank order, in double) in the forward, and sum the two column sums
//   of the backward (Σ dy, Σ dy·x̂) over ranks, so that N ranks of batch B normalise exactly as one
//   process of batch N·B does. The parameter gradients (γ, β) stay this rank's share; they are
//   reduced with every other gradient.
// - A leaf-gradient reducer sees the gradients grad() returns and backward() accumulates for
//   leaves (parameters), all at once per call, and may replace them (the data-parallel driver
//   averages them over ranks, in buckets). So every caller of grad() — the task balancers — gets
//   the global gradient.
//
// Both are per thread (the thread that runs the training loop).
#include <cstdint>
#include <functional>
#include <vector>

#include "rechub/core/dist/communicator.h"
#include "rechub/core/tensor.h"

namespace rechub::dist {

// ---- BatchNorm's statistics over the global batch ----
Communicator* batch_stats_group();  // null: this process's batch alone
class BatchStatsGroupScope {
 public:
  explicit BatchStatsGroupScope(Communicator* group);
  ~BatchStatsGroupScope();
  BatchStatsGroupScope(const BatchStatsGroupScope&) = delete;
  BatchStatsGroupScope& operator=(const BatchStatsGroupScope&) = delete;

 private:
  Communicator* prev_;
};

// In place: this rank's `rows` rows had per-channel mean[c] and biased variance var[c]; on return
// they hold the global batch's (identical on every rank). Returns the global row count.
int64_t global_mean_var(Communicator& group, int64_t rows, double* mean, double* var, int64_t channels);
// In place: a[c] and b[c] summed over ranks (one allreduce of both).
void global_column_sums(Communicator& group, double* a, double* b, int64_t channels);
// Wall seconds this thread has spent in the two functions above (for the communication figures).
double batch_stats_seconds();

// ---- gradients of leaves ----
using LeafGradReducer = std::function<void(const std::vector<TensorImpl*>& leaves, std::vector<Tensor>& grads)>;
// The reducer installed on this thread (null: none).
const LeafGradReducer* leaf_grad_reducer();
class LeafGradReducerScope {
 public:
  explicit LeafGradReducerScope(LeafGradReducer r);
  ~LeafGradReducerScope();
  LeafGradReducerScope(const LeafGradReducerScope&) = delete;
  LeafGradReducerScope& operator=(const LeafGradReducerScope&) = delete;

 private:
  const LeafGradReducer* prev_;
  LeafGradReducer mine_;
};

// ---- the losses of the global batch ----
// Every rank passes its per-task scalar losses (means over its `rows` rows, on the CPU). Returns
// scalars whose values are the global batch's means, Σ_r rows_r·L_r / Σ_r rows_r (identical on
// every rank), and whose backward hands this rank's loss the gradient scaled by N·rows/Σ rows: after
// the gradients are averaged over the N ranks they are those of the global mean loss. One
// allreduce for all tasks.
std::vector<Tensor> global_mean_losses(Communicator& group, const std::vector<Tensor>& losses, int64_t rows);

}  // namespace rechub::dist
