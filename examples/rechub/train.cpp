// rechub train: CSV files in, a trained model, metrics.jsonl, report.svg and a per-task table out.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "examples/rechub/cli.h"
#include "rechub/core/device.h"
#include "rechub/core/error.h"
#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/infer.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/row_range.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/report.h"
#include "rechub/mtl/trainer/trainer.h"

namespace rechub::cli {

namespace fs = std::filesystem;

namespace {

std::string int_list_text(const std::vector<int64_t>& v) {
  std::string s;
  for (const int64_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

struct TrainFlags {
  std::string train, val, test, schema, sparse, dense, tasks, task_types, separator = ",", missing;
  double val_fraction = 0, test_fraction = 0;
  bool stream = false;
  int64_t shuffle_window = int64_t(1) << 20;
  std::string model = "mmoe";
  std::string device = "cpu";
  // Every default is the API's (rechub/mtl/defaults.h), so `rechub train` and a program that keeps
  // the API's defaults train the same model (tests/mtl/defaults_test.cpp).
  int64_t embed_dim = defaults::embed_dim, num_experts = defaults::num_experts,
          num_shared_experts = defaults::num_shared_experts, num_layers = defaults::num_layers;
  std::string normalize = data::normalization_name(defaults::normalization);  // see --normalize
  double embed_init_std = defaults::embedding_init_std;
  std::string hidden_units = int_list_text(defaults::hidden_units),
              expert_units = int_list_text(defaults::expert_units), tower_units = int_list_text(defaults::tower_units);
  double dropout = defaults::dropout;
  int64_t epochs = defaults::epochs, batch_size = defaults::batch_size;
  double lr = defaults::lr, weight_decay = defaults::weight_decay, clip = 0;
  std::string lr_schedule = defaults::lr_schedule;
  int64_t warmup_steps = 0, lr_step_epochs = defaults::lr_step_epochs;
  double lr_min_factor = 0, lr_gamma = defaults::lr_gamma;
  std::string optimizer = "adam";
  uint64_t seed = defaults::seed;
  int threads = 0;
  std::string balance = "fixed", task_weights, task_lr, pos_weights, main_task, early_stop_task, early_stop_metric;
  double gradnorm_alpha = 1.5, gradnorm_lr = 0.025, relax_factor = 0.7, beta = 0.9;
  int64_t early_stop = 0;
  double early_stop_min_delta = 0;
  std::string metabalance_strategy = "all", mgda_normalization = "none";
  std::string missing_labels, missing_label_value;
  std::vector<std::string> missing_label;
  double cagrad_c = 0.5;
  std::string out;
  bool resume = false, quiet = false, no_cache = false, shard_embeddings = false;
  bool hidden_given = false;  // --hidden-units on the command line (esmm has no bottom MLP without it)
};

// Rank 0's string on every rank.
void broadcast_string(dist::Communicator& world, std::string& s) {
  int64_t n = static_cast<int64_t>(s.size());
  world.broadcast(&n, 1, 0);
  std::vector<int64_t> words(static_cast<size_t>((n + 7) / 8), 0);
  if (world.rank() == 0 && n > 0) std::memcpy(words.data(), s.data(), static_cast<size_t>(n));
  world.broadcast(words.data(), static_cast<int64_t>(words.size()), 0);
  s.assign(reinterpret_cast<const char*>(words.data()), static_cast<size_t>(n));
}

data::Schema make_schema(const TrainFlags& f, const data::CsvOptions& csv) {
  if (!f.schema.empty()) {
    RECHUB_CHECK(f.sparse.empty() && f.dense.empty(), "--schema and --sparse/--dense exclude each other");
    data::Schema s = data::load_schema(f.schema);
    if (!f.tasks.empty()) {
      const auto want = parse_name_list("--tasks", f.tasks);
      std::vector<std::string> cols;
      for (const auto& l : s.labels) cols.push_back(l.column);
      RECHUB_CHECK(cols == want, "--tasks " << f.tasks << " differs from the label columns of --schema " << f.schema);
    }
    if (f.embed_dim > 0)
      for (auto& sp : s.sparse) sp.embed_dim = f.embed_dim;
    return s;
  }
  RECHUB_CHECK(!f.tasks.empty(),
               "--tasks is required (the label columns, e.g. --tasks click,purchase) unless --schema is given");
  const auto tasks = parse_name_list("--tasks", f.tasks);
  data::InferOptions io{.embed_dim = f.embed_dim};
  if (!f.task_types.empty()) {
    const auto types = parse_name_list("--task-types", f.task_types);
    RECHUB_CHECK(types.size() == tasks.size(),
                 "--task-types has " << types.size() << " entries for " << tasks.size() << " tasks in --tasks");
    for (size_t i = 0; i < tasks.size(); ++i) {
      data::TaskType type;
      try {
        type = data::TaskType::from_string(types[i]);
      } catch (const Error&) {
        RECHUB_FAIL("--task-types: '" << types[i] << "' must be binary (or classification) or regression");
      }
      io.labels.push_back({.task = tasks[i], .column = tasks[i], .type = type});
    }
  } else {
    io.label_columns = tasks;
  }
  if (!f.sparse.empty() || !f.dense.empty()) {
    if (!f.sparse.empty()) io.sparse = parse_name_list("--sparse", f.sparse);
    if (!f.dense.empty()) io.dense = parse_name_list("--dense", f.dense);
    // Columns named in neither list (nor as labels) are not features.
    const data::RawRows head = data::read_raw_rows(f.train, csv, 0);
    std::set<std::string> keep(io.sparse.begin(), io.sparse.end());
    keep.insert(io.dense.begin(), io.dense.end());
    keep.insert(tasks.begin(), tasks.end());
    for (const auto& name : io.sparse)
      RECHUB_CHECK(std::find(head.header.begin(), head.header.end(), name) != head.header.end(),
                   "--sparse: column '" << name << "' is not in " << f.train);
    for (const auto& name : io.dense)
      RECHUB_CHECK(std::find(head.header.begin(), head.header.end(), name) != head.header.end(),
                   "--dense: column '" << name << "' is not in " << f.train);
    for (const auto& c : head.header)
      if (!keep.count(c)) io.ignore.push_back(c);
  }
  auto inferred = data::infer_schema(f.train, io, csv);
  if (!f.quiet) std::cerr << inferred.report;
  return inferred.schema;
}

// A flag that applies to some values of another flag (--expert-units to the mixture-of-experts
// models, --gradnorm-alpha to --balance gradnorm): given with any other value, it would be ignored
// without a word, so it is refused.
struct ModelFlag {
  CLI::Option* option;
  std::vector<std::string> used_by;
};

void refuse_unused(const std::vector<ModelFlag>& flags, const char* selector, const std::string& chosen) {
  for (const auto& fl : flags) {
    if (fl.option->count() == 0 || std::find(fl.used_by.begin(), fl.used_by.end(), chosen) != fl.used_by.end())
      continue;
    std::string users;
    for (const auto& u : fl.used_by) users += (users.empty() ? "" : ", ") + u;
    RECHUB_FAIL(fl.option->get_name() << " does not apply to " << selector << " " << chosen << " (it is used by "
                                      << selector << " " << users << "); remove it or choose one of those");
  }
}

// --tower-units: "64,32" (every task) or "click=64,32;purchase=32" (each task its own, every task
// named once). Returns the per-task lists in the order of `tasks`, or {} for the first form.
std::vector<std::vector<int64_t>> parse_tower_units_per_task(const std::string& s,
                                                             const std::vector<std::string>& tasks) {
  if (s.find('=') == std::string::npos) return {};
  std::map<std::string, std::vector<int64_t>> by_task;
  size_t begin = 0;
  while (begin <= s.size()) {
    const size_t end = std::min(s.find(';', begin), s.size());
    const std::string item = s.substr(begin, end - begin);
    begin = end + 1;
    if (item.empty()) continue;
    const auto eq = item.find('=');
    RECHUB_CHECK(eq != std::string::npos && eq > 0,
                 "--tower-units '" << s << "': '" << item << "' must be task=units, e.g. click=64,32;purchase=32");
    const std::string task = item.substr(0, eq);
    RECHUB_CHECK(
        std::find(tasks.begin(), tasks.end(), task) != tasks.end(),
        "--tower-units: '" << task << "' is not a task (the tasks are " << [&] {
          std::string l;
          for (const auto& t : tasks) l += (l.empty() ? "" : ", ") + t;
          return l;
        }() << ")");
    RECHUB_CHECK(!by_task.count(task), "--tower-units: task '" << task << "' is given twice");
    by_task[task] = parse_int_list("--tower-units", item.substr(eq + 1));
  }
  std::vector<std::vector<int64_t>> out;
  for (const auto& t : tasks) {
    RECHUB_CHECK(by_task.count(t), "--tower-units '" << s << "': no units for task '" << t
                                                     << "' (with task=units, every task needs its own)");
    out.push_back(by_task[t]);
  }
  return out;
}

// The first width of --tower-units in either form (the smallest first layer, for the memory bound).
int64_t first_tower_width(const std::string& s) {
  if (s.find('=') == std::string::npos) return parse_int_list("--tower-units", s).at(0);
  int64_t w = 0;
  size_t p = 0;
  while ((p = s.find('=', p)) != std::string::npos) {
    const size_t end = s.find_first_of(",;", p + 1);
    const int64_t v =
        parse_int_list("--tower-units", s.substr(p + 1, end == std::string::npos ? end : end - p - 1)).at(0);
    w = w == 0 ? v : std::min(w, v);
    ++p;
  }
  return w;
}

// --missing-labels skip|error (every task), --missing-label task=skip|error (one task, repeatable, or
// comma-separated), --missing-label-value V (the "no label" value of the tasks that skip).
void apply_missing_label_flags(const TrainFlags& f, data::Schema& s) {
  if (f.missing_labels == "skip")
    for (auto& l : s.labels) l.missing_ok = true;
  for (const auto& arg : f.missing_label)
    for (const auto& item : parse_name_list("--missing-label", arg)) {
      const auto eq = item.find('=');
      const std::string task = item.substr(0, eq), what = eq == std::string::npos ? "" : item.substr(eq + 1);
      RECHUB_CHECK(eq != std::string::npos && eq > 0 && (what == "skip" || what == "error"),
                   "--missing-label '" << item << "': must be task=skip or task=error, e.g. purchase=skip");
      auto it = std::find_if(s.labels.begin(), s.labels.end(), [&](const data::Label& l) { return l.task == task; });
      if (it == s.labels.end()) {
        std::string known;
        for (const auto& l : s.labels) known += (known.empty() ? "" : ", ") + l.task;
        RECHUB_FAIL("--missing-label '" << item << "': no task '" << task << "' (tasks: " << known << ")");
      }
      it->missing_ok = what == "skip";
    }
  if (!f.missing_label_value.empty()) {
    bool any = false;
    for (auto& l : s.labels)
      if (l.missing_ok) l.missing_value = f.missing_label_value, any = true;
    RECHUB_CHECK(any, "--missing-label-value " << f.missing_label_value
                                               << " needs a task whose labels may be missing (--missing-labels skip or "
                                                  "--missing-label task=skip)");
  }
  data::validate_schema(s);
}

std::map<std::string, double> parse_task_lr(const std::string& s) {
  std::map<std::string, double> m;
  for (const auto& item : parse_name_list("--task-lr", s)) {
    const auto eq = item.find('=');
    RECHUB_CHECK(eq != std::string::npos && eq > 0,
                 "--task-lr '" << s << "': '" << item << "' must be task=rate, e.g. click=1e-3");
    const auto v = parse_double_list("--task-lr", item.substr(eq + 1));
    m[item.substr(0, eq)] = v.at(0);
  }
  return m;
}

void print_table(const metrics::EvalResult& r, const std::string& split) {
  std::printf("\n%s metrics (%lld rows)\n", split.c_str(), static_cast<long long>(r.rows));
  std::fputs(r.table(4).c_str(), stdout);
  std::fflush(stdout);
}

// Sizes that cannot fit are refused before anything is allocated (allocating and initialising,
// say, 100000-wide embeddings otherwise runs for minutes and ends in the OOM killer). The figure is
// a lower bound: the embedding tables and the layers that read the concatenated embeddings, each
// with the optimizer's per-parameter state (and a gradient for the dense layers), plus that
// concatenated input for one batch and its gradient.
void check_model_fits(const TrainFlags& f, const data::Schema& fitted) {
  double embedding = 0, input_width = static_cast<double>(fitted.dense.size());
  for (const auto& s : fitted.sparse) {
    input_width += static_cast<double>(s.embed_dim);
    if (s.shared_with.empty()) embedding += static_cast<double>(s.vocab_size) * static_cast<double>(s.embed_dim);
  }
  const auto first = [](const std::string& flag, const std::string& units) {
    return static_cast<double>(parse_int_list(flag, units).at(0));
  };
  const auto tasks = static_cast<double>(fitted.labels.size());
  const double experts = static_cast<double>(f.num_experts);
  // Width of the layers reading the input, summed over the model's blocks that read it.
  double readers = first("--hidden-units", f.hidden_units);  // shared_bottom: one bottom
  if (f.model == "mmoe" || f.model == "omoe") readers = experts * first("--expert-units", f.expert_units);
  if (f.model == "ple")
    readers = (tasks * experts + static_cast<double>(f.num_shared_experts)) * first("--expert-units", f.expert_units);
  if (f.model == "aitm") readers = tasks * first("--hidden-units", f.hidden_units);
  if (f.model == "esmm")
    readers = f.hidden_given ? first("--hidden-units", f.hidden_units)
                             : 2 * static_cast<double>(first_tower_width(f.tower_units));
  const double dense = input_width * readers;
  const double states = f.optimizer == "sgd" ? 0 : f.optimizer == "adagrad" ? 1 : 2;
  const double activations = 2.0 * static_cast<double>(f.batch_size) * input_width;
  const double bytes = 4.0 * (embedding * (1 + states) + dense * (2 + states) + activations);
  const auto have = static_cast<double>(usable_memory_bytes());
  RECHUB_CHECK(bytes <= have, "the model needs at least "
                                  << gib(bytes) << " of memory (embedding tables: " << embedding
                                  << " parameters at --embed-dim " << f.embed_dim << ", layers on the " << input_width
                                  << "-wide input: " << dense << " parameters, with " << f.optimizer
                                  << " state; one batch of " << f.batch_size << " input rows), more than the "
                                  << gib(have)
                                  << " this machine has: lower --embed-dim or --batch-size, or cap the "
                                     "vocabularies (vocab_size in a --schema file)");
}

}  // namespace

Device parse_device_flag(const std::string& s) {
  Device d;
  try {
    d = Device::parse(s);
  } catch (const Error&) {
    RECHUB_FAIL("--device '" << s << "': unknown device (expected cpu, cuda or cuda:N)");
  }
  if (d.is_cpu()) return d;
#ifdef RECHUB_WITH_CUDA
  const int n = cuda_device_count();
  RECHUB_CHECK(n > 0, "--device " << s
                                  << ": no CUDA device is visible (the driver reports none; check the driver and "
                                     "CUDA_VISIBLE_DEVICES), use --device cpu");
  RECHUB_CHECK(d.index < n,
               "--device " << s << ": only " << n << " CUDA device(s) are visible (cuda:0 to cuda:" << n - 1 << ")");
  return d;
#else
  RECHUB_FAIL("--device " << s
                          << ": this build of rechub has no CUDA backend (reconfigure with -DRECHUB_CUDA=ON), use "
                             "--device cpu");
#endif
}

Runner add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  auto* c = app.add_subcommand("train", "Train a multi-task model on CSV files");
  c->add_option("--train", f->train, "Training CSV file (with a header)")->required();
  c->add_option("--val", f->val, "Validation CSV file (metrics per epoch, early stopping)");
  c->add_option("--test", f->test, "Test CSV file (metrics printed at the end)");
  c->add_option("--val-fraction", f->val_fraction, "Without --val: this fraction of --train for validation")
      ->check(CLI::Range(0.0, 0.9));
  c->add_option("--test-fraction", f->test_fraction, "Without --test: this fraction of --train for test")
      ->check(CLI::Range(0.0, 0.9));
  c->add_option("--tasks", f->tasks, "Label columns, one task each, e.g. click,purchase");
  c->add_option("--task-types", f->task_types, "binary|regression per task (default: inferred from the values)");
  c->add_option("--schema", f->schema, "JSON schema file (sparse, dense, labels) instead of inference");
  c->add_option("--sparse", f->sparse, "Sparse (id) feature columns, comma-separated");
  c->add_option("--dense", f->dense, "Dense (float) feature columns, comma-separated");
  c->add_option("--separator", f->separator, "CSV field separator");
  c->add_option("--model", f->model, "shared_bottom|esmm|mmoe|omoe|ple|aitm")
      ->check(CLI::IsMember({"shared_bottom", "esmm", "mmoe", "omoe", "ple", "aitm"}));
  c->add_option("--normalize", f->normalize,
                "Dense features: standard (the default: mean 0, std 1 on the training rows), none, min_max "
                "([0, 1]) or log_standard (standard on sign(x) log(1 + |x|)). Raw amounts such as capital gains "
                "up to 99,999 next to ages swamp the first layer and the small initial embeddings: on the census "
                "rows none cost MMoE 0.01-0.02 of test AUC [API: PreprocessOptions::normalization]")
      ->check(CLI::IsMember({"none", "standard", "min_max", "log_standard"}));
  c->add_option("--embed-init-std", f->embed_init_std, "Embedding rows start as N(0, std^2) [API: embedding_init_std]")
      ->check(positive());
  c->add_option("--embed-dim", f->embed_dim, "Embedding width of every sparse feature [API: SparseFeature::embed_dim]")
      ->check(positive());
  // Flags that shape one model family only: given for another model, they are refused (below).
  std::vector<ModelFlag> model_flags{
      {c->add_option("--hidden-units", f->hidden_units,
                     "Bottom MLP: shared_bottom's shared bottom, aitm's per-task bottom, esmm's optional MLP "
                     "shared by both towers (default: none), e.g. 256,128 [API: hidden_units]"),
       {"shared_bottom", "aitm", "esmm"}},
      {c->add_option("--expert-units", f->expert_units,
                     "Expert MLP (mmoe, omoe, ple), e.g. 256,128 [API: expert_units]"),
       {"mmoe", "omoe", "ple"}},
      {c->add_option("--num-experts", f->num_experts,
                     "Experts (mmoe/omoe); task-specific experts per task and level (ple) [API: num_experts]")
           ->check(positive()),
       {"mmoe", "omoe", "ple"}},
      {c->add_option("--num-shared-experts", f->num_shared_experts,
                     "Shared experts per level (ple) [API: num_shared_experts]")
           ->check(positive()),
       {"ple"}},
      {c->add_option("--num-layers", f->num_layers, "CGC levels (ple) [API: num_layers]")->check(positive()), {"ple"}}};
  c->add_option("--tower-units", f->tower_units,
                "Tower MLP of every task, e.g. 64,32, or of each task, e.g. 'click=64,32;purchase=32' "
                "[API: tower_units / tower_units_per_task; SharedBottom: task_hidden_units]");
  c->add_option("--dropout", f->dropout, "Dropout in experts and towers")->check(CLI::Range(0.0, 0.99));
  c->add_option("--epochs", f->epochs, "Epochs")->check(positive());
  c->add_option("--batch-size", f->batch_size,
                "Rows per batch (per rank under mpirun). 0, the default: from the training rows, the largest of "
                "1024, 512, 256 giving at least 200 steps per epoch (256 below 102,400 rows, 1024 from 204,800) "
                "[API: LoaderOptions::batch_size]")
      ->check(non_negative());
  c->add_option("--lr", f->lr, "Learning rate")->check(positive());
  c->add_option("--weight-decay", f->weight_decay, "Weight decay")->check(non_negative());
  auto* lr_schedule =
      c->add_option("--lr-schedule", f->lr_schedule,
                    "Learning-rate schedule: plateau (the default: x --lr-gamma 0.5 after every epoch whose "
                    "validation metric, the one --early-stop watches, does not improve; constant without "
                    "validation data. With a constant rate the validation AUC jumps between epochs and "
                    "early stopping keeps a noisy model), constant, step (x --lr-gamma every "
                    "--lr-step-epochs epochs) or cosine (decay to --lr-min-factor x lr at the last batch) "
                    "[API: lr_schedule]")
          ->check(CLI::IsMember({"constant", "cosine", "step", "plateau"}));
  c->add_option("--warmup-steps", f->warmup_steps,
                "Linear warm-up from 0 to the learning rate over this many batches, before the schedule "
                "[API: lr_warmup_steps]")
      ->check(non_negative());
  std::vector<ModelFlag> schedule_flags{
      {c->add_option("--lr-min-factor", f->lr_min_factor,
                     "cosine: the last batch's rate as a fraction of --lr "
                     "[API: lr_min_factor]")
           ->check(CLI::Range(0.0, 1.0)),
       {"cosine"}},
      {c->add_option("--lr-step-epochs", f->lr_step_epochs, "step: epochs between decays [API: lr_step_epochs]")
           ->check(positive()),
       {"step"}},
      {c->add_option("--lr-gamma", f->lr_gamma, "step, plateau: factor of each decay (default 0.5) [API: lr_gamma]")
           ->check(CLI::Range(1e-9, 1.0)),
       {"step", "plateau"}}};
  (void)lr_schedule;
  c->add_option("--optimizer", f->optimizer, "adam|adamw|sgd|adagrad")
      ->check(CLI::IsMember({"adam", "adamw", "sgd", "adagrad"}));
  c->add_option("--clip-grad-norm", f->clip, "Clip the global gradient norm (0: off)")->check(non_negative());
  c->add_option("--seed", f->seed, "Seed (shuffling, initialisation, PCGrad's order)");
  c->add_option("--device", f->device, "Where to train: cpu, cuda or cuda:N (default cpu)");
  c->add_option("--threads", f->threads, "OpenMP threads (0: all; at most 4 per core)")->check(non_negative());
  c->add_option("--balance", f->balance, "Task balancing: fixed|gradnorm|metabalance|uwl|dwa|pcgrad|mgda|cagrad")
      ->check(CLI::IsMember({"fixed", "gradnorm", "metabalance", "uwl", "dwa", "pcgrad", "mgda", "cagrad"}));
  // Flags of some balancing methods only: refused with another --balance (below).
  std::vector<ModelFlag> balance_flags{
      {c->add_option("--task-weights", f->task_weights,
                     "Loss weights per task, e.g. 1,0.5 (fixed; metabalance, pcgrad, mgda and cagrad scale the losses "
                     "by them first) [API: task_weights]"),
       {"fixed", "metabalance", "pcgrad", "mgda", "cagrad"}},
      {c->add_option("--gradnorm-alpha", f->gradnorm_alpha, "GradNorm's asymmetry alpha [API: gradnorm_alpha]")
           ->check(non_negative()),
       {"gradnorm"}},
      {c->add_option("--gradnorm-lr", f->gradnorm_lr, "Learning rate of GradNorm's task weights [API: gradnorm_lr]")
           ->check(positive()),
       {"gradnorm"}},
      {c->add_option("--relax-factor", f->relax_factor, "MetaBalance relax factor r [API: relax_factor]")
           ->check(CLI::Range(0.0, 1.0)),
       {"metabalance"}},
      {c->add_option("--beta", f->beta, "MetaBalance moving-average factor [API: beta]")
           ->check(CLI::Range(0.0, 0.999999)),
       {"metabalance"}},
      {c->add_option("--main-task", f->main_task, "MetaBalance's main task (default: the first) [API: main_task]"),
       {"metabalance"}},
      {c->add_option("--metabalance-strategy", f->metabalance_strategy,
                     "Which auxiliary gradients MetaBalance adapts: all, reduce (only those larger than the main "
                     "task's) or enlarge (only the smaller ones) [API: metabalance_strategy]")
           ->check(CLI::IsMember({"all", "reduce", "enlarge"})),
       {"metabalance"}},
      {c->add_option("--cagrad-c", f->cagrad_c,
                     "CAGrad's c: how far the update may move from the mean gradient (>= 0) [API: cagrad_c]")
           ->check(non_negative()),
       {"cagrad"}},
      {c->add_option("--mgda-normalization", f->mgda_normalization,
                     "MGDA's per-task gradient normaliser: none|l2|loss|loss+ [API: mgda_normalization]")
           ->check(CLI::IsMember({"none", "l2", "loss", "loss+"})),
       {"mgda"}}};
  c->add_option("--missing-labels", f->missing_labels,
                "skip: an empty label cell (or --missing-label-value) means the row has no label for that task; the "
                "row still trains the other tasks, the task's loss and metrics use its labelled rows only. "
                "error (default): a missing label is an error")
      ->check(CLI::IsMember({"skip", "error"}));
  c->add_option("--missing-label", f->missing_label, "The same per task, e.g. --missing-label purchase=skip");
  c->add_option("--missing-label-value", f->missing_label_value,
                "A label value that means 'no label' (e.g. -1) for the tasks whose labels may be missing");
  c->add_option("--task-lr", f->task_lr, "Per-task learning rates of the task layers, e.g. click=1e-3,purchase=5e-4");
  c->add_option("--pos-weights", f->pos_weights, "Positive-class weight per task, e.g. 1,20");
  c->add_option("--early-stop", f->early_stop, "Stop after this many epochs without validation improvement (0: off)")
      ->check(non_negative());
  auto* es_task = c->add_option("--early-stop-task", f->early_stop_task,
                                "Task whose validation metric decides, or mean (the default: the mean over the tasks) "
                                "[API: earlystop_task]");
  auto* es_delta = c->add_option("--early-stop-min-delta", f->early_stop_min_delta,
                                 "An epoch counts as better only by more than this [API: earlystop_min_delta]")
                       ->check(non_negative());
  auto* es_metric =
      c->add_option("--early-stop-metric", f->early_stop_metric, "auc|logloss|mse|mae [API: earlystop_metric]")
          ->check(CLI::IsMember({"auc", "logloss", "mse", "mae"}));
  auto* task_types = c->get_option("--task-types");
  c->add_option("--out", f->out, "Output directory: checkpoint, model.safetensors, metrics.jsonl, report.svg")
      ->required();
  c->add_flag(
      "--resume", f->resume,
      "Continue from --out/checkpoint.safetensors (bit-identical to an uninterrupted run, dropout included). "
      "Refused when --lr, --task-lr, --weight-decay, --optimizer, --clip-grad-norm, the learning-rate schedule, "
      "--batch-size, --seed, the shuffle (--stream, --shuffle-window) or the training file's contents differ from the "
      "checkpoint's run");
  c->add_flag("--shard-embeddings", f->shard_embeddings,
              "Under mpirun: split the embedding tables by row over the ranks (row r on rank r mod N) instead of "
              "a copy on every rank, for tables bigger than one machine; same results. The checkpoints hold the "
              "whole tables (rechub eval, --resume with any number of ranks)");
  c->add_flag("--quiet", f->quiet, "No progress output");
  c->add_flag("--no-cache", f->no_cache, "Do not write or use binary caches next to the CSV files");
  c->add_flag("--stream", f->stream,
              "Train from the binary cache read in blocks instead of holding the training rows in memory (data "
              "larger than memory; README 'What a run guarantees'): resident memory stays at the model, the optimizer "
              "state, the validation/test sets and one shuffle window, whatever --train's size. The shuffle is by "
              "blocks of 65536 consecutive rows, --shuffle-window rows at a time, so the row order differs from the "
              "in-memory path's. Needs the cache (not with --no-cache) and --val/--test files (not --val-fraction "
              "or --test-fraction). Under mpirun each rank reads only its own rows of the cache");
  c->add_option("--shuffle-window", f->shuffle_window,
                "With --stream: rows shuffled together, in whole blocks of 65536 (rounded up); more mixes better "
                "and costs about 130 bytes of memory per row")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  return [f, model_flags, balance_flags, schedule_flags, es_task, es_metric, es_delta, task_types]() {
    refuse_unused(model_flags, "--model", f->model);
    refuse_unused(schedule_flags, "--lr-schedule", f->lr_schedule);
    f->hidden_given = model_flags[0].option->count() > 0;
    refuse_unused(balance_flags, "--balance", f->balance);
    for (const CLI::Option* o : {es_task, es_metric, es_delta})
      RECHUB_CHECK(o->count() == 0 || f->early_stop > 0,
                   o->get_name() << " only applies with early stopping: add --early-stop N (the patience in epochs)");
    RECHUB_CHECK(f->early_stop == 0 || !f->val.empty() || f->val_fraction > 0,
                 "--early-stop needs validation data to watch: add --val FILE or --val-fraction F");
    RECHUB_CHECK(task_types->count() == 0 || f->schema.empty(),
                 "--task-types does not apply with --schema: the schema's labels carry their types (\"type\": "
                 "\"binary\" or \"regression\")");
    // Under mpirun: one rank of a data-parallel run (README "Training on several machines"). Rank 0
    // alone prints, holds --out and writes there; every rank trains on its share of --train.
    const std::shared_ptr<dist::Communicator> world = cli_world();
    const bool rank0 = world->rank() == 0;
    if (!rank0) f->quiet = true;
    RECHUB_CHECK(!f->shard_embeddings || world->size() > 1,
                 "--shard-embeddings splits the embedding tables over the ranks of an MPI job, but this process runs "
                 "alone: start it with mpirun -np N (N > 1), or leave the flag out");
    RECHUB_CHECK(!f->shard_embeddings || f->device == "cpu",
                 "--shard-embeddings trains on the CPU only (--device " << f->device << ")");
    apply_threads_flag(f->threads);
    RECHUB_CHECK(f->val.empty() || f->val_fraction == 0, "--val and --val-fraction exclude each other");
    RECHUB_CHECK(f->test.empty() || f->test_fraction == 0, "--test and --test-fraction exclude each other");
    RECHUB_CHECK(!f->stream || !f->no_cache, "--stream reads the training rows from the binary cache: drop --no-cache");
    RECHUB_CHECK(!f->stream || (f->val_fraction == 0 && f->test_fraction == 0),
                 "--stream takes validation and test rows from their own files (--val, --test): --val-fraction and "
                 "--test-fraction draw random rows of the whole training set, which --stream does not hold");
    // Everything the options decide is checked before any data is read.
    const Device device = parse_device_flag(f->device);
    trainer::ModelSizes sizes{.embed_dim = f->embed_dim,
                              .hidden_units = parse_int_list("--hidden-units", f->hidden_units),
                              .esmm_hidden_units = f->hidden_given ? parse_int_list("--hidden-units", f->hidden_units)
                                                                   : std::vector<int64_t>{},
                              .expert_units = parse_int_list("--expert-units", f->expert_units),
                              .num_experts = f->num_experts,
                              .num_shared_experts = f->num_shared_experts,
                              .num_layers = f->num_layers,
                              .tower_units = f->tower_units.find('=') == std::string::npos
                                                 ? parse_int_list("--tower-units", f->tower_units)
                                                 : std::vector<int64_t>{},
                              .dropout = f->dropout,
                              .seed = f->seed,
                              .embedding_init_std = f->embed_init_std,
                              .embedding_shards = f->shard_embeddings ? world : nullptr};
    trainer::TrainerOptions to{
        .optimizer_params = {.lr = f->lr,
                             .weight_decay = f->weight_decay,
                             .kind = trainer::optimizer_kind_from_name(f->optimizer)},
        .n_epochs = f->epochs,
        .lr_schedule = f->lr_schedule,
        .lr_warmup_steps = f->warmup_steps,
        .lr_min_factor = f->lr_min_factor,
        .lr_step_epochs = f->lr_step_epochs,
        .lr_gamma = f->lr_gamma,
        .task_weights =
            f->task_weights.empty() ? std::vector<double>{} : parse_double_list("--task-weights", f->task_weights),
        .task_weights_strategy = f->balance,
        .gradnorm_alpha = f->gradnorm_alpha,
        .gradnorm_lr = f->gradnorm_lr,
        .relax_factor = f->relax_factor,
        .beta = f->beta,
        .main_task = f->main_task,
        .task_specific_lr = f->task_lr.empty() ? std::map<std::string, double>{} : parse_task_lr(f->task_lr),
        .pos_weights =
            f->pos_weights.empty() ? std::vector<double>{} : parse_double_list("--pos-weights", f->pos_weights),
        .clip_grad_norm = f->clip,
        .earlystop_patience = f->early_stop,
        .earlystop_task = f->early_stop_task,
        .earlystop_metric = f->early_stop_metric,
        .earlystop_min_delta = f->early_stop_min_delta,
        .out_dir = f->out,
        .resume = f->resume,
        .seed = f->seed,
        .progress = !f->quiet,
        .device = device};
    to.metabalance_strategy = f->metabalance_strategy;
    to.cagrad_c = f->cagrad_c;
    to.mgda_normalization = f->mgda_normalization;
    RECHUB_CHECK(fs::exists(f->train), "--train '" << f->train << "': no such file");
    for (const auto* p : {&f->val, &f->test})
      RECHUB_CHECK(p->empty() || fs::exists(*p), "'" << *p << "': no such file");
    // Validating or testing on the training rows would report a fit as a generalisation.
    refuse_same_file("--train", f->train, "--val", f->val);
    refuse_same_file("--train", f->train, "--test", f->test);
    refuse_same_file("--val", f->val, "--test", f->test);
    // Held from before any data is read until the process ends: two runs into one --out would
    // overwrite each other's checkpoints and both report success.
    std::unique_ptr<const OutDirLock> lock = rank0 ? std::make_unique<const OutDirLock>(f->out) : nullptr;
    // The training file by content, not path: a data folder that moved still resumes. Under
    // mpirun rank 0 hashes it and tells the others (no rank but 0 reads the whole file).
    std::string train_hash = rank0 ? data::file_content_xxh64(f->train) : std::string(16, '0');
    if (world->size() > 1) broadcast_string(*world, train_hash);
    to.run_identity = {{"train_xxh64", train_hash}};
    data::CsvOptions csv{.separator = f->separator};
    // Rank 0 reads the files first (and writes the binary caches); the others then read the caches.
    if (!rank0) world->barrier();
    data::Schema schema = make_schema(*f, csv);
    apply_missing_label_flags(*f, schema);
    data::DataOptions dopt{
        .csv = csv, .val_fraction = f->val_fraction, .test_fraction = f->test_fraction, .split_seed = f->seed};
    dopt.cache.enabled = !f->no_cache;
    dopt.preprocess.normalization = data::normalization_from_name(f->normalize);
    // Under mpirun, rank 0 alone parses --train (into the binary cache) and fits the preprocessor
    // from the cache; the other ranks take both from it, and every rank reads only its own rows of
    // the cache: as it goes with --stream, into memory without. (That fit is the in-memory fit to the
    // bit: Stream.CacheSourceHoldsTheInMemoryRows.) Not with --no-cache, nor with --val-fraction
    // or --test-fraction, which draw random rows of the whole file: then every rank parses it.
    const bool from_cache =
        world->size() > 1 && (f->stream || (!f->no_cache && f->val_fraction == 0 && f->test_fraction == 0));
    dopt.stream = f->stream || from_cache;
    data::LoadedData d;
    if (rank0 || !from_cache) d = data::load_data({.train = f->train, .val = f->val, .test = f->test}, schema, dopt);
    if (rank0 && world->size() > 1) world->barrier();
    if (from_cache) {
      std::string prep = rank0 ? d.preprocessor->to_json().dump() : std::string();
      std::string cache_path = rank0 ? d.train_cache->path() : std::string();
      broadcast_string(*world, prep);
      broadcast_string(*world, cache_path);
      if (!rank0) {
        // Rank 0 built or checked the cache a moment ago: its checksum is not hashed again here.
        d.train_cache = data::CacheFile::open(cache_path, /*verify_checksum=*/false);
        d.preprocessor = std::make_shared<data::Preprocessor>(
            data::Preprocessor::from_json(nlohmann::json::parse(prep), "rank 0's preprocessor"));
        d.train_source = d.preprocessor->stream(d.train_cache);
        // The validation/test rows, whole on every rank, encoded as rank 0 encodes them.
        auto encode_file = [&](const std::string& path) -> std::shared_ptr<const data::Dataset> {
          if (path.empty()) return nullptr;
          return std::make_shared<const data::Dataset>(
              d.preprocessor->transform(data::load_csv(path, schema, csv, dopt.cache)));
        };
        d.val = encode_file(f->val);
        d.test = encode_file(f->test);
      }
    }
    to.preprocessor = d.preprocessor;
    to.communicator = world;
    // This rank's contiguous share of the training rows (all of them in a single process), read
    // from the cache: as training goes with --stream, into memory now without it.
    std::shared_ptr<const data::BatchSource> train_rows = d.train_source;
    if (world->size() > 1) train_rows = data::rank_rows(d.train_source, world->rank(), world->size());
    if (from_cache && !f->stream) train_rows = std::make_shared<const data::Dataset>(data::materialize(*train_rows));
    const auto& fitted = d.preprocessor->schema();
    // --batch-size 0: chosen from all the training rows, so that every rank of a data-parallel run
    // takes the batch a single process would.
    if (f->batch_size == 0) f->batch_size = defaults::batch_size_for(d.train_source->rows());
    check_model_fits(*f, fitted);
    RECHUB_CHECK(!f->shard_embeddings || !fitted.sparse.empty(),
                 "--shard-embeddings: the model has no sparse features, so there is no embedding table to shard");
    sizes.tower_units_per_task = parse_tower_units_per_task(f->tower_units, fitted.task_names());
    auto model = trainer::build_model(f->model, models::features_from_schema(fitted), fitted.task_names(),
                                      fitted.task_types(), sizes);
    if (!f->quiet)
      std::cerr << model->kind() << ": " << model->parameter_count() << " parameters, " << d.train_source->rows()
                << " training rows, tasks";
    if (!f->quiet)
      for (const auto& t : model->task_names()) std::cerr << " " << t;
    if (!f->quiet) std::cerr << "\n";
    if (!f->quiet && world->size() > 1)
      std::cerr << "data parallel: " << world->size() << " ranks x batch " << f->batch_size << " = global batch "
                << world->size() * f->batch_size << "\n";
    if (!f->quiet && f->shard_embeddings) {
      int64_t rows = 0;
      for (size_t a = 0; a < model->embedding().arenas().size(); ++a) rows += model->embedding().arena_rows(a);
      std::cerr << "sharded embeddings: " << rows << " rows over " << world->size() << " ranks (row r on rank r mod "
                << world->size() << ")\n";
    }
    trainer::MTLTrainer trainer(model, to);
    data::LoaderOptions lopt{.batch_size = f->batch_size, .seed = f->seed};
    if (f->stream) {
      lopt.shuffle_block = data::ColumnTable::kGroupRows;
      lopt.shuffle_window = (f->shuffle_window + lopt.shuffle_block - 1) / lopt.shuffle_block;
      // Batches ready ahead cover the pause while the loader reads and encodes the next window
      // (about 150 ms for 1M rows; 8 batches of 4096 take longer to train).
      lopt.prefetch = 8;
    }
    data::DataLoader train(train_rows, lopt);
    std::unique_ptr<data::DataLoader> val;
    if (d.val)
      val = std::make_unique<data::DataLoader>(
          d.val, data::LoaderOptions{.batch_size = 4096, .shuffle = false, .prefetch = 0});
    trainer.fit(train, val.get());
    const auto eval_set = d.test ? d.test : d.val;
    // Sharded embeddings: every rank takes part in each lookup; rank 0 prints and writes.
    if (eval_set && (rank0 || f->shard_embeddings)) {
      const auto r = metrics::evaluate_multi_task(*model, *eval_set, {.quiet = !rank0});
      if (!rank0) return 0;
      print_table(r, d.test ? "test" : "validation");
      trainer::write_file_atomic((fs::path(f->out) / (d.test ? "test_metrics.json" : "val_metrics.json")).string(),
                                 r.to_json().dump(2) + "\n");
    }
    if (rank0)
      std::cerr << "model: " << (fs::path(f->out) / "model.safetensors").string()
                << "  report: " << (fs::path(f->out) / "report.svg").string() << "\n";
    return 0;
  };
}

}  // namespace rechub::cli
