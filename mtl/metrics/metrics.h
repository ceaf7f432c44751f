#pragma once
// Scalar metrics of one task's predictions: ROC AUC, LogLoss, group AUC, MSE and MAE.
//
//   double auc = metrics::roc_auc(labels, probs);   // == sklearn.metrics.roc_auc_score
//   double ll  = metrics::log_loss(labels, probs);  // == sklearn.metrics.log_loss (float64 input)
//
// Conventions (tested against scikit-learn 1.2):
// - AUC is exact with ties: the Mann-Whitney statistic with average ranks, computed from integer
//   counts per tied group, which is what roc_auc_score's trapezoidal ROC area equals.
// - A task whose labels hold a single class has no AUC: roc_auc returns NaN (sklearn raises), and
//   evaluate_multi_task reports it as NaN plus a warning naming the task. GAUC skips such groups.
// - LogLoss clips probabilities to [eps, 1 - eps] with eps = DBL_EPSILON (sklearn's eps="auto" on
//   a float64 array), then renormalises p and 1 - p as sklearn does. A single-class task still
//   gets a LogLoss (sklearn needs labels=[0, 1] for that case and then gives the same number).
#include <cfloat>
#include <cstdint>
#include <string>
#include <vector>

namespace rechub::metrics {

// Labels must be 0 or 1 (anything > 0.5 counts as positive); scores any finite numbers.
double roc_auc(const std::vector<double>& labels, const std::vector<double>& scores);
double log_loss(const std::vector<double>& labels, const std::vector<double>& probs, double eps = DBL_EPSILON);
// Group AUC: the AUC of each group (e.g. per user) weighted by the group's row count, over the
// groups that hold both classes. NaN when no group does.
double gauc(const std::vector<double>& labels, const std::vector<double>& scores, const std::vector<int64_t>& groups);
double mean_squared_error(const std::vector<double>& targets, const std::vector<double>& preds);
double mean_absolute_error(const std::vector<double>& targets, const std::vector<double>& preds);

}  // namespace rechub::metrics
