#include "rechub/mtl/metrics/evaluate.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/mtl/metrics/metrics.h"

namespace rechub::metrics {

namespace {
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

// Restores train/eval mode on scope exit.
struct ModeGuard {
  models::MultiTaskModel& m;
  bool was;
  explicit ModeGuard(models::MultiTaskModel& model) : m(model), was(model.is_training()) { m.eval(); }
  ~ModeGuard() { m.train(was); }
};

std::vector<double> column_of(const Tensor& t, int64_t col) {
  const int64_t n = t.size(0), w = t.size(1);
  const float* p = t.data<float>();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = p[i * w + col];
  return v;
}

TaskMetrics binary_metrics(const std::string& name, const std::vector<double>& y, const std::vector<double>& p,
                           const std::vector<int64_t>* groups, std::vector<std::string>& warnings) {
  TaskMetrics m{.task = name, .type = data::TaskType::binary, .rows = static_cast<int64_t>(y.size())};
  if (y.empty()) {
    warnings.push_back("task '" + name + "': no rows to evaluate; its metrics are NaN");
    return m;
  }
  m.auc = roc_auc(y, p);
  m.logloss = log_loss(y, p);
  if (std::isnan(m.auc))
    warnings.push_back("task '" + name + "': the labels hold a single class (" +
                       std::string(y[0] > 0.5 ? "all 1" : "all 0") + "), so its AUC is undefined (NaN)");
  if (groups) m.gauc = gauc(y, p, *groups);
  return m;
}
}  // namespace

nlohmann::json TaskMetrics::to_json() const {
  if (type == data::TaskType::regression) return {{"mse", num(mse)}, {"mae", num(mae)}, {"rows", rows}};
  nlohmann::json j = {{"auc", num(auc)}, {"logloss", num(logloss)}, {"rows", rows}};
  if (!std::isnan(gauc)) j["gauc"] = gauc;
  return j;
}

const TaskMetrics& EvalResult::at(const std::string& task) const {
  std::string known;
  for (const auto& t : tasks) {
    if (t.task == task) return t;
    known += (known.empty() ? "" : ", ") + t.task;
  }
  RECHUB_FAIL("no metrics for task '" << task << "' (tasks: " << known << ")");
}

std::string EvalResult::table(int decimals) const {
  bool with_gauc = false;
  for (const auto& t : tasks) with_gauc = with_gauc || !std::isnan(t.gauc);
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-12s %10s %10s %10s%s\n", "task", "AUC", "LogLoss", "rows",
                with_gauc ? "       GAUC" : "");
  out += line;
  for (const auto& t : tasks) {
    if (t.type == data::TaskType::regression) {
      std::snprintf(line, sizeof line, "%-12s %10s %10s %10lld  (MSE %.6f, MAE %.6f)\n", t.task.c_str(), "-", "-",
                    static_cast<long long>(t.rows), t.mse, t.mae);
    } else {
      char gauc_cell[32] = "";
      if (with_gauc) std::snprintf(gauc_cell, sizeof gauc_cell, " %10.*f", decimals, t.gauc);
      std::snprintf(line, sizeof line, "%-12s %10.*f %10.*f %10lld%s\n", t.task.c_str(), decimals, t.auc, decimals,
                    t.logloss, static_cast<long long>(t.rows), gauc_cell);
    }
    out += line;
  }
  return out;
}

nlohmann::json EvalResult::to_json() const {
  nlohmann::json t = nlohmann::json::object();
  for (const auto& m : tasks) t[m.task] = m.to_json();
  return {{"tasks", t}, {"rows", rows}};
}

std::vector<std::vector<double>> predict_rows(models::MultiTaskModel& model, const data::BatchSource& data,
                                              int64_t batch_size, std::vector<double>* cvr) {
  RECHUB_CHECK(batch_size > 0, "batch_size must be positive, got " << batch_size);
  ModeGuard mode(model);
  NoGradGuard ng;
  const int64_t n = data.rows(), T = model.num_tasks();
  std::vector<std::vector<double>> out(static_cast<size_t>(T));
  for (auto& v : out) v.reserve(static_cast<size_t>(n));
  if (cvr) cvr->clear();
  for (int64_t b = 0; b < n; b += batch_size) {
    const data::Batch batch = data.range_batch(b, std::min(n, b + batch_size));
    const models::ModelOutput o = model.forward(batch);
    const Tensor P = o.prediction_matrix().to(Device::cpu());  // one read per batch on a device model
    RECHUB_CHECK(P.dim() == 2 && P.size(1) == T,
                 "model returned predictions " << shape_str(P.shape()) << " for " << T << " tasks");
    for (int64_t t = 0; t < T; ++t) {
      const auto col = column_of(P, t);
      out[static_cast<size_t>(t)].insert(out[static_cast<size_t>(t)].end(), col.begin(), col.end());
    }
    if (cvr) {
      auto it = o.extras.find("cvr");
      if (it != o.extras.end()) {
        const Tensor c = it->second.to(Device::cpu());
        const float* p = c.data<float>();
        for (int64_t i = 0; i < c.numel(); ++i) cvr->push_back(p[i]);
      }
    }
  }
  return out;
}

