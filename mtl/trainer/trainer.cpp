#include "rechub/mtl/trainer/trainer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_set>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#ifdef RECHUB_WITH_CUDA
#include "rechub/core/cuda.h"
#endif
#include "rechub/nn/checkpoint.h"
#include "rechub/nn/data_parallel.h"
#include "rechub/nn/dropout.h"
#include "rechub/nn/optim.h"
#include "rechub/nn/sharded_embedding.h"

namespace rechub::trainer {

namespace fs = std::filesystem;

namespace {

// clip_grad_norm (nn/optim.h) with row-sharded parameters: their squares are summed over the
// ranks, so every rank scales by the unsharded run's coefficient.
void clip_grad_norm_sharded(const BalanceParams& p, double max_norm) {
  NoGradGuard ng;
  std::vector<Tensor> values;
  std::vector<double> acc{0.0, 0.0};  // the replicated parameters', the sharded ones' (this rank's rows)
  for (const Tensor& param : p.params) {
    Tensor g = param.grad();
    if (!g.defined()) continue;
    if (g.is_sparse()) {
      g = nn::coalesce_sparse_grad(g);
      Tensor(param).set_grad(g);
      g = g.sparse_values();
    }
    RECHUB_CHECK(g.dtype() == DType::f32 && g.device().is_cpu(), "clip_grad_norm: f32 gradients on the CPU only");
    const float* d = g.data<float>();
    double s = 0;
    for (int64_t i = 0; i < g.numel(); ++i) s += static_cast<double>(d[i]) * static_cast<double>(d[i]);
    acc[p.sharded.count(param.impl()) ? 1 : 0] += s;
    values.push_back(g);
  }
  p.shards->allreduce(&acc[1], 1);
  const double total = std::sqrt(acc[0] + acc[1]);
  const double coef = std::min(1.0, max_norm / (total + 1e-6));
  if (coef >= 1.0 && std::isfinite(total)) return;
  const float c = static_cast<float>(coef);
  for (Tensor& g : values) {
    float* d = g.data<float>();
    for (int64_t i = 0; i < g.numel(); ++i) d[i] *= c;
    g.bump_version();
  }
}

std::vector<nn::Dropout*> dropouts(models::MultiTaskModel& m) {
  std::vector<nn::Dropout*> d;
  for (auto& [name, mod] : m.named_modules())
    if (auto* p = dynamic_cast<nn::Dropout*>(mod.get())) d.push_back(p);
  return d;
}

nlohmann::json gen_json(const Generator& g) {
  const auto st = g.state();
  return {{"s", {st.s[0], st.s[1], st.s[2], st.s[3]}}, {"has_spare", st.has_spare}, {"spare", st.spare}};
}
void gen_load(Generator& g, const nlohmann::json& j) {
  Generator::State st{};
  const auto s = j.at("s").get<std::vector<uint64_t>>();
  RECHUB_CHECK(s.size() == 4, "a generator state needs 4 words, got " << s.size());
  for (size_t k = 0; k < 4; ++k) st.s[k] = s[k];
  st.has_spare = j.at("has_spare").get<bool>();
  st.spare = j.at("spare").get<double>();
  g.set_state(st);
}

// Uploads batches (dense values and labels) to a CUDA device one batch ahead: each of two slots
// holds a pinned host buffer, the batch's device tensors and the event of its copy. start() fills
// a slot and queues its copy on the copy stream (after the compute work queued so far, since the
// destination blocks come from the stream-ordered caching allocator); take() makes the compute
// stream wait for that copy (no host wait). A slot's pinned buffer is rewritten only after its
// previous copy has completed (the host waits on that event, two batches later).
class DeviceFeeder {
 public:
  explicit DeviceFeeder(Device d) : dev_(d) {}
  ~DeviceFeeder() {
#ifdef RECHUB_WITH_CUDA
    for (auto& s : slots_) {
      try {
        s.copied.synchronize();  // the copies may still read the pinned buffers / write the tensors
      } catch (...) {
      }
    }
#endif
  }
  DeviceFeeder(const DeviceFeeder&) = delete;
  DeviceFeeder& operator=(const DeviceFeeder&) = delete;

  void start(data::Batch b) {
#ifdef RECHUB_WITH_CUDA
    Slot& s = slots_[next_];
    next_ = (next_ + 1) % slots_.size();
    s.copied.synchronize();
    const size_t dense_bytes = b.dense.defined() ? b.dense.nbytes() : 0;
    const size_t label_off = (dense_bytes + 255) / 256 * 256;
    const size_t label_bytes = b.labels.defined() ? b.labels.nbytes() : 0;
    const size_t total = label_off + label_bytes;
    if (s.buf.size() < total) {
      size_t cap = 1 << 16;
      while (cap < total) cap *= 2;
      s.buf = cuda::PinnedBuffer(cap);
    }
    data::Batch out;
    out.sparse = b.sparse;  // stays on the host (validated and offset by the embedding)
    out.first_row = b.first_row;
    // Device tensors first: their blocks may have been used by compute queued before this point.
    if (b.dense.defined()) out.dense = rechub::empty(b.dense.shape(), {.dtype = b.dense.dtype(), .device = dev_});
    if (b.labels.defined()) out.labels = rechub::empty(b.labels.shape(), {.dtype = b.labels.dtype(), .device = dev_});
    cuda::Event before;
    before.record_compute(dev_.index);
    before.make_copy_wait(dev_.index);
    char* pinned = s.buf.as<char>();
    if (dense_bytes) {
      const Tensor hd = b.dense.device().is_cpu() ? b.dense : b.dense.to(Device::cpu());
      std::memcpy(pinned, hd.raw_data(), dense_bytes);
      cuda::copy_to_device_on_copy_stream(out.dense.raw_data(), dev_.index, pinned, dense_bytes);
    }
    if (label_bytes) {
      const Tensor hl = b.labels.device().is_cpu() ? b.labels : b.labels.to(Device::cpu());
      std::memcpy(pinned + label_off, hl.raw_data(), label_bytes);
      cuda::copy_to_device_on_copy_stream(out.labels.raw_data(), dev_.index, pinned + label_off, label_bytes);
    }
    s.copied.record_copy(dev_.index);
    s.batch = std::move(out);
    s.full = true;
    pending_.push_back(&s);
#else
    pending_host_.push_back(std::move(b));
#endif
  }

  bool empty() const {
#ifdef RECHUB_WITH_CUDA
    return pending_.empty();
#else
    return pending_host_.empty();
#endif
  }

  data::Batch take() {
#ifdef RECHUB_WITH_CUDA
    RECHUB_CHECK(!pending_.empty(), "DeviceFeeder: no batch started");
    Slot* s = pending_.front();
    pending_.erase(pending_.begin());
    s->copied.make_compute_wait(dev_.index);
    s->full = false;
    return std::move(s->batch);
#else
    RECHUB_CHECK(!pending_host_.empty(), "DeviceFeeder: no batch started");
    data::Batch b = std::move(pending_host_.front());
    pending_host_.erase(pending_host_.begin());
    return b;
#endif
  }

