#pragma once
// MTLTrainer: the training loop of a multi-task model.
//
//   trainer::MTLTrainer t(model, {.optimizer_params = {.lr = 1e-3, .weight_decay = 1e-6},
//                                 .n_epochs = 10,
//                                 .task_weights_strategy = "gradnorm", .gradnorm_alpha = 1.5,
//                                 .task_specific_lr = {{"ctr", 1e-3}, {"ctcvr", 5e-4}},
//                                 .earlystop_patience = 2, .out_dir = "runs/mmoe"});
//   t.fit(train_loader, &val_loader);
//   auto test = metrics::evaluate_multi_task(*model, *data.test);
//
// Per batch: one forward, per-task losses (BCE with the task's positive-class weight, or MSE),
// the task-balancing strategy turns them into gradients (mtl/trainer/balance.h), optional
// clipping, one optimizer step. Parameters are split into optimizer groups by
// shared_task_layers(model): "shared" at the base learning rate, "task:<name>" at the task's own
// (task_specific_lr) or the base rate.
//
// With out_dir, every epoch writes (each atomically): checkpoint.safetensors (model, optimizer,
// trainer state: epoch, strategy state, history, early-stopping state, every dropout generator
// (the model's and nn::Dropout's), the run's settings that resume checks),
// metrics.jsonl, report.svg; the best epoch's weights go to best.safetensors when early stopping
// is on; at the end model.safetensors holds the final (or best) weights with the metadata a
// Predictor needs. resume = true continues from out_dir/checkpoint.safetensors and ends with the
// same weights as an uninterrupted run (the loader's order depends only on its seed and epoch).
//
// A NaN or infinite loss stops training with an Error naming epoch, batch and task; so does a
// NaN/inf parameter or gradient (checked every finite_check_every steps and before each
// checkpoint), naming the step and the first bad parameter. Either way the checkpoint of the last
// finished epoch is left as it was.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/core/dist/communicator.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/metrics/gates.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/trainer/balance.h"
#include "rechub/mtl/trainer/report.h"
#include "rechub/nn/checkpoint.h"
#include "rechub/nn/lr_scheduler.h"
#include "rechub/nn/optim.h"