EvalResult evaluate_multi_task(models::MultiTaskModel& model, const data::BatchSource& data, const EvalOptions& opt) {
  const int64_t T = model.num_tasks(), n = data.rows();
  RECHUB_CHECK(data.num_tasks() == T, "evaluate_multi_task: the data has "
                                          << data.num_tasks() << " label columns, the model " << T << " tasks");
  RECHUB_CHECK(n > 0, "evaluate_multi_task: the data has no rows");
  RECHUB_CHECK(opt.groups.empty() || static_cast<int64_t>(opt.groups.size()) == n,
               "evaluate_multi_task: " << opt.groups.size() << " group ids for " << n << " rows");
  std::vector<double> cvr;
  const bool esmm = model.kind() == "esmm";
  const auto preds = predict_rows(model, data, opt.batch_size, esmm ? &cvr : nullptr);
  // Labels, in row order.
  std::vector<std::vector<double>> labels(static_cast<size_t>(T));
  for (int64_t b = 0; b < n; b += opt.batch_size) {
    const data::Batch batch = data.range_batch(b, std::min(n, b + opt.batch_size));
    for (int64_t t = 0; t < T; ++t) {
      const auto col = column_of(batch.labels, t);
      labels[static_cast<size_t>(t)].insert(labels[static_cast<size_t>(t)].end(), col.begin(), col.end());
    }
  }
  EvalResult r;
  r.rows = n;
  const std::vector<int64_t>* groups = opt.groups.empty() ? nullptr : &opt.groups;
  for (int64_t t = 0; t < T; ++t) {
    const auto& name = model.task_names()[static_cast<size_t>(t)];
    const auto& y_all = labels[static_cast<size_t>(t)];
    const auto& p_all = preds[static_cast<size_t>(t)];
    // A missing label (NaN: the task's labels may be missing, see data::Label::missing_ok) leaves
    // its row out of that task's metrics; `rows` counts the rows scored.
    std::vector<double> y, p;
    std::vector<int64_t> g;
    const bool any_missing = std::any_of(y_all.begin(), y_all.end(), [](double v) { return std::isnan(v); });
    if (any_missing) {
      for (size_t i = 0; i < y_all.size(); ++i) {
        if (std::isnan(y_all[i])) continue;
        y.push_back(y_all[i]);
        p.push_back(p_all[i]);
        if (groups) g.push_back(opt.groups[i]);
      }
    }
    const auto& yy = any_missing ? y : y_all;
    const auto& pp = any_missing ? p : p_all;
    const std::vector<int64_t>* gg = groups && any_missing ? &g : groups;
    // Constant predictions (a collapsed tower): the AUC is 0.5 whatever the labels.
    if (pp.size() >= 2) {
      double mean = 0, var = 0;
      for (double v : pp) mean += v;
      mean /= static_cast<double>(pp.size());
      for (double v : pp) var += (v - mean) * (v - mean);
      const double sd = std::sqrt(var / static_cast<double>(pp.size()));
      if (sd < 1e-6) {
        std::ostringstream w;
        w << "task '" << name << "': its predictions are constant (" << mean << ", standard deviation " << sd
          << " over " << pp.size()
          << " rows), so its AUC is 0.5. Likely causes: the task's tower collapsed (a learning rate too high, "
             "dead ReLUs: lower --lr or add --clip-grad-norm), a one-class training label, a pos_weight that "
             "swamps the loss, or features that carry nothing for this task";
        r.warnings.push_back(w.str());
      }
    }
    if (model.task_types()[static_cast<size_t>(t)] == data::TaskType::regression) {
      TaskMetrics m{.task = name, .type = data::TaskType::regression, .rows = static_cast<int64_t>(yy.size())};
      if (yy.empty()) {
        r.warnings.push_back("task '" + name + "': no labelled rows to evaluate; its metrics are NaN");
      } else {
        m.mse = mean_squared_error(yy, pp), m.mae = mean_absolute_error(yy, pp);
      }
      r.tasks.push_back(m);
    } else {
      r.tasks.push_back(binary_metrics(name, yy, pp, gg, r.warnings));
    }
  }
  // ESMM's CVR on the clicked rows: click = task 0, purchase (CTCVR label) = task 1.
  if (esmm && T >= 2 && static_cast<int64_t>(cvr.size()) == n) {
    std::vector<double> y, p;
    std::vector<int64_t> g;
    for (int64_t i = 0; i < n; ++i) {
      if (labels[0][static_cast<size_t>(i)] > 0.5 && !std::isnan(labels[1][static_cast<size_t>(i)])) {
        y.push_back(labels[1][static_cast<size_t>(i)]);
        p.push_back(cvr[static_cast<size_t>(i)]);
        if (groups) g.push_back(opt.groups[static_cast<size_t>(i)]);
      }
    }
    r.tasks.push_back(binary_metrics("cvr", y, p, groups ? &g : nullptr, r.warnings));
  }
  if (!opt.quiet)
    for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";
  return r;
}

EvalResult evaluate_multi_task(models::MultiTaskModel& model, data::DataLoader& loader, const EvalOptions& options) {
  EvalOptions o = options;
  if (o.batch_size == EvalOptions{}.batch_size) o.batch_size = std::max<int64_t>(loader.options().batch_size, 1);
  return evaluate_multi_task(model, loader.source(), o);
}

}  // namespace rechub::metrics
