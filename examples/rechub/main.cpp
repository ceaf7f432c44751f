// rechub: train, evaluate and serve multi-task recommendation models from the command line.
//
//   rechub synth --kind ali-ccp --rows 100000 --out data/
//   rechub train --train data/ali_ccp_train.csv --val data/ali_ccp_val.csv --test data/ali_ccp_test.csv
//                --tasks click,purchase --model mmoe --epochs 3 --out runs/mmoe
//   rechub eval --model runs/mmoe/model.safetensors --data data/ali_ccp_test.csv --json
//   rechub predict --model runs/mmoe/model.safetensors --data data/ali_ccp_test.csv --out preds.csv
//   rechub export --model runs/mmoe/model.safetensors --onnx runs/mmoe/model.onnx
#include <omp.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "examples/rechub/cli.h"
#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/metrics/gates.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/report.h"

namespace rechub::cli {

namespace fs = std::filesystem;

namespace {
CLI::Validator number_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& s) -> std::string {
        double v = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        const bool ok =
            r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(v) && (allow_zero ? v >= 0 : v > 0);
        if (ok) return {};
        return std::string(allow_zero ? "must be a non-negative number" : "must be a positive number") + ", got '" + s +
               "'";
      },
      allow_zero ? "NUMBER>=0" : "NUMBER>0");
}
}  // namespace

CLI::Validator positive() { return number_check(false); }
CLI::Validator non_negative() { return number_check(true); }

std::vector<std::string> parse_name_list(const std::string& flag, const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    RECHUB_CHECK(!item.empty(), flag << " '" << s << "': empty item in the comma-separated list");
    out.push_back(item);
  }
  RECHUB_CHECK(!out.empty(), flag << ": expected a comma-separated list, got '" << s << "'");
  return out;
}

std::vector<double> parse_double_list(const std::string& flag, const std::string& s) {
  std::vector<double> out;
  for (const auto& item : parse_name_list(flag, s)) {
    double v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    RECHUB_CHECK(r.ec == std::errc() && r.ptr == item.data() + item.size() && std::isfinite(v),
                 flag << " '" << s << "': '" << item << "' is not a number");
    out.push_back(v);
  }
  return out;
}

std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& s) {
  std::vector<int64_t> out;
  for (const auto& item : parse_name_list(flag, s)) {
    int64_t v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    RECHUB_CHECK(r.ec == std::errc() && r.ptr == item.data() + item.size() && v > 0,
                 flag << " '" << s << "': '" << item << "' is not a positive integer");
    out.push_back(v);
  }
  return out;
}

// ---- eval ----------------------------------------------------------------------------------------

