#include "rechub/mtl/trainer/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "rechub/core/error.h"
#include "rechub/nn/safetensors.h"

namespace rechub::trainer {

namespace {
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
double from_num(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : NAN; }
}  // namespace

nlohmann::json EpochRecord::to_json(const std::vector<std::string>& tasks) const {
  nlohmann::json loss = nlohmann::json::object(), w = nlohmann::json::object();
  for (size_t i = 0; i < tasks.size(); ++i) {
    loss[tasks[i]] = num(i < train_loss.size() ? train_loss[i] : NAN);
    w[tasks[i]] = num(i < weights.size() ? weights[i] : NAN);
  }
  nlohmann::json j = {
      {"epoch", epoch}, {"train_loss", loss}, {"task_weights", w}, {"seconds", seconds}, {"rows_per_s", rows_per_s}};
  if (has_val) j["val"] = val.to_json();
  if (!gates.is_null()) j["gates"] = gates;
  if (!train_labelled.empty()) {
    nlohmann::json n = nlohmann::json::object();
    for (size_t i = 0; i < tasks.size() && i < train_labelled.size(); ++i) n[tasks[i]] = train_labelled[i];
    j["train_labelled_rows"] = n;
  }
  return j;
}

EpochRecord EpochRecord::from_json(const nlohmann::json& j, const std::vector<std::string>& tasks,
                                   const std::vector<data::TaskType>& types) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int64_t>();
  for (const auto& t : tasks) {
    r.train_loss.push_back(from_num(j.at("train_loss").at(t)));
    r.weights.push_back(from_num(j.at("task_weights").at(t)));
  }
  r.seconds = j.value("seconds", 0.0);
  r.rows_per_s = j.value("rows_per_s", 0.0);
  if (j.contains("gates")) r.gates = j.at("gates");
  if (j.contains("train_labelled_rows"))
    for (const auto& t : tasks) r.train_labelled.push_back(j.at("train_labelled_rows").value(t, int64_t{0}));
  if (j.contains("val")) {
    r.has_val = true;
    const auto& v = j.at("val");
    r.val.rows = v.value("rows", int64_t{0});
    for (const auto& [name, m] : v.at("tasks").items()) {
      metrics::TaskMetrics tm{.task = name};
      auto it = std::find(tasks.begin(), tasks.end(), name);
      if (it != tasks.end()) tm.type = types[static_cast<size_t>(it - tasks.begin())];
      tm.rows = m.value("rows", int64_t{0});
      if (m.contains("auc")) tm.auc = from_num(m["auc"]);
      if (m.contains("logloss")) tm.logloss = from_num(m["logloss"]);
      if (m.contains("gauc")) tm.gauc = from_num(m["gauc"]);
      if (m.contains("mse")) tm.mse = from_num(m["mse"]);
      if (m.contains("mae")) tm.mae = from_num(m["mae"]);
      r.val.tasks.push_back(tm);
    }
  }
  return r;
}

void write_file_atomic(const std::string& path, const std::string& content) {
  nn::write_file_atomic(path, content);  // a unique temporary file, fsync, rename; removed on failure
}

std::string metrics_jsonl(const std::vector<EpochRecord>& history, const std::vector<std::string>& tasks) {
  std::string s;
  for (const auto& r : history) s += r.to_json(tasks).dump() + "\n";
  return s;
}

// ---- report.svg ---------------------------------------------------------------------------------

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string fmt(double v) {
  std::ostringstream os;
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e4))
    os << std::setprecision(2) << std::scientific << v;
  else
    os << std::setprecision(a < 1 ? 3 : 4) << v;
  return os.str();
}

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> pts;  // (epoch, value), finite values only
};

