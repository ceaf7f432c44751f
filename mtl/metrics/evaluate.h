#pragma once
// evaluate_multi_task: a model's per-task metrics over a dataset, walked in row order without
// autograd.
//
//   auto r = evaluate_multi_task(model, *data.test);   // or a DataLoader (its rows, in order)
//   for (const auto& t : r.tasks) std::cout << t.task << " auc " << t.auc << " logloss " << t.logloss;
//   std::cout << r.to_json().dump();   // {"tasks": {"ctr": {"auc": .., "logloss": ..}, ..}, "rows": n}
//
// Binary tasks get AUC and LogLoss (mtl/metrics/metrics.h for the conventions); regression tasks
// MSE and MAE. A binary task whose labels hold one class gets AUC NaN (null in JSON) and a warning
// in `warnings` (printed to stderr unless EvalOptions::quiet); so does a task whose predictions
// are constant (standard deviation below 1e-6: AUC 0.5). A NaN label (a task whose labels may be
// missing, data::Label::missing_ok) leaves its row out of that task's metrics; each task's `rows`
// counts the rows it was scored on. With EvalOptions::groups (one id per
// row, e.g. the user), binary tasks also get GAUC. ESMM additionally reports "cvr": the AUC and
// LogLoss of pCVR on the clicked rows (label: the CTCVR label of those rows).
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/models/model.h"

namespace rechub::metrics {

struct TaskMetrics {
  std::string task{};
  data::TaskType type = data::TaskType::binary;
  int64_t rows = 0;
  double auc = NAN, logloss = NAN, gauc = NAN;  // binary
  double mse = NAN, mae = NAN;                  // regression
  nlohmann::json to_json() const;
};

struct EvalResult {
  std::vector<TaskMetrics> tasks{};
  int64_t rows = 0;
  std::vector<std::string> warnings{};
  // Throws naming the known tasks when `task` is not one.
  const TaskMetrics& at(const std::string& task) const;
  nlohmann::json to_json() const;
  // The per-task table `rechub train` and `rechub eval` print: a header, then one line per task
  // with AUC, LogLoss and rows at `decimals` places (MSE and MAE for regression tasks).
  std::string table(int decimals = 4) const;
};

struct EvalOptions {
  int64_t batch_size = 4096;
  std::vector<int64_t> groups{};  // GAUC group per row (empty: no GAUC)
  bool quiet = false;             // do not print warnings
};

// Restores the model's train/eval mode afterwards. Labels must be present in the data.
EvalResult evaluate_multi_task(models::MultiTaskModel& model, const data::BatchSource& data,
                               const EvalOptions& options = {});
EvalResult evaluate_multi_task(models::MultiTaskModel& model, data::DataLoader& loader,
                               const EvalOptions& options = {});

// Every row's predictions, [task][row] in row order, plus ESMM's pCVR as an extra last column
// when `with_extras` (no autograd; restores the model's mode).
std::vector<std::vector<double>> predict_rows(models::MultiTaskModel& model, const data::BatchSource& data,
                                              int64_t batch_size = 4096, std::vector<double>* cvr = nullptr);

}  // namespace rechub::metrics
