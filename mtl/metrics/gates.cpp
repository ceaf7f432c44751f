#include "rechub/mtl/metrics/gates.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"

namespace rechub::metrics {

namespace {

struct ModeGuard {
  models::MultiTaskModel& m;
  bool was;
  explicit ModeGuard(models::MultiTaskModel& model) : m(model), was(model.is_training()) { m.eval(); }
  ~ModeGuard() { m.train(was); }
};

// What each column of a gate mixes. MMoE/OMoE: the shared experts. PLE (level l): a task's gate
// mixes that task's specific experts then the shared ones; the shared gate every task's specific
// experts in task order, then the shared ones.
std::vector<std::string> expert_names(const models::MultiTaskModel& model, const std::string& gate, int64_t width) {
  std::vector<std::string> names;
  if (model.kind() != "ple") {
    for (int64_t e = 0; e < width; ++e) names.push_back("expert " + std::to_string(e));
    return names;
  }
  const nlohmann::json c = model.config_json();
  const int64_t ns = c.value("num_experts", int64_t{0});
  const auto dot = gate.find('.');
  const std::string level = gate.substr(0, dot), who = gate.substr(dot + 1);
  const auto& tasks = model.task_names();
  for (int64_t e = 0; e < width; ++e) {
    if (who != "shared" && e < ns) {
      names.push_back(level + "." + who + " " + std::to_string(e));
    } else if (who == "shared" && e < ns * static_cast<int64_t>(tasks.size())) {
      names.push_back(level + "." + tasks[static_cast<size_t>(e / ns)] + " " + std::to_string(e % ns));
    } else {
      const int64_t first_shared = who == "shared" ? ns * static_cast<int64_t>(tasks.size()) : ns;
      names.push_back(level + ".shared " + std::to_string(e - first_shared));
    }
  }
  return names;
}

std::string pct(double v) {
  std::ostringstream os;
  os.precision(3);
  os << 100 * v << " %";
  return os.str();
}

}  // namespace

nlohmann::json GateStats::to_json() const {
  return {{"experts", experts},
          {"rows", rows},
          {"mean_weight", mean_weight},
          {"entropy", entropy},
          {"top_share", top_share}};
}

nlohmann::json GateReport::to_json() const {
  nlohmann::json g = nlohmann::json::object();
  for (const auto& s : gates) g[s.gate] = s.to_json();
  return {{"gates", g}, {"warnings", warnings}};
}

GateReport GateReport::from_json(const nlohmann::json& j) {
  GateReport r;
  for (const auto& [name, s] : j.at("gates").items())
    r.gates.push_back({.gate = name,
                       .experts = s.at("experts").get<std::vector<std::string>>(),
                       .rows = s.at("rows").get<int64_t>(),
                       .mean_weight = s.at("mean_weight").get<std::vector<double>>(),
                       .top_share = s.at("top_share").get<std::vector<double>>(),
                       .entropy = s.at("entropy").get<double>()});
  r.warnings = j.value("warnings", std::vector<std::string>{});
  return r;
}

GateReport gate_statistics(models::MultiTaskModel& model, const data::BatchSource& data, int64_t batch_size,
                           int64_t max_rows) {
  RECHUB_CHECK(batch_size > 0, "gate_statistics: batch_size must be positive, got " << batch_size);
  ModeGuard mode(model);
  NoGradGuard ng;
  struct Acc {
    int64_t rows = 0;
    std::vector<double> sum, top;
    double entropy = 0;
  };
  std::map<std::string, Acc> acc;
  const int64_t n = max_rows >= 0 ? std::min(max_rows, data.rows()) : data.rows();
  for (int64_t b = 0; b < n; b += batch_size) {
    const models::ModelOutput o = model.forward(data.range_batch(b, std::min(n, b + batch_size)));
    for (const auto& [key, t] : o.extras) {
      if (key.rfind("gate.", 0) != 0) continue;
      const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
      const Tensor g = h.dtype() == DType::f32 ? h : h.to(DType::f32);
      RECHUB_CHECK(g.dim() == 2, "gate_statistics: gate '" << key << "' is " << shape_str(g.shape()));
      const int64_t B = g.size(0), E = g.size(1);
      Acc& a = acc[key.substr(5)];
      if (a.sum.empty()) a.sum.assign(static_cast<size_t>(E), 0.0), a.top.assign(static_cast<size_t>(E), 0.0);
      const float* p = g.data<float>();
      for (int64_t i = 0; i < B; ++i) {
        int64_t best = 0;
        for (int64_t e = 0; e < E; ++e) {
          const double w = p[i * E + e];
          a.sum[static_cast<size_t>(e)] += w;
          if (w > 0) a.entropy -= w * std::log(w);
          if (w > p[i * E + best]) best = e;
        }
        a.top[static_cast<size_t>(best)] += 1;
      }
      a.rows += B;
    }
  }
  GateReport r;
  for (auto& [name, a] : acc) {
    GateStats s{.gate = name, .experts = expert_names(model, name, static_cast<int64_t>(a.sum.size())), .rows = a.rows};
    const double rows = static_cast<double>(std::max<int64_t>(1, a.rows));
    for (double v : a.sum) s.mean_weight.push_back(v / rows);
    for (double v : a.top) s.top_share.push_back(v / rows);
    s.entropy = a.entropy / rows;
    r.gates.push_back(std::move(s));
  }
  if (r.gates.empty()) return r;
  // Collapse. The task gates of each level: every gate but PLE's "<l>.shared" (OMoE's one gate,
  // "shared", serves every task).
  const bool ple = model.kind() == "ple";
  std::map<std::string, std::vector<const GateStats*>> task_gates;  // level -> gates
  std::map<std::string, std::vector<double>> weight_of;             // expert -> its weight in each gate
  for (const auto& s : r.gates) {
    const std::string level = ple ? s.gate.substr(0, s.gate.find('.')) : "";
    if (!ple || s.gate.substr(s.gate.find('.') + 1) != "shared") task_gates[level].push_back(&s);
    for (size_t e = 0; e < s.experts.size(); ++e) weight_of[s.experts[e]].push_back(s.mean_weight[e]);
  }
  const std::string advice = "more dropout on the gates' inputs (--dropout), a lower learning rate, or fewer experts";
  for (const auto& [level, gates] : task_gates) {
    std::map<std::string, std::vector<double>> in_all;  // expert -> weight in each task gate of the level
    for (const GateStats* s : gates)
      for (size_t e = 0; e < s->experts.size(); ++e) in_all[s->experts[e]].push_back(s->mean_weight[e]);
    for (const auto& [expert, ws] : in_all) {
      if (ws.size() != gates.size()) continue;
      const double lo = *std::min_element(ws.begin(), ws.end());
      if (lo > 0.9)
        r.warnings.push_back("experts collapsed: " + expert + " carries more than 90 % of every task's gate weight" +
                             (ple ? " at level " + level : std::string()) + " (at least " + pct(lo) +
                             "): the tasks share one expert and the others do nothing. Try " + advice);
    }
  }
  for (const auto& [expert, ws] : weight_of) {
    const double hi = *std::max_element(ws.begin(), ws.end());
    if (hi < 0.01)
      r.warnings.push_back("unused expert: " + expert + " gets under 1 % of the gate weight in every gate (at most " +
                           pct(hi) + "): it costs compute and learns nothing. Try " + advice);
  }
  return r;
}

}  // namespace rechub::metrics