// One panel: axes, 5 ticks on y, epochs on x, a polyline with markers per series, a legend.
void panel(std::ostringstream& os, double x0, double y0, double w, double h, const std::string& title,
           const std::vector<Series>& series, int64_t n_epochs) {
  os << "<g>\n<text x='" << x0 + w / 2 << "' y='" << y0 - 8
     << "' text-anchor='middle' font-size='14' font-weight='bold'>" << esc(title) << "</text>\n";
  os << "<rect x='" << x0 << "' y='" << y0 << "' width='" << w << "' height='" << h
     << "' fill='white' stroke='#444'/>\n";
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series)
    for (auto [e, v] : s.pts) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) {
    os << "<text x='" << x0 + w / 2 << "' y='" << y0 + h / 2
       << "' text-anchor='middle' fill='#888'>no data</text>\n</g>\n";
    return;
  }
  if (hi - lo < 1e-12) lo -= 0.5 * std::max(std::abs(lo), 1e-3), hi += 0.5 * std::max(std::abs(hi), 1e-3);
  const double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  const double ex = std::max<double>(1.0, static_cast<double>(n_epochs - 1));
  auto X = [&](double e) { return x0 + 10 + (w - 20) * (n_epochs <= 1 ? 0.5 : (e - 1) / ex); };
  auto Y = [&](double v) { return y0 + h - h * (v - lo) / (hi - lo); };
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0, y = Y(v);
    os << "<line x1='" << x0 << "' x2='" << x0 + w << "' y1='" << y << "' y2='" << y << "' stroke='#ddd'/>"
       << "<text x='" << x0 - 4 << "' y='" << y + 4 << "' text-anchor='end' font-size='10'>" << fmt(v) << "</text>\n";
  }
  const int64_t step = std::max<int64_t>(1, (n_epochs + 9) / 10);
  for (int64_t e = 1; e <= n_epochs; e += step)
    os << "<text x='" << X(static_cast<double>(e)) << "' y='" << y0 + h + 14 << "' text-anchor='middle' font-size='10'>"
       << e << "</text>\n";
  os << "<text x='" << x0 + w / 2 << "' y='" << y0 + h + 28 << "' text-anchor='middle' font-size='11'>epoch</text>\n";
  for (size_t s = 0; s < series.size(); ++s) {
    const char* c = kColors[s % 8];
    std::ostringstream pts;
    for (auto [e, v] : series[s].pts) pts << X(e) << "," << Y(v) << " ";
    if (series[s].pts.size() > 1)
      os << "<polyline fill='none' stroke='" << c << "' stroke-width='2' points='" << pts.str() << "'/>\n";
    for (auto [e, v] : series[s].pts)
      os << "<circle cx='" << X(e) << "' cy='" << Y(v) << "' r='3' fill='" << c << "'><title>" << esc(series[s].name)
         << " epoch " << e << ": " << fmt(v) << "</title></circle>\n";
    os << "<rect x='" << x0 + 8 << "' y='" << y0 + 8 + 16 * static_cast<double>(s) << "' width='10' height='10' fill='"
       << c << "'/><text x='" << x0 + 22 << "' y='" << y0 + 17 + 16 * static_cast<double>(s) << "' font-size='11'>"
       << esc(series[s].name) << "</text>\n";
  }
  os << "</g>\n";
}

}  // namespace

std::string report_svg(const std::vector<EpochRecord>& history, const std::vector<std::string>& tasks,
                       const std::vector<data::TaskType>& types, const std::string& title) {
  std::vector<Series> loss, val, weights;
  bool any_regression = false, any_binary = false;
  for (size_t t = 0; t < tasks.size(); ++t) {
    Series l{tasks[t], {}}, v{tasks[t], {}}, w{tasks[t], {}};
    const bool reg = t < types.size() && types[t] == data::TaskType::regression;
    (reg ? any_regression : any_binary) = true;
    for (const auto& r : history) {
      const double e = static_cast<double>(r.epoch);
      if (t < r.train_loss.size() && std::isfinite(r.train_loss[t])) l.pts.push_back({e, r.train_loss[t]});
      if (t < r.weights.size() && std::isfinite(r.weights[t])) w.pts.push_back({e, r.weights[t]});
      if (r.has_val) {
        for (const auto& m : r.val.tasks)
          if (m.task == tasks[t]) {
            const double x = reg ? m.mse : m.auc;
            if (std::isfinite(x)) v.pts.push_back({e, x});
          }
      }
    }
    loss.push_back(l), val.push_back(v), weights.push_back(w);
  }
  int64_t n_epochs = 1;
  for (const auto& r : history) n_epochs = std::max(n_epochs, r.epoch);
  const std::string val_title = any_regression && any_binary ? "validation AUC (binary) / MSE (regression)"
                                : any_regression             ? "validation MSE"
                                                             : "validation AUC";
  // Gate diagnostics: per gate, each expert's mean gate weight over the epochs (at most 9 gates).
  std::vector<std::pair<std::string, std::vector<Series>>> gate_panels;
  for (const auto& r : history) {
    if (!r.gates.is_object()) continue;
    for (const auto& item : r.gates.items()) {
      // Named copies, not structured bindings: clang 14 (the fuzz build) cannot capture a binding.
      const std::string gate = item.key();
      const auto& s = item.value();
      auto it = std::find_if(gate_panels.begin(), gate_panels.end(), [&](const auto& p) { return p.first == gate; });
      if (it == gate_panels.end()) {
        if (gate_panels.size() >= 9) continue;
        gate_panels.push_back({gate, {}});
        it = gate_panels.end() - 1;
      }
      const auto names = s.value("experts", std::vector<std::string>{});
      const auto w = s.value("mean_weight", std::vector<double>{});
      if (it->second.size() < w.size()) it->second.resize(w.size());
      for (size_t e = 0; e < w.size(); ++e) {
        if (it->second[e].name.empty())
          it->second[e].name = e < names.size() ? names[e] : "expert " + std::to_string(e);
        if (std::isfinite(w[e])) it->second[e].pts.push_back({static_cast<double>(r.epoch + 1), w[e]});
      }
    }
  }
  const double W = 1200, H = 420 + 380 * static_cast<double>((gate_panels.size() + 2) / 3);
  std::ostringstream os;
  os << std::setprecision(6);
  os << "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='"
     << H << "' viewBox='0 0 " << W << " " << H << "' font-family='sans-serif'>\n";
  os << "<rect width='100%' height='100%' fill='#fafafa'/>\n";
  os << "<text x='" << W / 2 << "' y='24' text-anchor='middle' font-size='16'>" << esc(title) << "</text>\n";
  panel(os, 70, 70, 300, 290, "training loss", loss, n_epochs);
  panel(os, 460, 70, 300, 290, val_title, val, n_epochs);
  panel(os, 850, 70, 300, 290, "task weights", weights, n_epochs);
  for (size_t g = 0; g < gate_panels.size(); ++g)
    panel(os, 70 + 390 * static_cast<double>(g % 3), 450 + 380 * static_cast<double>(g / 3), 300, 290,
          "mean gate weight: " + gate_panels[g].first, gate_panels[g].second, n_epochs);
  os << "</svg>\n";
  return os.str();
}