 private:
  Device dev_;
#ifdef RECHUB_WITH_CUDA
  struct Slot {
    cuda::PinnedBuffer buf;
    cuda::Event copied;
    data::Batch batch;
    bool full = false;
  };
  std::array<Slot, 2> slots_;
  size_t next_ = 0;
  std::vector<Slot*> pending_;
#else
  std::vector<data::Batch> pending_host_;
#endif
};

// The learning-rate schedules of TrainerOptions::lr_schedule that nn/lr_scheduler.h lacks: a
// constant rate (under a warm-up), and a cosine decay to a fraction of each group's own base rate
// (CosineSchedule's floor is one absolute rate for every group).
class ConstantSchedule : public nn::LRSchedule {
 public:
  double lr(double base, int64_t) const override { return base; }
};
class CosineToFactor : public nn::LRSchedule {
 public:
  CosineToFactor(int64_t t_max, double min_factor) : t_max_(t_max), min_(min_factor) {}
  double lr(double base, int64_t t) const override {
    const double tt = static_cast<double>(std::min(t, t_max_));
    return base * (min_ + (1.0 - min_) * (1.0 + std::cos(M_PI * tt / static_cast<double>(t_max_))) / 2.0);
  }

 private:
  int64_t t_max_;
  double min_;
};

// "plateau": the rate of `inner` (the base rate if none) times a factor the trainer lowers at the
// end of an epoch that did not improve.
class PlateauScaled : public nn::LRSchedule {
 public:
  PlateauScaled(const double* factor, std::shared_ptr<const nn::LRSchedule> inner)
      : factor_(factor), inner_(std::move(inner)) {}
  double lr(double base, int64_t t) const override { return (inner_ ? inner_->lr(base, t) : base) * *factor_; }

