#include "rechub/mtl/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "rechub/core/error.h"

namespace rechub::metrics {

namespace {
void check_sizes(const char* what, size_t a, size_t b) {
  RECHUB_CHECK(a == b, what << ": " << a << " labels but " << b << " predictions");
  RECHUB_CHECK(a > 0, what << ": no rows");
}

// AUC over the rows idx[0..n) (any order).
double auc_of(const double* labels, const double* scores, std::vector<int64_t>& idx) {
  for (int64_t i : idx) RECHUB_CHECK(std::isfinite(scores[i]), "roc_auc: prediction " << i << " is not finite");
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  // For each tied group: every positive in it beats the negatives ranked below the group and ties
  // (half a win) with the negatives inside it. Counts are integers, so the sum is exact.
  // Twice the number of (positive, negative) wins, in exact integer arithmetic: the AUC is then
  // one correctly rounded division, whatever the row count (a floating-point sum of half-wins
  // loses exactness past 2^53 pairs).
  __int128 wins2 = 0;
  int64_t neg_below = 0, pos = 0, neg = 0;
  const size_t n = idx.size();
  for (size_t i = 0; i < n;) {
    size_t j = i;
    int64_t gp = 0, gn = 0;
    while (j < n && scores[idx[j]] == scores[idx[i]]) {
      (labels[idx[j]] > 0.5 ? gp : gn)++;
      ++j;
    }
    wins2 += static_cast<__int128>(gp) * (2 * neg_below + gn);
    neg_below += gn;
    pos += gp;
    neg += gn;
    i = j;
  }
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  // One rounding: the exact rational wins2 / (2 P N) as a double (quotient, then the remainder).
  const __int128 den = static_cast<__int128>(2) * pos * neg;
  const __int128 q = wins2 / den, r = wins2 % den;
  return static_cast<double>(q) + static_cast<double>(r) / static_cast<double>(den);
}
}  // namespace

double roc_auc(const std::vector<double>& labels, const std::vector<double>& scores) {
  check_sizes("roc_auc", labels.size(), scores.size());
  std::vector<int64_t> idx(labels.size());
  std::iota(idx.begin(), idx.end(), 0);
  return auc_of(labels.data(), scores.data(), idx);
}

double log_loss(const std::vector<double>& labels, const std::vector<double>& probs, double eps) {
  check_sizes("log_loss", labels.size(), probs.size());
  RECHUB_CHECK(eps > 0 && eps < 0.5, "log_loss: eps must be in (0, 0.5), got " << eps);
  double sum = 0, comp = 0;  // Kahan: long columns of small terms
  for (size_t i = 0; i < labels.size(); ++i) {
    RECHUB_CHECK(!std::isnan(probs[i]), "log_loss: prediction " << i << " is NaN");
    const double p = std::clamp(probs[i], eps, 1 - eps);
    const double q = 1 - p, s = q + p;  // sklearn renormalises the two columns
    const double term = -std::log((labels[i] > 0.5 ? p : q) / s);
    const double y = term - comp, t = sum + y;
    comp = (t - sum) - y;
    sum = t;
  }
  return sum / static_cast<double>(labels.size());
}

double gauc(const std::vector<double>& labels, const std::vector<double>& scores, const std::vector<int64_t>& groups) {
  check_sizes("gauc", labels.size(), scores.size());
  RECHUB_CHECK(groups.size() == labels.size(),
               "gauc: " << groups.size() << " group ids for " << labels.size() << " rows");
  std::unordered_map<int64_t, std::vector<int64_t>> by_group;
  for (size_t i = 0; i < groups.size(); ++i) by_group[groups[i]].push_back(static_cast<int64_t>(i));
  // Deterministic summation order: by group id.
  std::vector<int64_t> keys;
  keys.reserve(by_group.size());
  for (auto& [k, v] : by_group) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  double num = 0, den = 0;
  for (int64_t k : keys) {
    auto& rows = by_group[k];
    const double a = auc_of(labels.data(), scores.data(), rows);
    if (std::isnan(a)) continue;
    num += a * static_cast<double>(rows.size());
    den += static_cast<double>(rows.size());
  }
  return den > 0 ? num / den : std::numeric_limits<double>::quiet_NaN();
}

double mean_squared_error(const std::vector<double>& targets, const std::vector<double>& preds) {
  check_sizes("mean_squared_error", targets.size(), preds.size());
  double s = 0;
  for (size_t i = 0; i < targets.size(); ++i) s += (targets[i] - preds[i]) * (targets[i] - preds[i]);
  return s / static_cast<double>(targets.size());
}

double mean_absolute_error(const std::vector<double>& targets, const std::vector<double>& preds) {
  check_sizes("mean_absolute_error", targets.size(), preds.size());
  double s = 0;
  for (size_t i = 0; i < targets.size(); ++i) s += std::abs(targets[i] - preds[i]);
  return s / static_cast<double>(targets.size());
}

}  // namespace rechub::metrics
