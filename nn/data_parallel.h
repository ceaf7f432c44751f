#pragma once
// DataParallel: what makes N ranks of batch B train as one process of batch N·B (the ranks run
// the same model from the same initial weights on different rows).
//
//   nn::DataParallel dp(comm, model.named_parameters());   // for the length of the training run
//   auto losses = dp.global_losses(model.loss(out, labels), batch.size());
//   backward(sum(losses));                                   // .grad now holds the global gradient
//   optimizer.step();                                        // the same step on every rank
//
// While it lives (on the thread that built it) it installs two hooks into core (core/dist/sync.h):
// BatchNorm normalises with the global batch's statistics, and every gradient that grad() returns
// or backward() accumulates for one of these parameters is averaged over the ranks, so the task
// balancers (GradNorm, MetaBalance, PCGrad, ...) see the global per-task gradients. Dense gradients
// travel in buckets of `bucket_elements` (one allreduce each, in parameter order, a parameter never
// split); a row-sparse gradient (a replicated embedding table) is allgathered (ids and rows),
// scaled by 1/N and coalesced. A parameter whose gradient is defined on some ranks and not on others
// gets zeros where it is missing. Parameters listed in `local` (sharded tables, which move their own
// gradients) are left alone.
//
// The weights stay identical on every rank only if they start identical: broadcast_parameters()
// copies rank 0's parameters and buffers to the others.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "rechub/core/dist/communicator.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/tensor.h"

namespace rechub::nn {

class DataParallel {
 public:
  struct Stats {
    int64_t calls = 0;             // gradient reductions (one per grad()/backward())
    int64_t allreduces = 0;        // bucket allreduces
    int64_t bytes = 0;             // payload this rank sent into collectives
    double seconds = 0;            // wall time inside the gradient reductions (communication and packing)
    double loss_seconds = 0;       // in the allreduce of the losses
    double batchnorm_seconds = 0;  // in BatchNorm's global statistics (forward and backward)
  };

  DataParallel(std::shared_ptr<dist::Communicator> comm, std::vector<std::pair<std::string, Tensor>> params,
               int64_t bucket_elements = int64_t{1} << 22, std::unordered_set<const TensorImpl*> local = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  dist::Communicator& comm() { return *comm_; }
  // The losses of the global batch (dist::global_mean_losses): identical values on every rank.
  std::vector<Tensor> global_losses(const std::vector<Tensor>& losses, int64_t rows);
  // The figures so far (batchnorm_seconds: since this object was built).
  Stats stats() const;

 private:
  void reduce(const std::vector<TensorImpl*>& leaves, std::vector<Tensor>& grads);

  std::shared_ptr<dist::Communicator> comm_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::unordered_map<const TensorImpl*, size_t> index_;
  int64_t bucket_;
  std::unordered_set<const TensorImpl*> local_;
  Stats stats_;
  double bn_seconds_at_start_ = 0;
  std::unique_ptr<dist::BatchStatsGroupScope> bn_scope_;
  std::unique_ptr<dist::LeafGradReducerScope> grad_scope_;
};

// Copies rank 0's values of these tensors (parameters and buffers, on the CPU) to every rank.
void broadcast_tensors(dist::Communicator& comm, const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace rechub::nn