 private:
  const double* factor_;
  std::shared_ptr<const nn::LRSchedule> inner_;
};

// Per-task loss values with one device-to-host read (item() per task would read T times).
std::vector<double> loss_values(const std::vector<Tensor>& losses) {
  if (losses.empty() || losses[0].device().is_cpu()) {
    std::vector<double> v;
    for (const Tensor& l : losses) v.push_back(l.item());
    return v;
  }
  NoGradGuard ng;
  std::vector<Tensor> flat;
  for (const Tensor& l : losses) flat.push_back(ops::reshape(l.detach(), {1}));
  return ops::concat(flat, 0).to_vector<double>();
}

}  // namespace

MTLTrainer::MTLTrainer(std::shared_ptr<models::MultiTaskModel> model, TrainerOptions options)
    : model_(std::move(model)), opts_(std::move(options)) {
  RECHUB_CHECK(model_ != nullptr, "MTLTrainer: no model");
  RECHUB_CHECK(opts_.n_epochs >= 1, "MTLTrainer: n_epochs must be at least 1, got " << opts_.n_epochs);
  const auto& tasks = model_->task_names();
  const int64_t T = model_->num_tasks();
  RECHUB_CHECK(opts_.pos_weights.empty() || static_cast<int64_t>(opts_.pos_weights.size()) == T,
               "MTLTrainer: " << opts_.pos_weights.size() << " pos_weights for " << T << " tasks");
  for (double w : opts_.pos_weights)
    RECHUB_CHECK(std::isfinite(w) && w > 0, "MTLTrainer: pos_weights must be > 0, got " << w);
  RECHUB_CHECK(opts_.clip_grad_norm >= 0, "MTLTrainer: clip_grad_norm must be >= 0, got " << opts_.clip_grad_norm);
  RECHUB_CHECK(opts_.earlystop_patience >= 0, "MTLTrainer: earlystop_patience must be >= 0");
  {
    const std::string& st = opts_.task_weights_strategy;
    RECHUB_CHECK(opts_.task_weights.empty() || !(st == "gradnorm" || st == "uwl" || st == "dwa"),
                 "MTLTrainer: task_weights are not used by task_weights_strategy '"
                     << st << "' (it learns or computes the weights itself); fixed, metabalance and pcgrad use them");
  }
  auto task_index = [&](const std::string& name, const char* what) -> int64_t {
    auto it = std::find(tasks.begin(), tasks.end(), name);
    if (it == tasks.end()) {
      std::string known;
      for (const auto& t : tasks) known += (known.empty() ? "" : ", ") + t;
      RECHUB_FAIL("MTLTrainer: " << what << " names task '" << name << "', but the model's tasks are " << known);
    }
    return it - tasks.begin();
  };
  for (const auto& [name, lr] : opts_.task_specific_lr) {
    task_index(name, "task_specific_lr");
    RECHUB_CHECK(std::isfinite(lr) && lr > 0,
                 "MTLTrainer: task_specific_lr of '" << name << "' must be > 0, got " << lr);
  }
  if (!opts_.earlystop_task.empty() && opts_.earlystop_task != "mean")
    task_index(opts_.earlystop_task, "earlystop_task");
  RECHUB_CHECK(std::isfinite(opts_.earlystop_min_delta) && opts_.earlystop_min_delta >= 0,
               "MTLTrainer: earlystop_min_delta must be >= 0, got " << opts_.earlystop_min_delta);
  if (opts_.earlystop_task.empty() || opts_.earlystop_task == "mean") {
    bool mixed = false;
    for (auto t : model_->task_types()) mixed = mixed || t != model_->task_types()[0];
    RECHUB_CHECK(
        !mixed || opts_.earlystop_metric == "mse" || opts_.earlystop_metric == "mae" || opts_.earlystop_patience == 0,
        "MTLTrainer: early stopping on the mean of the tasks needs tasks of one kind, but these are binary and "
        "regression tasks: set earlystop_task to one task (or earlystop_metric to mse/mae)");
  }
  if (!opts_.earlystop_metric.empty())
    RECHUB_CHECK(
        opts_.earlystop_metric == "auc" || opts_.earlystop_metric == "logloss" || opts_.earlystop_metric == "mse" ||
            opts_.earlystop_metric == "mae",
        "MTLTrainer: earlystop_metric must be auc, logloss, mse or mae, got '" << opts_.earlystop_metric << "'");

  if (model_->embeddings_sharded()) {
    const auto& sh = model_->embedding().shards();
    const auto& c = opts_.communicator;
    RECHUB_CHECK(c && c->size() == sh->size() && c->rank() == sh->rank(),
                 "MTLTrainer: the model's embeddings are sharded over "
                     << sh->size() << " ranks, but TrainerOptions::communicator is "
                     << (c ? "a world of " + std::to_string(c->size()) + " ranks" : std::string("not set"))
                     << ": pass the communicator the model was built with");
    RECHUB_CHECK(opts_.device.is_cpu(),
                 "MTLTrainer: sharded embeddings train on the CPU only, not " << opts_.device.str());
    row_shards_ = {.comm = c, .rows = model_->embedding().row_shards("embedding.")};
  }
  // The model moves before the optimizer exists, so its state is created on the device.
  if (model_->device() != opts_.device) {
    try {
      model_->to(opts_.device);
    } catch (const Error& e) {
      RECHUB_FAIL("MTLTrainer: cannot train on " << opts_.device.str() << ": " << e.what());
    }
  }
  build_optimizer();
  for (size_t g = 0; g < optimizer_->num_groups(); ++g) base_lrs_.push_back(optimizer_->lr(g));
  if (row_shards_.active()) {
    balance_params_.shards = row_shards_.comm;
    for (const Tensor& a : model_->embedding().arenas()) balance_params_.sharded.insert(a.impl());
  }
  {
    const std::string& k = opts_.lr_schedule;
    RECHUB_CHECK(k == "constant" || k == "cosine" || k == "step" || k == "plateau",
                 "MTLTrainer: lr_schedule must be constant, cosine, step or plateau, got '" << k << "'");
    RECHUB_CHECK(opts_.lr_warmup_steps >= 0, "MTLTrainer: lr_warmup_steps must be >= 0, got " << opts_.lr_warmup_steps);
    RECHUB_CHECK(opts_.lr_min_factor >= 0 && opts_.lr_min_factor <= 1,
                 "MTLTrainer: lr_min_factor must be in [0, 1], got " << opts_.lr_min_factor);
    RECHUB_CHECK(opts_.lr_step_epochs >= 1, "MTLTrainer: lr_step_epochs must be >= 1, got " << opts_.lr_step_epochs);
    RECHUB_CHECK(opts_.lr_gamma > 0 && opts_.lr_gamma <= 1,
                 "MTLTrainer: lr_gamma must be in (0, 1], got " << opts_.lr_gamma);
  }

  BalanceOptions bo{.strategy = opts_.task_weights_strategy,
                    .task_weights = opts_.task_weights,
                    .task_types = model_->task_types(),
                    .gradnorm_alpha = opts_.gradnorm_alpha,
                    .gradnorm_lr = opts_.gradnorm_lr,
                    .relax_factor = opts_.relax_factor,
                    .beta = opts_.beta,
                    .main_task = opts_.main_task.empty() ? 0 : task_index(opts_.main_task, "main_task"),
                    .dwa_temperature = opts_.dwa_temperature,
                    .uwl_lr = opts_.optimizer_params.lr,
                    .seed = opts_.seed};
  bo.metabalance_strategy = opts_.metabalance_strategy;
  bo.cagrad_c = opts_.cagrad_c;
  bo.mgda_normalization = opts_.mgda_normalization;
  balancer_ = make_balancer(T, bo);
  if (!opts_.gradnorm_layer.empty()) {
    for (const auto& n : opts_.gradnorm_layer) balance_params_.last_shared.push_back(model_->parameter(n));
  } else {
    balance_params_.last_shared = model_->last_shared_parameters();
  }
  if (opts_.task_weights_strategy == "gradnorm")
    RECHUB_CHECK(!balance_params_.last_shared.empty(),
                 "MTLTrainer: gradnorm needs the last shared layer; the model names none (set gradnorm_layer)");
}

MTLTrainer::~MTLTrainer() = default;

void MTLTrainer::build_optimizer() {
  const auto layers = models::shared_task_layers(*model_);
  const auto& tasks = model_->task_names();
  std::vector<nn::ParamGroup> groups;
  std::set<const TensorImpl*> seen;
  nn::ParamGroup shared{.params = layers.shared,
                        .lr = opts_.optimizer_params.lr,
                        .weight_decay = opts_.optimizer_params.weight_decay,
                        .name = "shared"};
  for (const Tensor& p : layers.shared) seen.insert(p.impl());
  std::vector<nn::ParamGroup> task_groups;
  for (size_t t = 0; t < layers.task.size(); ++t) {
    auto it = opts_.task_specific_lr.find(tasks[t]);
    nn::ParamGroup g{.params = {},
                     .lr = it != opts_.task_specific_lr.end() ? it->second : opts_.optimizer_params.lr,
                     .weight_decay = opts_.optimizer_params.weight_decay,
                     .name = "task:" + tasks[t]};
    for (const Tensor& p : layers.task[t])
      if (seen.insert(p.impl()).second) g.params.push_back(p);
    task_groups.push_back(std::move(g));
  }
  // Anything shared_task_layers did not list trains with the shared group.
  for (const Tensor& p : model_->parameters())
    if (seen.insert(p.impl()).second) shared.params.push_back(p);
  balance_params_.params.clear();
  balance_params_.shared.clear();
  balance_params_.names.clear();
  if (!shared.params.empty()) {
    for (const Tensor& p : shared.params) balance_params_.params.push_back(p), balance_params_.shared.push_back(true);
    groups.push_back(std::move(shared));
  }
  for (auto& g : task_groups) {
    if (g.params.empty()) continue;
    for (const Tensor& p : g.params) balance_params_.params.push_back(p), balance_params_.shared.push_back(false);
    groups.push_back(std::move(g));
  }
  {
    std::map<const TensorImpl*, std::string> names;
    for (const auto& [name, p] : model_->named_parameters()) names[p.impl()] = name;
    for (const Tensor& p : balance_params_.params) balance_params_.names.push_back(names[p.impl()]);
  }
  if (opts_.optimizer_fn) {
    optimizer_ = opts_.optimizer_fn(std::move(groups));
    RECHUB_CHECK(optimizer_ != nullptr, "MTLTrainer: optimizer_fn returned no optimizer");
    return;
  }
  switch (opts_.optimizer_params.kind) {
    case OptimizerKind::adam:
      optimizer_ = std::make_unique<nn::Adam>(std::move(groups));
      break;
    case OptimizerKind::adamw:
      optimizer_ = std::make_unique<nn::AdamW>(std::move(groups));
      break;
    case OptimizerKind::sgd:
      optimizer_ = std::make_unique<nn::SGD>(std::move(groups));
      break;
    case OptimizerKind::adagrad:
      optimizer_ = std::make_unique<nn::Adagrad>(std::move(groups));
      break;
  }
}

void MTLTrainer::build_scheduler(int64_t batches_per_epoch) {
  scheduler_.reset();
  const int64_t total = std::max<int64_t>(1, batches_per_epoch * opts_.n_epochs);
  int64_t warm = opts_.lr_warmup_steps;
  std::shared_ptr<const nn::LRSchedule> sched = opts_.lr_schedule_fn;
  if (!sched) {
    const std::string& k = opts_.lr_schedule;
    if (k == "cosine") {
      sched = std::make_shared<CosineToFactor>(std::max<int64_t>(1, total - warm), opts_.lr_min_factor);
    } else if (k == "step") {
      sched = std::make_shared<nn::StepSchedule>(std::max<int64_t>(1, opts_.lr_step_epochs * batches_per_epoch),
                                                 opts_.lr_gamma);
    } else if (k == "plateau") {
      if (warm > 0) sched = std::make_shared<nn::WarmupSchedule>(warm, 0.0, std::make_shared<ConstantSchedule>());
      sched = std::make_shared<PlateauScaled>(&plateau_factor_, sched);
      warm = 0;
    } else if (warm == 0) {
      return;  // constant
    } else {
      sched = std::make_shared<ConstantSchedule>();
    }
    if (warm > 0) sched = std::make_shared<nn::WarmupSchedule>(warm, 0.0, sched);
  }
  // The groups' configured rates are the bases (set again here: a resumed optimizer may hold the
  // scheduled rates of the batch it stopped at).
  for (size_t g = 0; g < optimizer_->num_groups(); ++g) optimizer_->set_lr(g, base_lrs_.at(g));
  scheduler_ = std::make_unique<nn::LRScheduler>(*optimizer_, sched);
}

OptimizerKind optimizer_kind_from_name(const std::string& k) {
  if (k == "adam") return OptimizerKind::adam;
  if (k == "adamw") return OptimizerKind::adamw;
  if (k == "sgd") return OptimizerKind::sgd;
  if (k == "adagrad") return OptimizerKind::adagrad;
  RECHUB_FAIL("unknown optimizer '" << k << "' (expected adam, adamw, sgd or adagrad)");
}

std::string MTLTrainer::path(const char* file) const { return (fs::path(opts_.out_dir) / file).string(); }

nlohmann::json MTLTrainer::model_metadata() const {
  std::vector<std::string> types;
  for (auto t : model_->task_types()) types.push_back(data::task_type_name(t));
  nlohmann::json j = {{"format", "rechub-mtl-model"},
                      {"model", {{"kind", model_->kind()}, {"config", model_->config_json()}}},
                      {"tasks", model_->task_names()},
                      {"task_types", types}};
  j["preprocessor"] = opts_.preprocessor ? opts_.preprocessor->to_json() : nlohmann::json(nullptr);
  return j;
}

void MTLTrainer::save_model(const std::string& p) const {
  nn::save_checkpoint(p, *model_, nullptr, model_metadata(), row_shards_);
}

nlohmann::json MTLTrainer::trainer_state(int64_t epochs_done) const {
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& r : history_) hist.push_back(r.to_json(model_->task_names()));
  nlohmann::json drop = nlohmann::json::array();
  for (nn::Dropout* d : dropouts(*model_)) drop.push_back(gen_json(d->generator()));
  return {{"epochs_done", epochs_done},
          {"model_dropout_generator", gen_json(model_->dropout_generator())},
          {"settings", run_settings()},
          {"strategy", balancer_->name()},
          {"strategy_state", balancer_->state()},
          {"history", hist},
          {"best_epoch", best_epoch_},
          {"best_metric", best_metric_},
          {"bad_epochs", bad_epochs_},
          {"stopped_early", stopped_early_},
          {"plateau", {{"factor", plateau_factor_}, {"has_best", plateau_has_best_}, {"best", plateau_best_}}},
          {"dropout_generators", drop}};
}