// ---- the progress line ----------------------------------------------------------------------------

ProgressLine::ProgressLine(bool enabled, std::vector<std::string> tasks)
    : enabled_(enabled), tty_(enabled && ::isatty(2)), tasks_(std::move(tasks)) {}

void ProgressLine::start_epoch(int64_t epoch, int64_t n_epochs, int64_t rows) {
  epoch_ = epoch, n_epochs_ = n_epochs, rows_ = rows;
  start_ = last_print_ = std::chrono::steady_clock::now();
}

std::string ProgressLine::line(int64_t done, const std::vector<double>& loss, const std::vector<double>& w) const {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  const double eta = rate > 0 ? static_cast<double>(rows_ - done) / rate : 0;
  std::ostringstream os;
  os << "epoch " << epoch_ + 1 << "/" << n_epochs_ << " " << std::setw(3) << (rows_ > 0 ? 100 * done / rows_ : 100)
     << "% " << std::fixed << std::setprecision(0) << rate << " rows/s ETA " << static_cast<int64_t>(eta) / 60 << ":"
     << std::setw(2) << std::setfill('0') << static_cast<int64_t>(eta) % 60 << std::setfill(' ') << "  loss";
  os << std::setprecision(4);
  for (size_t t = 0; t < tasks_.size() && t < loss.size(); ++t) os << " " << tasks_[t] << " " << loss[t];
  os << "  w" << std::setprecision(3);
  for (double x : w) os << " " << x;
  return os.str();
}

void ProgressLine::update(int64_t done, const std::vector<double>& loss, const std::vector<double>& w) {
  if (!tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_print_ < std::chrono::milliseconds(200) && done < rows_) return;
  last_print_ = now;
  std::cerr << "\r" << line(done, loss, w) << "\033[K" << std::flush;
}

void ProgressLine::end_epoch(const EpochRecord& rec) {
  if (!enabled_) return;
  std::ostringstream os;
  os << "epoch " << rec.epoch << "/" << n_epochs_ << " " << std::fixed << std::setprecision(1) << rec.seconds << "s "
     << std::setprecision(0) << rec.rows_per_s << " rows/s  loss" << std::setprecision(4);
  for (size_t t = 0; t < tasks_.size() && t < rec.train_loss.size(); ++t)
    os << " " << tasks_[t] << " " << rec.train_loss[t];
  os << "  w" << std::setprecision(3);
  for (double x : rec.weights) os << " " << x;
  if (rec.has_val) {
    os << "  val" << std::setprecision(4);
    for (const auto& m : rec.val.tasks) {
      if (m.type == data::TaskType::regression)
        os << " " << m.task << " mse " << m.mse;
      else
        os << " " << m.task << " auc " << m.auc;
    }
  }
  if (tty_) std::cerr << "\r\033[K";
  std::cerr << os.str() << "\n" << std::flush;
}

}  // namespace rechub::trainer
