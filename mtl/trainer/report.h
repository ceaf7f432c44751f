#pragma once
// What the trainer writes about a run: one record per epoch, kept as metrics.jsonl (one JSON object
// a line), a self-contained report.svg (per-task training loss, validation AUC — or MSE for
// regression tasks — and task weights by epoch), and a live progress line on stderr.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/mtl/metrics/evaluate.h"

namespace rechub::trainer {

struct EpochRecord {
  int64_t epoch = 0;                 // 1 for the first epoch, as in the log, metrics.jsonl and best_epoch()
  std::vector<double> train_loss{};  // per task, mean over the epoch's rows (unweighted)
  std::vector<double> weights{};     // task weights at the end of the epoch
  bool has_val = false;
  metrics::EvalResult val{};
  double seconds = 0;
  double rows_per_s = 0;
  // Per task, the training rows with a label this epoch (filled only when some task's labels may
  // be missing; its train_loss is the mean over these rows).
  std::vector<int64_t> train_labelled{};
  // Gate diagnostics of the epoch (metrics::GateReport::to_json()["gates"]; null for models
  // without gates): per gate the experts' mean weight, the entropy and the top-expert shares.
  nlohmann::json gates{};
  nlohmann::json to_json(const std::vector<std::string>& tasks) const;
  static EpochRecord from_json(const nlohmann::json& j, const std::vector<std::string>& tasks,
                               const std::vector<data::TaskType>& types);
};

// Writes `content` to `path` through a temporary file in the same directory, fsync and a rename
// (nn::write_file_atomic): a failure leaves `path` as it was and no temporary file behind.
void write_file_atomic(const std::string& path, const std::string& content);

std::string metrics_jsonl(const std::vector<EpochRecord>& history, const std::vector<std::string>& tasks);
// An SVG document with three panels; no scripts, no external references.
std::string report_svg(const std::vector<EpochRecord>& history, const std::vector<std::string>& tasks,
                       const std::vector<data::TaskType>& types, const std::string& title);

// The live line: "epoch 3/10  41% 12.3k rows/s ETA 0:07  loss ctr 0.1312 ctcvr 0.0291  w 1.00 1.00".
// On a terminal it is rewritten in place with '\r'; otherwise one line is printed per epoch.
class ProgressLine {
 public:
  ProgressLine(bool enabled, std::vector<std::string> tasks);
  void start_epoch(int64_t epoch, int64_t n_epochs, int64_t rows_in_epoch);
  void update(int64_t rows_done, const std::vector<double>& running_loss, const std::vector<double>& weights);
  // Final line of the epoch, with the validation metrics when there are any.
  void end_epoch(const EpochRecord& rec);

 private:
  std::string line(int64_t rows_done, const std::vector<double>& loss, const std::vector<double>& w) const;
  bool enabled_, tty_;
  std::vector<std::string> tasks_;
  int64_t epoch_ = 0, n_epochs_ = 0, rows_ = 0;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace rechub::trainer