nlohmann::json MTLTrainer::run_settings() const {
  nlohmann::json task_lr = nlohmann::json::object();
  for (const auto& [task, lr] : opts_.task_specific_lr) task_lr[task] = lr;
  nlohmann::json j = {
      {"lr", opts_.optimizer_params.lr},
      {"task_lr", task_lr},
      {"weight_decay", opts_.optimizer_params.weight_decay},
      {"optimizer", optimizer_ ? optimizer_->kind()
                               : std::string(std::array<const char*, 4>{"adam", "adamw", "sgd", "adagrad"}.at(
                                     static_cast<size_t>(opts_.optimizer_params.kind)))},
      {"clip_grad_norm", opts_.clip_grad_norm}};
  if (opts_.lr_schedule_fn) {
    j["lr_schedule"] = "custom";
  } else if (opts_.lr_schedule != "constant" || opts_.lr_warmup_steps > 0) {
    // What the rate at a given batch depends on: the run's length only for cosine, so a step or
    // constant run may be resumed with more epochs.
    nlohmann::json s = {{"kind", opts_.lr_schedule}, {"warmup_steps", opts_.lr_warmup_steps}};
    if (opts_.lr_schedule == "cosine") {
      s["min_factor"] = opts_.lr_min_factor;
      s["epochs"] = opts_.n_epochs;
    } else if (opts_.lr_schedule == "step") {
      s["step_epochs"] = opts_.lr_step_epochs;
      s["gamma"] = opts_.lr_gamma;
    } else if (opts_.lr_schedule == "plateau") {
      s["gamma"] = opts_.lr_gamma;
      s["min_delta"] = opts_.earlystop_min_delta;
    }
    j["lr_schedule"] = s;
  }
  if (train_loader_) {
    j["batch_size"] = train_loader_->batch_size;
    j["shuffle_seed"] = train_loader_->seed;
    // The epoch's row order is a function of the seed, the epoch and this: a resume with another
    // shuffle (in memory vs --stream, another window) would not see the batches it left off at.
    if (!train_loader_->shuffle)
      j["shuffle"] = "none";
    else if (train_loader_->shuffle_block > 0)
      j["shuffle"] = {{"block_rows", train_loader_->shuffle_block}, {"window_blocks", train_loader_->shuffle_window}};
    else
      j["shuffle"] = "full";
    j["train_rows"] = train_rows_;
  }
  for (auto it = opts_.run_identity.begin(); it != opts_.run_identity.end(); ++it) j[it.key()] = it.value();
  return j;
}

void MTLTrainer::check_finite(int64_t epoch, int64_t batch, int64_t step, bool grads) const {
  if (!row_shards_.active()) return check_finite_here(epoch, batch, step, grads);
  // Each rank scans its own rows of the sharded arenas: every rank stops when one finds a bad value.
  std::string mine;
  try {
    check_finite_here(epoch, batch, step, grads);
  } catch (const Error& e) {
    mine = e.what();
  }
  const int64_t bad =
      row_shards_.comm->allreduce_one<int64_t>(mine.empty() ? -1 : row_shards_.comm->rank(), dist::ReduceOp::max);
  if (!mine.empty()) RECHUB_FAIL(mine);
  RECHUB_CHECK(bad < 0, "training stopped: the model diverged: epoch "
                            << epoch + 1 << ", batch " << batch << " (step " << step << "): rank " << bad
                            << " found a non-finite value in its rows of the sharded embeddings (its message names "
                               "the parameter)");
}

