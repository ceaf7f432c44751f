#pragma once
// Learning-rate schedules. A schedule is a pure function lr(base_lr, t) of a group's base learning
// rate and the step/epoch counter t; an LRScheduler applies one to every group of an optimizer
// (each group keeps its own base lr, so per-task learning rates keep their ratios).
//
// The closed forms are PyTorch's: StepLR, ExponentialLR, CosineAnnealingLR, LinearLR, and a
// warm-up followed by another schedule (SequentialLR([LinearLR, X], milestones=[warmup])).
// Like a PyTorch scheduler, constructing an LRScheduler sets the t = 0 learning rates and each
// step() advances t by one.
#include <cstdint>
#include <memory>
#include <vector>

#include "rechub/nn/optim.h"

namespace rechub::nn {

class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double lr(double base_lr, int64_t t) const = 0;
};

// base * gamma^floor(t / step_size)
class StepSchedule : public LRSchedule {
 public:
  StepSchedule(int64_t step_size, double gamma = 0.1);
  double lr(double base, int64_t t) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// base * gamma^t
class ExponentialSchedule : public LRSchedule {
 public:
  explicit ExponentialSchedule(double gamma);
  double lr(double base, int64_t t) const override;

 private:
  double gamma_;
};

// eta_min + (base - eta_min) (1 + cos(pi t / t_max)) / 2 for t <= t_max, eta_min after.
class CosineSchedule : public LRSchedule {
 public:
  explicit CosineSchedule(int64_t t_max, double eta_min = 0.0);
  double lr(double base, int64_t t) const override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// base * (start + (end - start) min(t, total) / total): PyTorch's LinearLR, the usual warm-up.
class LinearSchedule : public LRSchedule {
 public:
  LinearSchedule(double start_factor, double end_factor, int64_t total_steps);
  double lr(double base, int64_t t) const override;

 private:
  double start_, end_;
  int64_t total_;
};

// t < warmup_steps: linear warm-up from start_factor * base to base; then `after` with its own
// counter starting at 0 (SequentialLR with one milestone).
class WarmupSchedule : public LRSchedule {
 public:
  WarmupSchedule(int64_t warmup_steps, double start_factor, std::shared_ptr<const LRSchedule> after);
  double lr(double base, int64_t t) const override;

 private:
  int64_t warmup_;
  double start_;
  std::shared_ptr<const LRSchedule> after_;
};

// Warm-up for warmup_steps, then cosine decay to eta_min over the remaining total - warmup steps.
std::shared_ptr<const LRSchedule> warmup_cosine(int64_t warmup_steps, int64_t total_steps, double start_factor = 0.0,
                                                double eta_min = 0.0);

class LRScheduler {
 public:
  // Records each group's current lr as its base and sets the t = 0 learning rates.
  LRScheduler(Optimizer& opt, std::shared_ptr<const LRSchedule> schedule);
  void step();               // t += 1, then sets the groups' learning rates
  void set_step(int64_t t);  // jump (resuming from a checkpoint)
  int64_t step_count() const { return t_; }
  const std::vector<double>& base_lrs() const { return base_; }

 private:
  void apply();
  Optimizer& opt_;
  std::shared_ptr<const LRSchedule> schedule_;
  std::vector<double> base_;
  int64_t t_ = 0;
};

}  // namespace rechub::nn
