#include "rechub/nn/lr_scheduler.h"

#include <algorithm>
#include <cmath>

namespace rechub::nn {

StepSchedule::StepSchedule(int64_t step_size, double gamma) : step_size_(step_size), gamma_(gamma) {
  RECHUB_CHECK(step_size > 0, "StepSchedule: step_size must be positive, got " << step_size);
  RECHUB_CHECK(gamma >= 0, "StepSchedule: gamma must be non-negative, got " << gamma);
}
double StepSchedule::lr(double base, int64_t t) const {
  return base * std::pow(gamma_, static_cast<double>(t / step_size_));
}

ExponentialSchedule::ExponentialSchedule(double gamma) : gamma_(gamma) {
  RECHUB_CHECK(gamma >= 0, "ExponentialSchedule: gamma must be non-negative, got " << gamma);
}
double ExponentialSchedule::lr(double base, int64_t t) const { return base * std::pow(gamma_, static_cast<double>(t)); }

CosineSchedule::CosineSchedule(int64_t t_max, double eta_min) : t_max_(t_max), eta_min_(eta_min) {
  RECHUB_CHECK(t_max > 0, "CosineSchedule: t_max must be positive, got " << t_max);
}
double CosineSchedule::lr(double base, int64_t t) const {
  const double tt = static_cast<double>(std::min(t, t_max_));
  return eta_min_ + (base - eta_min_) * (1.0 + std::cos(M_PI * tt / static_cast<double>(t_max_))) / 2.0;
}

LinearSchedule::LinearSchedule(double start_factor, double end_factor, int64_t total_steps)
    : start_(start_factor), end_(end_factor), total_(total_steps) {
  RECHUB_CHECK(total_steps > 0, "LinearSchedule: total_steps must be positive, got " << total_steps);
  RECHUB_CHECK(start_factor >= 0 && end_factor >= 0, "LinearSchedule: factors must be non-negative");
}
double LinearSchedule::lr(double base, int64_t t) const {
  const double f = start_ + (end_ - start_) * static_cast<double>(std::min(t, total_)) / static_cast<double>(total_);
  return base * f;
}

WarmupSchedule::WarmupSchedule(int64_t warmup_steps, double start_factor, std::shared_ptr<const LRSchedule> after)
    : warmup_(warmup_steps), start_(start_factor), after_(std::move(after)) {
  RECHUB_CHECK(warmup_steps >= 0, "WarmupSchedule: warmup_steps must be non-negative, got " << warmup_steps);
  RECHUB_CHECK(start_factor >= 0 && start_factor <= 1,
               "WarmupSchedule: start_factor must be in [0, 1], got " << start_factor);
  RECHUB_CHECK(after_ != nullptr, "WarmupSchedule: the schedule after the warm-up is null");
}
double WarmupSchedule::lr(double base, int64_t t) const {
  if (t < warmup_) return base * (start_ + (1.0 - start_) * static_cast<double>(t) / static_cast<double>(warmup_));
  return after_->lr(base, t - warmup_);
}

std::shared_ptr<const LRSchedule> warmup_cosine(int64_t warmup_steps, int64_t total_steps, double start_factor,
                                                double eta_min) {
  RECHUB_CHECK(total_steps > warmup_steps,
               "warmup_cosine: total_steps (" << total_steps << ") must exceed warmup_steps (" << warmup_steps << ")");
  return std::make_shared<WarmupSchedule>(warmup_steps, start_factor,
                                          std::make_shared<CosineSchedule>(total_steps - warmup_steps, eta_min));
}

LRScheduler::LRScheduler(Optimizer& opt, std::shared_ptr<const LRSchedule> schedule)
    : opt_(opt), schedule_(std::move(schedule)) {
  RECHUB_CHECK(schedule_ != nullptr, "LRScheduler: null schedule");
  for (size_t g = 0; g < opt_.num_groups(); ++g) base_.push_back(opt_.lr(g));
  apply();
}

void LRScheduler::step() {
  ++t_;
  apply();
}

void LRScheduler::set_step(int64_t t) {
  RECHUB_CHECK(t >= 0, "LRScheduler: step must be non-negative, got " << t);
  t_ = t;
  apply();
}

void LRScheduler::apply() {
  for (size_t g = 0; g < base_.size(); ++g) opt_.set_lr(g, schedule_->lr(base_[g], t_));
}

}  // namespace rechub::nn