void MTLTrainer::check_finite_here(int64_t epoch, int64_t batch, int64_t step, bool grads) const {
  NoGradGuard ng;
  std::string keep;
  if (!opts_.out_dir.empty())
    keep = fs::exists(path("checkpoint.safetensors"))
               ? "; the checkpoint of the last finished epoch in '" + opts_.out_dir + "' is unchanged"
               : "; no checkpoint was written to '" + opts_.out_dir + "'";
  auto scan = [&](Tensor t, const std::string& what) {
    if (!t.defined()) return;
    if (t.is_sparse()) t = t.sparse_values();  // the touched rows of an embedding's gradient
    if (t.dtype() != DType::f32) return;
    const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
    const float* v = h.data<float>();
    const int64_t n = h.numel();
    for (int64_t i = 0; i < n; ++i) {
      if (std::isfinite(v[i])) continue;
      RECHUB_FAIL("training stopped: the model diverged: epoch "
                  << epoch + 1 << ", batch " << batch << " (step " << step << "): " << what << " holds " << v[i]
                  << " (element " << i << ")" << keep << " (lower the learning rate, or clip the gradient norm)");
    }
  };
  if (grads) {
    for (const auto& [name, p] : model_->named_parameters()) scan(p.grad(), "the gradient of parameter '" + name + "'");
    return;
  }
  // Buffers too: a BatchNorm running variance that overflowed makes every prediction of the
  // saved model 0 while the weights are finite. So does an optimizer state that overflowed
  // (Adam's exp_avg_sq), which freezes the parameter from then on.
  for (const auto& [name, p] : model_->named_parameters()) {
    scan(p, "parameter '" + name + "'");
    if (const nn::Optimizer::ParamState* st = optimizer_->state(p))
      for (const auto& [key, t] : st->tensors) scan(t, "the optimizer's " + key + " of parameter '" + name + "'");
  }
  for (const auto& [name, b] : model_->named_buffers()) scan(b, "buffer '" + name + "'");
}

void MTLTrainer::save_checkpoint(int64_t epochs_done) {
  nlohmann::json md = model_metadata();
  md["trainer"] = trainer_state(epochs_done);
  nn::save_checkpoint(path("checkpoint.safetensors"), *model_, optimizer_.get(), md, row_shards_);
}

bool MTLTrainer::load_checkpoint() {
  const std::string p = path("checkpoint.safetensors");
  if (!fs::exists(p)) return false;
  const nlohmann::json md = nn::load_checkpoint(p, *model_, optimizer_.get(), row_shards_);
  RECHUB_CHECK(md.contains("trainer"), p << ": not a trainer checkpoint (no 'trainer' record)");
  const auto& st = md.at("trainer");
  RECHUB_CHECK(st.at("strategy").get<std::string>() == balancer_->name(),
               p << ": the checkpoint was trained with task balancing '" << st.at("strategy").get<std::string>()
                 << "', this run uses '" << balancer_->name() << "'");
  if (st.contains("settings")) {
    const nlohmann::json now = run_settings(), was = st.at("settings");
    std::string diffs;
    for (auto it = now.begin(); it != now.end(); ++it) {
      if (!was.contains(it.key()) || was.at(it.key()) == it.value()) continue;
      diffs += "\n  " + it.key() + ": " + was.at(it.key()).dump() + " in the checkpoint, " + it.value().dump() + " now";
    }
    RECHUB_CHECK(diffs.empty(),
                 p << ": resume refused: this run's settings differ from the checkpoint's (a resumed run "
                      "must continue the same run; start a new --out for new settings):"
                   << diffs);
  }
  balancer_->load_state(st.at("strategy_state"));
  start_epoch_ = st.at("epochs_done").get<int64_t>();
  history_.clear();
  for (const auto& r : st.at("history"))
    history_.push_back(EpochRecord::from_json(r, model_->task_names(), model_->task_types()));
  best_epoch_ = st.at("best_epoch").get<int64_t>();
  best_metric_ = st.at("best_metric").get<double>();
  bad_epochs_ = st.at("bad_epochs").get<int64_t>();
  stopped_early_ = st.value("stopped_early", false);
  if (st.contains("plateau")) {
    plateau_factor_ = st["plateau"].at("factor").get<double>();
    plateau_has_best_ = st["plateau"].at("has_best").get<bool>();
    plateau_best_ = st["plateau"].at("best").get<double>();
  }
  const auto drops = dropouts(*model_);
  const auto& dj = st.at("dropout_generators");
  RECHUB_CHECK(dj.size() == drops.size(),
               p << ": " << dj.size() << " dropout generators saved, the model has " << drops.size());
  for (size_t i = 0; i < drops.size(); ++i) gen_load(drops[i]->generator(), dj[i]);
  // Checkpoints from before the model's own generator was saved resume without it (their dropout
  // masks after resume differ from an uninterrupted run's).
  if (st.contains("model_dropout_generator")) gen_load(model_->dropout_generator(), st.at("model_dropout_generator"));
  if (best_epoch_ >= 0 && fs::exists(path("best.safetensors"))) {
    best_state_.clear();
    // A sharded table comes as this rank's rows, read without the whole table in memory.
    best_state_ = nn::read_checkpoint(path("best.safetensors"), row_shards_).tensors;
  }
  return true;
}

namespace {
// Per task: rows with a label, and positives among them (binary tasks' labels are 0/1).
struct LabelCounts {
  std::vector<int64_t> labelled, positives;
};
LabelCounts count_labels(const data::BatchSource& src) {
  const int64_t n = src.rows(), T = src.num_tasks();
  LabelCounts c{std::vector<int64_t>(static_cast<size_t>(T), 0), std::vector<int64_t>(static_cast<size_t>(T), 0)};
  for (int64_t b = 0; b < n; b += 65536) {
    const data::Batch batch = src.range_batch(b, std::min(n, b + 65536));
    const float* p = batch.labels.data<float>();
    for (int64_t i = 0; i < batch.labels.size(0); ++i)
      for (int64_t t = 0; t < T; ++t) {
        const float v = p[i * T + t];
        if (std::isnan(v)) continue;
        ++c.labelled[static_cast<size_t>(t)];
        c.positives[static_cast<size_t>(t)] += v > 0.5f ? 1 : 0;
      }
  }
  return c;
}
}  // namespace

