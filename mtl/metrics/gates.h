#pragma once
// Gate and expert diagnostics of the mixture-of-experts models (MMoE, OMoE, PLE): whether the
// experts are used or have collapsed.
//
//   auto g = metrics::gate_statistics(*model, *data.val);
//   std::cout << g.to_json().dump();   // {"gates": {"ctr": {"mean_weight": [...], ...}}, "warnings": [...]}
//
// Per gate (MMoE: one per task; OMoE: "shared"; PLE: "<level>.<task>" and "<level>.shared"), over
// the rows of `data` in eval mode without autograd:
//   mean_weight[e]  the mean gate weight of expert e (sums to 1),
//   entropy         the mean over rows of −Σ_e w_e log w_e (nats; log E when uniform, 0 when one
//                   expert takes everything),
//   top_share[e]    the share of rows whose largest gate weight is expert e's (ties: the first).
// Warnings: an expert that carries more than 90 % of the weight in every task's gate it appears in
// (and appears in every task's gate: MMoE's experts, PLE's shared experts), and an expert under 1 %
// in every gate it appears in, each with what can be done. Models without gates give no gates.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/models/model.h"

namespace rechub::metrics {

struct GateStats {
  std::string gate{};                  // "ctr", "shared", "0.ctr", "1.shared", ...
  std::vector<std::string> experts{};  // what each column of the gate mixes, e.g. "expert 2", "0.shared 1"
  int64_t rows = 0;
  std::vector<double> mean_weight{}, top_share{};
  double entropy = 0;
  nlohmann::json to_json() const;
};

struct GateReport {
  std::vector<GateStats> gates{};
  std::vector<std::string> warnings{};
  nlohmann::json to_json() const;  // {"gates": {name: {...}}, "warnings": [...]}
  static GateReport from_json(const nlohmann::json& j);
};

// Restores the model's train/eval mode afterwards.
// max_rows >= 0: only the first max_rows rows.
GateReport gate_statistics(models::MultiTaskModel& model, const data::BatchSource& data, int64_t batch_size = 4096,
                           int64_t max_rows = -1);

}  // namespace rechub::metrics