namespace rechub::trainer {

enum class OptimizerKind : uint8_t { adam, adamw, sgd, adagrad };
// "adam", "adamw", "sgd", "adagrad"; throws rechub::Error naming the valid ones.
OptimizerKind optimizer_kind_from_name(const std::string& name);

struct OptimizerParams {
  double lr = defaults::lr;
  double weight_decay = defaults::weight_decay;
  OptimizerKind kind = OptimizerKind::adam;
};

struct TrainerOptions {
  OptimizerParams optimizer_params{};
  int64_t n_epochs = defaults::epochs;
  // An optimizer of your own instead of optimizer_params.kind (torch-rechub's optimizer_fn): called
  // once with the trainer's parameter groups ("shared", then "task:<name>" for each task's layers,
  // each with its learning rate and optimizer_params.weight_decay) and returns the optimizer, e.g.
  //   .optimizer_fn = [](std::vector<nn::ParamGroup> g) {
  //     return std::make_unique<nn::SGD>(std::move(g), nn::SGDOptions{.momentum = 0.9}); }
  // Its state goes into checkpoints like a built-in one's; resume needs the same optimizer kind.
  std::function<std::unique_ptr<nn::Optimizer>(std::vector<nn::ParamGroup>)> optimizer_fn{};
  // Learning-rate schedule (torch-rechub's scheduler_fn), applied before every batch's update with
  // t = batches done so far in the run, to every group (per-task rates keep their ratios):
  //   "constant", "cosine": cosine decay from lr to lr_min_factor * lr at the last batch,
  //   "step": lr * lr_gamma^(epoch / lr_step_epochs),
  //   "plateau" (the default; defaults.h says why): lr times lr_gamma after every epoch whose
  //   validation metric (the one early stopping watches, by earlystop_min_delta) is not better than
  //   the best so far; constant without validation data.
  // lr_warmup_steps > 0 adds a linear warm-up from 0 over that many batches before any of them.
  std::string lr_schedule = defaults::lr_schedule;
  int64_t lr_warmup_steps = 0;
  double lr_min_factor = 0.0;                         // cosine
  int64_t lr_step_epochs = defaults::lr_step_epochs;  // step
  double lr_gamma = defaults::lr_gamma;               // step, plateau
  // A schedule of your own instead (nn/lr_scheduler.h), with t counted in batches as above.
  std::shared_ptr<const nn::LRSchedule> lr_schedule_fn{};
  // Task weighting: "fixed" (task_weights, default all 1), "gradnorm", "metabalance", "uwl", "dwa", "pcgrad",
  // "mgda", "cagrad".
  std::vector<double> task_weights{};
  std::string task_weights_strategy = "fixed";
  double gradnorm_alpha = 1.5;
  double gradnorm_lr = 0.025;
  // GradNorm's W: parameter names (empty: the model's last_shared_parameters()).
  std::vector<std::string> gradnorm_layer{};
  double relax_factor = 0.7;  // MetaBalance
  double beta = 0.9;          // MetaBalance
  std::string main_task{};    // MetaBalance (empty: the first task)
  double dwa_temperature = 2.0;
  std::map<std::string, double> task_specific_lr{};
  std::vector<double> pos_weights{};  // per binary task (empty: all 1)
  double clip_grad_norm = 0;          // 0: off
  // Early stopping on a task's validation metric (auc, logloss; mse for regression tasks).
  int64_t earlystop_patience = 0;  // epochs without improvement; 0: off
  // Which validation figure decides: a task's name, or "mean" (also the default, empty) for the
  // mean over all tasks; the mean needs tasks of one kind (all binary or all regression) unless
  // earlystop_metric names one metric every task has.
  std::string earlystop_task{};
  std::string earlystop_metric{};  // empty: auc (binary) or mse (regression)
  double earlystop_min_delta = 0;  // an epoch counts as better only by more than this
  std::string out_dir{};           // empty: nothing written
  bool resume = false;
  uint64_t seed = defaults::seed;  // the strategies' generator (PCGrad's task order)
  bool progress = true;
  // Carried into every checkpoint so that a Predictor encodes raw rows as training did.
  std::shared_ptr<const data::Preprocessor> preprocessor{};
  // What else a resumed run must share with the run that wrote the checkpoint, beyond what the
  // trainer checks itself (learning rates, optimizer, weight decay, the loader's batch size, seed
  // and row count): e.g. {"train_file": path, "train_xxh64": hash}. A resume whose values differ
  // from the checkpoint's is refused with an Error naming each difference.
  nlohmann::json run_identity = nlohmann::json::object();
  // Parameters and gradients are scanned for NaN/inf every this many steps (and before every
  // checkpoint); a bad one stops training with an Error naming the step and the parameter, and
  // the last checkpoint (which passed the scan) is kept. 0: only before checkpoints.
  int64_t finite_check_every = 50;
  // Where the model trains: the trainer moves the model there (Module::to) before building the
  // optimizer. On a CUDA device each batch's dense values and labels go up through pinned host
  // buffers on a copy stream, one batch ahead, so the copy overlaps the previous step's compute
  // (sparse ids stay on the host: the embedding validates and offsets them, then uploads them).
  // Losses come back once per step (one small read for all tasks). Errors name the device when
  // this build has no CUDA backend or the device is not visible.
  Device device = Device::cpu();
  // Called on fit's thread after every training batch (0-based epoch and batch, rows done in the
  // epoch) and after every epoch (its record, once the epoch's checkpoint is written). Either may
  // throw to stop training there: the exception leaves fit and the checkpoint of the last finished
  // epoch stays as it was. The Python binding checks for Ctrl-C and logs through them.
  std::function<void(int64_t epoch, int64_t batch, int64_t rows)> on_batch{};
  std::function<void(const EpochRecord& record)> on_epoch{};
  // Data-parallel training over the ranks of this communicator (null or size 1: this process
  // alone). Every rank calls fit() with the same options and model, its train loader over its own
  // rows (data::rank_rows) and the whole validation set. Global batch = ranks × the loader's batch
  // size; BatchNorm uses the global batch's statistics and the balancers see the global per-task
  // gradients (nn::DataParallel), so N ranks train as one process of batch N·B. An epoch runs the
  // smallest per-rank batch count (rows of a trailing partial batch on some ranks may be skipped).
  // Rank 0 alone prints progress and writes out_dir; every rank reads the checkpoint to resume,
  // which may have been written by any number of ranks. CPU only.
  // Sharded embeddings: build the model with embedding_shards = this communicator (its config,
  // or trainer::ModelSizes::embedding_shards) and every rank holds every N-th row of the arenas
  // instead of a copy of them (nn/embedding.h); their gradients go to the rows' owners instead of
  // being averaged, the balancers sum their norms and dot products over the ranks, and the
  // checkpoints hold the whole arenas (gathered on rank 0; resume with any number of ranks,
  // sharded or not). The results equal the unsharded data-parallel run's (within float rounding).
  // A model sharded over other ranks than this communicator's is refused.
  std::shared_ptr<dist::Communicator> communicator{};
  // MetaBalance's choice of the auxiliary gradients it adapts: all | reduce | enlarge (balance.h).
  std::string metabalance_strategy = "all";
  double cagrad_c = 0.5;                    // CAGrad's c
  std::string mgda_normalization = "none";  // MGDA's gradient normaliser: none | l2 | loss | loss+
  // Gate diagnostics (MMoE, OMoE, PLE; metrics/gates.h) every epoch, into metrics.jsonl and
  // report.svg, with collapse warnings: on the validation data, or the first 20000 training rows
  // without it.
  bool gate_diagnostics = true;
};

class MTLTrainer {
 public:
  MTLTrainer(std::shared_ptr<models::MultiTaskModel> model, TrainerOptions options);
  ~MTLTrainer();