void MTLTrainer::check_tasks(const data::BatchSource& train, const data::BatchSource* val) {
  const auto& labels = train.schema().labels;
  const auto& types = model_->task_types();
  const int64_t n = train.rows();
  const LabelCounts tc = count_labels(train);
  std::optional<LabelCounts> vc;
  if (val && val->num_tasks() == train.num_tasks()) vc = count_labels(*val);
  auto warn = [&](const std::string& w) {
    warnings_.push_back(w);
    if (opts_.progress) std::cerr << "warning: " << w << "\n";
  };
  for (size_t t = 0; t < labels.size(); ++t) {
    const auto& l = labels[t];
    const int64_t have = tc.labelled[t], pos = tc.positives[t];
    RECHUB_CHECK(have > 0, "MTLTrainer::fit: task '"
                               << l.task << "' (column '" << l.column << "') has no label on any of the " << n
                               << " training rows (every cell is missing"
                               << (l.missing_value.empty() ? "" : " or '" + l.missing_value + "'")
                               << "): there is nothing to train it on; drop the task or fix the column");
    if (opts_.progress && have < n)
      std::cerr << "task '" << l.task << "': " << have << " of " << n
                << " training rows labelled; the others are left out of its loss and metrics\n";
    if (t >= types.size() || types[t] != data::TaskType::binary) continue;
    if (pos == 0 || pos == have)
      warn("task '" + l.task + "': every training label (column '" + l.column + "', " + std::to_string(have) +
           " rows) is " + (pos == 0 ? "0" : "1") +
           ": the task can only learn a constant and its AUC is undefined. Likely causes: the wrong label "
           "column, a label mapping that maps every value to one class (\"positive\" values), or a filter or "
           "sample that kept one class only");
    if (!vc || vc->labelled[t] == 0) continue;
    const double rt = static_cast<double>(pos) / static_cast<double>(have);
    const double rv = static_cast<double>(vc->positives[t]) / static_cast<double>(vc->labelled[t]);
    if (rt > 5 * rv || rv > 5 * rt) {
      std::ostringstream w;
      w << "task '" << l.task << "': the positive rate differs more than 5x between training (" << rt << ", " << pos
        << " of " << have << ") and validation (" << rv << ", " << vc->positives[t] << " of " << vc->labelled[t]
        << "). Likely causes: a split by time or by user across a change in the label's definition, "
           "down-sampling applied to one split only, or the two files' label columns differ";
      warn(w.str());
    }
  }
  // Early stopping on a metric that is undefined on this validation set would run on NaN.
  if (opts_.earlystop_patience > 0 && vc) {
    const std::string task = opts_.earlystop_task.empty() ? model_->task_names()[0] : opts_.earlystop_task;
    const auto t = static_cast<size_t>(std::find(model_->task_names().begin(), model_->task_names().end(), task) -
                                       model_->task_names().begin());
    const std::string metric = opts_.earlystop_metric.empty() ? (types[t] == data::TaskType::regression ? "mse" : "auc")
                                                              : opts_.earlystop_metric;
    const int64_t have = vc->labelled[t], pos = vc->positives[t];
    RECHUB_CHECK(have > 0,
                 "MTLTrainer: early stopping on task '" << task << "' is refused: its validation rows have no label");
    RECHUB_CHECK(!(metric == "auc" && (pos == 0 || pos == have)),
                 "MTLTrainer: early stopping on the AUC of task '"
                     << task << "' is refused: every validation label is " << (pos == 0 ? "0" : "1") << " (" << have
                     << " rows), so the AUC is undefined (NaN) every epoch. Early-stop on another task "
                        "(--early-stop-task), on logloss (--early-stop-metric logloss), or use a validation set "
                        "with both classes");
  }
}

double MTLTrainer::metric_of(const metrics::EvalResult& r, bool& higher_better) const {
  auto of = [&](const std::string& task) {
    const auto& m = r.at(task);
    std::string metric = opts_.earlystop_metric;
    if (metric.empty()) metric = m.type == data::TaskType::regression ? "mse" : "auc";
    higher_better = metric == "auc";
    if (metric == "auc") return m.auc;
    if (metric == "logloss") return m.logloss;
    if (metric == "mse") return m.mse;
    return m.mae;
  };
  if (!opts_.earlystop_task.empty() && opts_.earlystop_task != "mean") return of(opts_.earlystop_task);
  // The mean over the tasks: one noisy task's wobble no longer decides alone.
  double sum = 0;
  for (const auto& t : model_->task_names()) sum += of(t);
  return sum / static_cast<double>(model_->num_tasks());
}

void MTLTrainer::snapshot_best() {
  NoGradGuard ng;
  best_state_.clear();
  for (auto& [n, t] : model_->named_parameters()) best_state_.emplace_back(n, t.to(Device::cpu()).clone());
  for (auto& [n, t] : model_->named_buffers()) best_state_.emplace_back(n, t.to(Device::cpu()).clone());
  if (!opts_.out_dir.empty() && (writer() || row_shards_.active()))
    nn::save_checkpoint(path("best.safetensors"), *model_, nullptr, model_metadata(), row_shards_);
}

void MTLTrainer::restore_best() {
  if (best_state_.empty()) return;
  NoGradGuard ng;
  for (auto& [n, t] : best_state_) {
    Tensor dst;
    try {
      dst = model_->parameter(n);
    } catch (const Error&) {
      dst = model_->buffer(n);
    }
    dst.copy_(t);
  }
}

// Tasks are matched to label columns by name, never by position: a model whose tasks are named
// ctr/cvr (or left at task0, task1) would otherwise learn from click/purchase in whatever order
// the data lists them.
void MTLTrainer::check_tasks_match(const data::Schema& schema, const char* split) const {
  const auto& want = model_->task_names();
  const auto have = schema.task_names();
  if (have == want) return;
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  std::string labels;
  for (const auto& l : schema.labels)
    labels += (labels.empty() ? "" : ", ") + l.task + (l.column != l.task ? " (column " + l.column + ")" : "");
  RECHUB_FAIL("MTLTrainer::fit: the model's tasks ("
              << list(want) << ") do not match the " << split << " data's label tasks (" << labels
              << "), in name and order: build the model with task_names = "
                 "schema.task_names() ({"
              << list(have) << "}), or name the labels' tasks after the model's");
}