Runner add_eval(CLI::App& app) {
  struct Opts {
    std::string model, data;
    bool json = false;
    bool gates = false;
    int64_t batch_size = 4096;
    int threads = 0;
    std::string device = "cpu";
    std::string gauc_by;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("eval", "Evaluate a trained model on a labelled CSV file: per-task AUC and LogLoss");
  c->add_option("--model", o->model, "Checkpoint written by `rechub train` (model.safetensors)")->required();
  c->add_option("--data", o->data, "CSV file with the training columns and the label columns")->required();
  c->add_flag("--json", o->json, "Print one JSON object {\"tasks\": {...}, \"rows\": n}");
  c->add_flag("--gates", o->gates,
              "Also report the gates of MMoE/OMoE/PLE on this data: per gate each expert's mean weight, the gate "
              "entropy and the share of rows each expert tops (JSON: \"gates\", \"gate_warnings\"), and warn "
              "when experts collapse");
  c->add_option("--batch-size", o->batch_size, "Rows per forward pass")->check(positive());
  c->add_option("--threads", o->threads, "OpenMP threads (0: all; at most 4 per core)")->check(non_negative());
  c->add_option("--device", o->device, "Where the model runs: cpu, cuda or cuda:N (default cpu)");
  c->add_option("--gauc-by", o->gauc_by,
                "Also report GAUC for every binary task, grouping the rows by this column's values (e.g. a user id): "
                "the mean of the per-group AUCs weighted by group size, over groups with both classes "
                "[API: EvalOptions::groups]");
  return [o]() {
    apply_threads_flag(o->threads);
    const Device device = parse_device_flag(o->device);
    trainer::Predictor p(o->model, device);
    const auto& prep = p.preprocessor();
    // The group column is read as its raw values (every distinct value its own group, also those
    // the vocabulary maps to the out-of-vocabulary id); a column that is not a feature is read too.
    data::Schema read_schema = prep.schema();
    if (!o->gauc_by.empty()) {
      bool known = false;
      for (const auto& f : read_schema.sparse) known = known || f.name == o->gauc_by;
      for (const auto& f : read_schema.dense) known = known || f.name == o->gauc_by;
      for (const auto& l : read_schema.labels) {
        RECHUB_CHECK(l.column != o->gauc_by, "--gauc-by " << o->gauc_by << ": that is the label column of task '"
                                                          << l.task << "'; name a grouping column such as a user id");
      }
      if (!known) read_schema.sparse.push_back({.name = o->gauc_by});
    }
    const data::ColumnTable table = data::read_csv(o->data, read_schema, prep.csv_options());
    const data::Dataset ds = prep.transform(table);
    metrics::EvalOptions eo{.batch_size = o->batch_size};
    if (!o->gauc_by.empty()) {
      const int col = table.require(o->gauc_by);
      eo.groups.resize(static_cast<size_t>(table.rows()));
      for (int64_t r = 0; r < table.rows(); ++r) eo.groups[static_cast<size_t>(r)] = table.code(r, col);
    }
    auto model = p.shared_model();
    const auto r = metrics::evaluate_multi_task(*model, ds, eo);
    metrics::GateReport gates;
    if (o->gates) {
      gates = metrics::gate_statistics(*model, ds, o->batch_size);
      RECHUB_CHECK(!gates.gates.empty(),
                   "--gates: a " << model->kind() << " model has no gates (MMoE, OMoE and PLE do)");
      for (const auto& w : gates.warnings) std::cerr << "warning: " << w << "\n";
    }
    if (o->json) {
      nlohmann::json j = r.to_json();
      if (o->gates) {
        const nlohmann::json g = gates.to_json();
        j["gates"] = g.at("gates");
        j["gate_warnings"] = g.at("warnings");
      }
      std::cout << j.dump() << "\n";
    } else {
      std::fputs(r.table(6).c_str(), stdout);
      for (const auto& g : gates.gates) {
        std::cout << "gate " << g.gate << " (" << g.rows << " rows, entropy " << g.entropy << "):";
        for (size_t e = 0; e < g.experts.size(); ++e)
          std::cout << "  " << g.experts[e] << " " << g.mean_weight[e] << " (top " << g.top_share[e] << ")";
        std::cout << "\n";
      }
    }
    return 0;
  };
}

// ---- predict -------------------------------------------------------------------------------------

Runner add_predict(CLI::App& app) {
  struct Opts {
    std::string model, data, out;
    int64_t batch_size = 4096;
    int threads = 0;
    std::string device = "cpu";
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("predict", "Predict every task for the rows of a CSV file (labels not needed)");
  c->add_option("--model", o->model, "Checkpoint written by `rechub train` (model.safetensors)")->required();
  c->add_option("--data", o->data, "CSV file with the feature columns")->required();
  c->add_option("--out", o->out, "Output CSV: one column per task, rows in input order (written atomically)")
      ->required();
  c->add_option("--batch-size", o->batch_size, "Rows per forward pass")->check(positive());
  c->add_option("--threads", o->threads, "OpenMP threads (0: all; at most 4 per core)")->check(non_negative());
  c->add_option("--device", o->device, "Where the model runs: cpu, cuda or cuda:N (default cpu)");
  return [o]() {
    apply_threads_flag(o->threads);
    const Device device = parse_device_flag(o->device);
    refuse_same_file("--data", o->data, "--out", o->out);
    refuse_same_file("--model", o->model, "--out", o->out);
    trainer::Predictor p(o->model, device);
    const data::RawRows raw = data::read_raw_rows(o->data, p.preprocessor().csv_options());
    // Batched here rather than by Predictor::predict(rows) so that an error names the file and
    // the row's line, not its index within a batch.
    std::vector<std::vector<double>> preds;
    preds.reserve(raw.rows.size());
    const auto batch = static_cast<size_t>(o->batch_size);
    for (size_t b = 0; b < raw.rows.size(); b += batch) {
      const size_t e = std::min(raw.rows.size(), b + batch);
      const std::vector<std::vector<std::string>> chunk(raw.rows.begin() + static_cast<std::ptrdiff_t>(b),
                                                        raw.rows.begin() + static_cast<std::ptrdiff_t>(e));
      for (auto& x : p.predict(p.preprocessor().encode_rows(chunk, raw.header, o->data, raw.lines.data() + b)))
        preds.push_back(std::move(x));
    }
    std::ostringstream os;
    os.precision(9);
    const auto& tasks = p.task_names();
    for (size_t t = 0; t < tasks.size(); ++t) os << (t ? "," : "") << tasks[t];
    os << "\n";
    for (const auto& row : preds) {
      for (size_t t = 0; t < row.size(); ++t) os << (t ? "," : "") << row[t];
      os << "\n";
    }
    const fs::path out(o->out);
    RECHUB_CHECK(out.parent_path().empty() || fs::is_directory(out.parent_path()),
                 "--out '" << o->out << "': the directory '" << out.parent_path().string() << "' does not exist");
    trainer::write_file_atomic(o->out, os.str());
    std::cerr << "wrote " << preds.size() << " rows x " << tasks.size() << " tasks to " << o->out << "\n";
    return 0;
  };
}

// ---- synth ---------------------------------------------------------------------------------------

namespace {
// Blocks SIGINT/SIGTERM in every thread (OpenMP's included, which start later and inherit the mask)
// and waits for them on one thread: on a signal it removes `dir` and ends the process with the
// shell's status for that signal. The destructor stops the thread and restores the mask.
class SignalCleanup {
 public:
  explicit SignalCleanup(fs::path dir) : dir_(std::move(dir)) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR2);  // the destructor's "stop"
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    waiter_ = std::thread([this] {
      int sig = 0;
      while (sigwait(&set_, &sig) == 0) {
        if (sig == SIGUSR2 && done_.load()) return;
        if (sig == SIGINT || sig == SIGTERM) {
          std::error_code ec;
          fs::remove_all(dir_, ec);
          fs::remove_all(dir_, ec);  // a file the writer opened meanwhile
          const std::string msg = "rechub synth: interrupted; removed " + dir_.string() + "\n";
          if (::write(2, msg.data(), msg.size()) < 0) {
          }
          std::_Exit(128 + sig);
        }
      }
    });
  }
  ~SignalCleanup() {
    done_.store(true);
    pthread_kill(waiter_.native_handle(), SIGUSR2);
    waiter_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalCleanup(const SignalCleanup&) = delete;
  SignalCleanup& operator=(const SignalCleanup&) = delete;

 private:
  fs::path dir_;
  sigset_t set_{}, old_{};
  std::atomic<bool> done_{false};
  std::thread waiter_;
};
}  // namespace

Runner add_synth(CLI::App& app) {
  struct Opts {
    std::string kind = "ali-ccp", out;
    int64_t rows = 100000;
    double correlation = 0.5;
    double val_fraction = 0.1, test_fraction = 0.1;
    uint64_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("synth", "Write a synthetic dataset with a planted signal as train/val/test CSV files");
  c->add_option("--kind", o->kind, "ali-ccp (click/purchase, sparse ids) or mmoe (two regression tasks)")
      ->check(CLI::IsMember({"ali-ccp", "mmoe"}));
  c->add_option("--rows", o->rows, "Rows in all (split into train/val/test)")->check(positive());
  c->add_option("--correlation", o->correlation, "mmoe: the task correlation p in [-1, 1]")
      ->check(CLI::Range(-1.0, 1.0));
  c->add_option("--val-fraction", o->val_fraction, "Fraction of rows for validation")->check(CLI::Range(0.0, 0.5));
  c->add_option("--test-fraction", o->test_fraction, "Fraction of rows for test")->check(CLI::Range(0.0, 0.5));
  c->add_option("--seed", o->seed, "Generator seed");
  c->add_option("--out", o->out, "Output directory (created)")->required();
  return [o]() {
    const int64_t n_val = static_cast<int64_t>(std::llround(static_cast<double>(o->rows) * o->val_fraction));
    const int64_t n_test = static_cast<int64_t>(std::llround(static_cast<double>(o->rows) * o->test_fraction));
    const int64_t n_train = o->rows - n_val - n_test;
    RECHUB_CHECK(n_train > 0, "--rows " << o->rows << " leaves no training rows");
    fs::create_directories(o->out);
    // Written into a temporary folder first, then moved into place: no half-written files.
    std::string tmp_name = ".synth-tmp-";
    tmp_name.append(std::to_string(::getpid()));
    const fs::path tmp = fs::path(o->out) / tmp_name;
    // SIGINT and SIGTERM are taken by a thread of their own, which removes the temporary folder
    // before the process ends (a signal handler could not walk a folder safely).
    SignalCleanup cleanup(tmp);
    fs::create_directories(tmp);
    std::vector<std::string> paths;
    try {
      const std::string stem = o->kind == "mmoe" ? "mmoe" : "ali_ccp";
      if (o->kind == "mmoe")
        paths = data::write_mmoe_synthetic((tmp / stem).string(), {.seed = o->seed, .correlation = o->correlation},
                                           n_train, n_val, n_test);
      else
        paths = data::write_ali_ccp_synthetic((tmp / stem).string(), {.seed = o->seed}, n_train, n_val, n_test);
    } catch (...) {
      fs::remove_all(tmp);
      throw;
    }
    for (const auto& p : paths) {
      const fs::path dst = fs::path(o->out) / fs::path(p).filename();
      fs::rename(p, dst);
      std::cout << dst.string() << "\n";
    }
    fs::remove_all(tmp);
    std::cerr << "wrote " << n_train << " / " << n_val << " / " << n_test << " train/val/test rows (" << o->kind
              << ") to " << o->out << "\n";
    return 0;
  };
}

}  // namespace rechub::cli

int main(int argc, char** argv) {
  CLI::App app{"rechub: multi-task recommendation models (SharedBottom, ESMM, MMoE, OMoE, PLE, AITM)", "rechub"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, rechub::cli::Runner>> cmds;
  auto add = [&](rechub::cli::Runner (*f)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    auto r = f(app);
    cmds.emplace_back(app.get_subcommands({})[before], std::move(r));
  };
  add(rechub::cli::add_train);
  add(rechub::cli::add_eval);
  add(rechub::cli::add_predict);
  add(rechub::cli::add_synth);
  add(rechub::cli::add_export);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, run] : cmds) {
    if (!sub->parsed()) continue;
    try {
      rechub::cli::cap_env_threads();
      const int rc = run();
      rechub::cli::leave_world();
      return rc;
    } catch (const std::exception& e) {
      rechub::cli::end_world_on_error("rechub " + sub->get_name() + ": error: " + e.what());
      std::cerr << "rechub " << sub->get_name() << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  return 1;
}