  // Trains for n_epochs (from the checkpoint's epoch when resuming). `val` may be null.
  void fit(data::DataLoader& train, data::DataLoader* val = nullptr);

  const std::vector<EpochRecord>& history() const { return history_; }
  const TrainerOptions& options() const { return opts_; }
  models::MultiTaskModel& model() { return *model_; }
  nn::Optimizer& optimizer() { return *optimizer_; }
  TaskBalancer& balancer() { return *balancer_; }
  // The epoch whose weights early stopping kept, counted from 1 as in the log, metrics.jsonl and
  // history()[i].epoch; 0 before the first validated epoch or without early stopping.
  int64_t best_epoch() const { return best_epoch_ + 1; }
  // Warnings of the last fit: degenerate tasks (one-class labels, positive-rate drift, and the
  // validation metrics' own: constant predictions, one class) and collapsed gates, printed unless
  // progress is off; the balancer's (MetaBalance's unscaled parameter), always printed.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The checkpoint metadata record of this model (kind, config, tasks, preprocessor).
  nlohmann::json model_metadata() const;
  // Writes the model (no optimizer) with model_metadata() to `path`. With sharded embeddings every
  // rank calls it (the arenas are gathered on rank 0, which writes).
  void save_model(const std::string& path) const;

 private:
  void build_optimizer();
  void build_scheduler(int64_t batches_per_epoch);
  void check_tasks_match(const data::Schema& schema, const char* split) const;
  void save_checkpoint(int64_t epochs_done);
  bool load_checkpoint();
  nlohmann::json trainer_state(int64_t epochs_done) const;
  nlohmann::json run_settings() const;
  void check_finite(int64_t epoch, int64_t batch, int64_t step, bool grads) const;
  void check_finite_here(int64_t epoch, int64_t batch, int64_t step, bool grads) const;
  std::string path(const char* file) const;
  double metric_of(const metrics::EvalResult& r, bool& higher_better) const;
  // Before training: refuses a task with no label on any training row, and early stopping on an
  // AUC that is undefined on the validation set (one class); warns (warnings()) about a binary
  // task whose training labels are one class and a positive rate that differs more than 5x
  // between training and validation.
  void check_tasks(const data::BatchSource& train, const data::BatchSource* val);
  void snapshot_best();
  void restore_best();

  std::shared_ptr<models::MultiTaskModel> model_;
  TrainerOptions opts_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  std::unique_ptr<nn::LRScheduler> scheduler_;  // null: constant learning rates
  std::vector<double> base_lrs_;                // each group's configured rate
  std::unique_ptr<TaskBalancer> balancer_;
  BalanceParams balance_params_;
  std::vector<EpochRecord> history_;
  int64_t start_epoch_ = 0;
  int64_t best_epoch_ = -1;  // 0-based internally (and in checkpoints); best_epoch() adds 1
  double best_metric_ = 0;
  int64_t bad_epochs_ = 0;
  bool stopped_early_ = false;
  // lr_schedule "plateau": the factor on every group's rate, and the best validation metric so far.
  double plateau_factor_ = 1.0;
  bool plateau_has_best_ = false;
  double plateau_best_ = 0;
  std::vector<std::pair<std::string, Tensor>> best_state_;  // CPU copies
  int64_t batches_run_ = 0;
  const data::LoaderOptions* train_loader_ = nullptr;  // during fit
  std::vector<std::string> warnings_;
  int64_t train_rows_ = 0;    // all ranks' rows
  nn::RowShards row_shards_;  // the sharded embedding arenas (inactive without)
  bool writer() const { return !opts_.communicator || opts_.communicator->rank() == 0; }
};

}  // namespace rechub::trainer