void MTLTrainer::fit(data::DataLoader& train, data::DataLoader* val) {
  const auto& tasks = model_->task_names();
  const size_t T = tasks.size();
  RECHUB_CHECK(train.source().num_tasks() == static_cast<int64_t>(T),
               "MTLTrainer::fit: the training data has " << train.source().num_tasks() << " label columns, the model "
                                                         << T << " tasks");
  RECHUB_CHECK(train.rows() > 0, "MTLTrainer::fit: the training data has no rows");
  check_tasks_match(train.source().schema(), "training");
  if (val) check_tasks_match(val->source().schema(), "validation");
  // Data-parallel: see TrainerOptions::communicator.
  dist::Communicator* comm = opts_.communicator && opts_.communicator->size() > 1 ? opts_.communicator.get() : nullptr;
  if (comm)
    RECHUB_CHECK(opts_.device.is_cpu(), "MTLTrainer: training on " << comm->size()
                                                                   << " ranks runs on the CPU only, not "
                                                                   << opts_.device.str());
  // Tasks whose labels may be missing (data::Label::missing_ok): each batch's labels are masked,
  // and a task without a single label in the training data is refused before anything is written.
  bool may_miss = false;
  for (const auto& l : train.source().schema().labels) may_miss = may_miss || l.missing_ok;
  RECHUB_CHECK(!(comm && may_miss),
               "MTLTrainer: labels that may be missing (missing_ok) are not supported yet in a "
               "data-parallel run of "
                   << comm->size() << " ranks; train in one process");
  warnings_.clear();
  check_tasks(train.source(), val ? &val->source() : nullptr);
  if (!opts_.out_dir.empty() && writer()) fs::create_directories(opts_.out_dir);
  train_loader_ = &train.options();
  train_rows_ = comm ? comm->allreduce_one<int64_t>(train.rows()) : train.rows();
  start_epoch_ = 0;
  history_.clear();
  best_epoch_ = -1;
  bad_epochs_ = 0;
  stopped_early_ = false;
  plateau_factor_ = 1.0;
  plateau_has_best_ = false;
  plateau_best_ = 0;
  best_state_.clear();
  if (opts_.resume) {
    RECHUB_CHECK(!opts_.out_dir.empty(), "MTLTrainer: resume needs out_dir (where checkpoint.safetensors is)");
    if (!load_checkpoint() && opts_.progress && writer())
      std::cerr << "resume: no checkpoint in '" << opts_.out_dir << "', starting from scratch\n";
  }
  RECHUB_CHECK(
      opts_.earlystop_patience == 0 || val != nullptr,
      "MTLTrainer::fit: earlystop_patience = " << opts_.earlystop_patience
                                               << " needs validation data to watch: call fit(train, &val) "
                                                  "with a validation DataLoader, or set earlystop_patience = 0");
  build_scheduler(train.num_batches());
  const bool early = opts_.earlystop_patience > 0;
  models::LossOptions lopts{.weights = {}, .pos_weights = opts_.pos_weights};
  std::vector<models::LabelMask> masks;
  ProgressLine progress(opts_.progress && writer(), tasks);
  std::unique_ptr<nn::DataParallel> dp;
  std::vector<std::pair<std::string, Tensor>> synced;  // parameters and buffers kept equal on every rank
  if (comm) {
    // The sharded arenas are each rank's own rows: neither copied from rank 0 nor averaged.
    std::unordered_set<const TensorImpl*> own;
    if (row_shards_.active())
      for (const Tensor& a : model_->embedding().arenas()) own.insert(a.impl());
    for (auto& p : model_->named_parameters())
      if (!own.count(p.second.impl())) synced.push_back(p);
    for (auto& b : model_->named_buffers()) synced.push_back(b);
    nn::broadcast_tensors(*comm, synced);  // rank 0's initial (or resumed) weights everywhere
    dp = std::make_unique<nn::DataParallel>(opts_.communicator, model_->named_parameters(), int64_t{1} << 22, own);
  }
  const double emb_seconds_at_start = nn::sharded_lookup_seconds();
  // Every rank runs the same number of steps (collectives pair up step by step).
  const int64_t steps_per_epoch =
      comm ? comm->allreduce_one<int64_t>(train.num_batches(), dist::ReduceOp::min) : INT64_MAX;
  // A run that stopped early and is resumed stays stopped.
  bool& stopped_early = stopped_early_;
  for (int64_t epoch = start_epoch_; epoch < opts_.n_epochs && !stopped_early; ++epoch) {
    model_->train();
    train.set_epoch(epoch);
    const auto t0 = std::chrono::steady_clock::now();
    progress.start_epoch(epoch, opts_.n_epochs, train.rows());
    std::vector<double> sum(T, 0.0);
    std::vector<int64_t> labelled_rows(T, 0);
    int64_t rows = 0, b = 0;
    const bool on_device = !opts_.device.is_cpu();
    std::unique_ptr<DeviceFeeder> feeder = on_device ? std::make_unique<DeviceFeeder>(opts_.device) : nullptr;
    auto next_batch = [&]() -> std::optional<data::Batch> {
      if (!feeder) return train.next();
      if (feeder->empty()) {
        if (auto first = train.next()) feeder->start(std::move(*first));
      }
      if (feeder->empty()) return std::nullopt;
      data::Batch cur = feeder->take();
      if (auto ahead = train.next()) feeder->start(std::move(*ahead));  // overlaps this step
      return cur;
    };
    while (b < steps_per_epoch) {
      auto batch = next_batch();
      if (!batch) break;
      const models::ModelOutput out = model_->forward(*batch);
      if (may_miss) {
        masks = models::mask_missing_labels(batch->labels, model_->device());
        lopts.masks = &masks;
        std::vector<bool> has(T);
        for (size_t t = 0; t < T; ++t) has[t] = masks[t].labelled > 0;
        balancer_->set_labelled_tasks(std::move(has));
      }
      std::vector<Tensor> losses = model_->loss(out, batch->labels, lopts);
      RECHUB_CHECK(losses.size() == T, "the model returned " << losses.size() << " losses for " << T << " tasks");
      const int64_t B = batch->size();
      if (dp) losses = dp->global_losses(losses, B);  // the global batch's losses, on every rank
      const std::vector<double> lv = loss_values(losses);
      for (size_t t = 0; t < T; ++t) {
        if (!std::isfinite(lv[t]))
          RECHUB_FAIL("training stopped: epoch "
                      << epoch + 1 << ", batch " << b + 1 << ": the loss of task '" << tasks[t] << "' is " << lv[t]
                      << (opts_.out_dir.empty()
                              ? std::string()
                              : "; the checkpoint of the last finished epoch in '" + opts_.out_dir + "' is unchanged")
                      << " (try a lower learning rate or gradient clipping)");
      }
      // The schedule's t is the batch's position in the run, so a resumed run continues it exactly.
      if (scheduler_) scheduler_->set_step(epoch * train.num_batches() + b);
      optimizer_->zero_grad();
      balancer_->backward(losses, balance_params_);
      for (const std::string& w : balancer_->take_warnings()) {
        std::cerr << "warning: " << w << "\n";
        warnings_.push_back(w);
      }
      if (opts_.clip_grad_norm > 0) {
        if (row_shards_.active())
          clip_grad_norm_sharded(balance_params_, opts_.clip_grad_norm);
        else
          nn::clip_grad_norm(balance_params_.params, opts_.clip_grad_norm);
      }
      const bool scan = opts_.finite_check_every > 0 && (batches_run_ + 1) % opts_.finite_check_every == 0;
      if (scan) check_finite(epoch, b + 1, batches_run_ + 1, true);
      optimizer_->step();
      if (scan) check_finite(epoch, b + 1, batches_run_ + 1, false);
      for (size_t t = 0; t < T; ++t) {
        const int64_t n = may_miss ? masks[t].labelled : B;
        sum[t] += lv[t] * static_cast<double>(n);
        labelled_rows[t] += n;
      }
      rows += B;
      ++b;
      ++batches_run_;
      std::vector<double> running(T);
      for (size_t t = 0; t < T; ++t)
        running[t] = labelled_rows[t] > 0 ? sum[t] / static_cast<double>(labelled_rows[t]) : NAN;
      progress.update(rows, running, balancer_->weights());
      if (opts_.on_batch) opts_.on_batch(epoch, b - 1, rows);
    }
    int64_t all_rows = rows;  // every rank's
    if (comm) {
      // Each step's losses are already the global batch's; weighting them by the global batch
      // sizes gives every rank the same epoch means (DWA's weights depend on them).
      all_rows = comm->allreduce_one<int64_t>(rows);
      comm->allreduce(sum.data(), static_cast<int64_t>(T));
      comm->allreduce(labelled_rows.data(), static_cast<int64_t>(T));
      // The ranks apply the same averaged gradients; copying rank 0's weights once an epoch keeps
      // them bit-identical even where an allreduce rounded differently on different ranks.
      nn::broadcast_tensors(*comm, synced);
    }
    // A checkpoint is written only from finite weights, so the last one is always a usable restart.
    check_finite(epoch, b, batches_run_, false);
    EpochRecord rec;
    rec.epoch = epoch + 1;
    for (size_t t = 0; t < T; ++t)
      rec.train_loss.push_back(labelled_rows[t] > 0 ? sum[t] / static_cast<double>(labelled_rows[t]) : NAN);
    if (may_miss) rec.train_labelled = labelled_rows;
    balancer_->end_epoch(rec.train_loss);
    rec.weights = balancer_->weights();
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rec.rows_per_s = rec.seconds > 0 ? static_cast<double>(all_rows) / rec.seconds : 0;
    if (val) {
      rec.has_val = true;
      rec.val = metrics::evaluate_multi_task(*model_, *val, {.quiet = !opts_.progress || !writer()});
      for (const auto& w : rec.val.warnings) warnings_.push_back("epoch " + std::to_string(epoch + 1) + ": " + w);
    }
    if (opts_.gate_diagnostics) {
      // Without validation data, the first training rows of each rank; with sharded embeddings
      // every rank runs the same number of batches (each lookup is collective).
      const int64_t gate_rows = row_shards_.active() ? row_shards_.comm->allreduce_one<int64_t>(
                                                           std::min<int64_t>(train.rows(), 20000), dist::ReduceOp::min)
                                                     : 20000;
      const metrics::GateReport g = val ? metrics::gate_statistics(*model_, val->source(), 4096)
                                        : metrics::gate_statistics(*model_, train.source(), 4096, gate_rows);
      if (!g.gates.empty()) {
        rec.gates = g.to_json().at("gates");
        for (const auto& w : g.warnings) {
          warnings_.push_back("epoch " + std::to_string(epoch + 1) + ": " + w);
          if (opts_.progress && writer()) std::cerr << "warning: epoch " << epoch + 1 << ": " << w << "\n";
        }
      }
    }
    if (early) {
      bool higher = true;
      const double m = metric_of(rec.val, higher);
      const double d = opts_.earlystop_min_delta;
      const bool better =
          best_epoch_ < 0 || (std::isfinite(m) && (higher ? m > best_metric_ + d : m < best_metric_ - d));
      if (better) {
        best_epoch_ = epoch, best_metric_ = m, bad_epochs_ = 0;
        snapshot_best();
      } else if (++bad_epochs_ >= opts_.earlystop_patience) {
        stopped_early = true;
      }
    }
    if (val && opts_.lr_schedule == "plateau" && !opts_.lr_schedule_fn) {
      // The rate for the next epoch: lowered unless this one beat the best so far, judged as early
      // stopping judges (for binary and regression tasks under the mean without a metric, which
      // early stopping refuses, by the first task's own metric).
      bool higher = true;
      const auto& types = model_->task_types();
      const bool mixed = std::count(types.begin(), types.end(), data::TaskType::regression) % types.size() != 0;
      const bool by_mean = opts_.earlystop_task.empty() || opts_.earlystop_task == "mean";
      double m = 0;
      if (mixed && by_mean && opts_.earlystop_metric.empty()) {
        const auto& first = rec.val.at(model_->task_names()[0]);
        higher = first.type != data::TaskType::regression;
        m = higher ? first.auc : first.mse;
      } else {
        m = metric_of(rec.val, higher);
      }
      const double d = opts_.earlystop_min_delta;
      if (!plateau_has_best_ || (std::isfinite(m) && (higher ? m > plateau_best_ + d : m < plateau_best_ - d))) {
        if (std::isfinite(m)) plateau_has_best_ = true, plateau_best_ = m;
      } else {
        plateau_factor_ *= opts_.lr_gamma;
      }
    }
    history_.push_back(rec);
    progress.end_epoch(rec);
    if (!opts_.out_dir.empty() && row_shards_.active() && !writer()) save_checkpoint(epoch + 1);  // its rows
    if (!opts_.out_dir.empty() && writer()) {
      save_checkpoint(epoch + 1);
      write_file_atomic(path("metrics.jsonl"), metrics_jsonl(history_, tasks));
      write_file_atomic(path("report.svg"), report_svg(history_, tasks, model_->task_types(),
                                                       model_->kind() + " · " + balancer_->name() + " task balancing"));
    }
    if (stopped_early && opts_.progress && writer())
      std::cerr << "early stopping after epoch " << epoch + 1 << ": best epoch " << best_epoch_ + 1 << "\n";
    if (opts_.on_epoch) opts_.on_epoch(history_.back());
  }
  if (dp && opts_.progress && writer() && batches_run_ > 0) {
    // Where a data-parallel step's time went (this rank; waiting for a slower rank counts as communication).
    const nn::DataParallel::Stats s = dp->stats();
    const double steps = static_cast<double>(std::max<int64_t>(1, batches_run_));
    const double emb_s = nn::sharded_lookup_seconds() - emb_seconds_at_start;
    const double comm_s = s.seconds + s.loss_seconds + s.batchnorm_seconds + emb_s;
    std::fprintf(stderr,
                 "data parallel: %d ranks, %.2f ms/step in communication (gradients %.2f, BatchNorm %.2f, losses "
                 "%.2f), %.1f KB of gradients sent per step in %lld allreduces\n",
                 comm->size(), 1e3 * comm_s / steps, 1e3 * s.seconds / steps, 1e3 * s.batchnorm_seconds / steps,
                 1e3 * s.loss_seconds / steps, static_cast<double>(s.bytes) / 1024.0 / steps,
                 static_cast<long long>(s.allreduces));
    if (row_shards_.active())
      std::fprintf(stderr, "sharded embeddings: %.2f ms/step in their alltoallv exchanges (included above)\n",
                   1e3 * emb_s / steps);
  }
  if (early) restore_best();
  model_->eval();
  if (!opts_.out_dir.empty() && (writer() || row_shards_.active())) save_model(path("model.safetensors"));
}

}  // namespace rechub::trainer
