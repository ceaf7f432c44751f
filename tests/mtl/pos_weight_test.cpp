// The positive-class weight of BCE (--pos-weights) through the models and the trainer, against the
// weighted BCE written out in f64:
//   l = -mean(w y log(p) + (1 - y) log(1 - p)),  dl/dx = ((1 - y) p - w y (1 - p)) / B  (x the logit)
// Logit models (SharedBottom, MMoE, PLE) and ESMM (whose CTCVR has no logit: BCE on the
// probability, dl/dp = (-w y / p + (1 - y) / (1 - p)) / B); then the trainer's reported loss and
// its first SGD step.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "rechub/nn/optim.h"

namespace rechub::trainer {
namespace {

namespace fs = std::filesystem;

struct Data {
  fs::path dir;
  data::LoadedData data;
  ~Data() { fs::remove_all(dir); }
};

// Frequent clicks and conversions, so that a batch of 256 has positives in both tasks.
const Data& synth() {
  static Data d = [] {
    Data s;
    s.dir = fs::temp_directory_path() / ("rechub_pos_weight_" + std::to_string(::getpid()));
    fs::create_directories(s.dir);
    data::AliCcpSynthConfig cfg{
        .seed = 9, .vocab_sizes = {200, 50, 30, 10}, .num_dense = 2, .click_rate = 0.3, .conversion_rate = 0.4};
    data::AliCcpSynth gen(cfg);
    const auto paths = data::write_ali_ccp_synthetic((s.dir / "ali").string(), cfg, 512, 64, 64);
    s.data = data::load_data({.train = paths[0], .val = paths[1], .test = paths[2]}, gen.schema(4));
    return s;
  }();
  return d;
}

std::shared_ptr<models::MultiTaskModel> model(const std::string& kind) {
  const auto& d = synth().data;
  return build_model(kind, models::features_from_schema(d.preprocessor->schema()),
                     d.preprocessor->schema().task_names(), {},
                     {.embed_dim = 4,
                      .hidden_units = {16},
                      .expert_units = {16},
                      .num_experts = 2,
                      .num_shared_experts = 1,
                      .num_layers = 1,
                      .tower_units = {8}});
}

data::Batch first_batch(int64_t rows) {
  data::DataLoader l(synth().data.train, {.batch_size = rows, .shuffle = false, .prefetch = 0});
  return *l.next();
}

std::vector<double> column(const Tensor& labels, int64_t t) {
  const auto all = labels.to_vector<double>();
  const int64_t T = labels.size(1);
  std::vector<double> out;
  for (size_t i = static_cast<size_t>(t); i < all.size(); i += static_cast<size_t>(T)) out.push_back(all[i]);
  return out;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Weighted BCE of probabilities p (f64), and its gradient with respect to the logit (or p).
double weighted_bce(const std::vector<double>& p, const std::vector<double>& y, double w) {
  double s = 0;
  for (size_t i = 0; i < p.size(); ++i) s -= w * y[i] * std::log(p[i]) + (1 - y[i]) * std::log(1 - p[i]);
  return s / static_cast<double>(p.size());
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1e-3 + std::abs(want[i]))) << what << " row " << i;
}

class PosWeightModel : public ::testing::TestWithParam<std::string> {};

TEST_P(PosWeightModel, LossAndGradientAreTheWeightedBce) {
  const std::string kind = GetParam();
  auto m = model(kind);
  const data::Batch b = first_batch(256);
  const std::vector<double> pw = {3.0, 0.25};
  const models::ModelOutput out = m->forward(b);
  const std::vector<Tensor> losses = m->loss(out, b.labels, {.weights = {}, .pos_weights = pw});
  ASSERT_EQ(losses.size(), 2u);
  for (int64_t t = 0; t < 2; ++t) {
    SCOPED_TRACE(kind + " task " + std::to_string(t));
    const auto y = column(b.labels, t);
    double positives = 0;
    for (double v : y) positives += v;
    ASSERT_GT(positives, 5) << "the batch needs positives for the weight to matter";
    const double B = static_cast<double>(y.size());
    const bool on_logit = out.logits[static_cast<size_t>(t)].defined();
    const Tensor& x = on_logit ? out.logits[static_cast<size_t>(t)] : out.predictions[static_cast<size_t>(t)];
    const auto xv = x.to_vector<double>();
    std::vector<double> p(xv.size()), dl(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) {
      p[i] = on_logit ? sigmoid(xv[i]) : xv[i];
      const double w = pw[static_cast<size_t>(t)];
      dl[i] =
          on_logit ? ((1 - y[i]) * p[i] - w * y[i] * (1 - p[i])) / B : (-w * y[i] / p[i] + (1 - y[i]) / (1 - p[i])) / B;
    }
    EXPECT_NEAR(losses[static_cast<size_t>(t)].item(), weighted_bce(p, y, pw[static_cast<size_t>(t)]), 2e-6);
    const Tensor g = rechub::grad({losses[static_cast<size_t>(t)]}, {x}, {}, {.retain_graph = true})[0];
    expect_close(g.to_vector<double>(), dl, 1e-4, "d loss / d " + std::string(on_logit ? "logit" : "prediction"));
  }
}

INSTANTIATE_TEST_SUITE_P(Models, PosWeightModel, ::testing::Values("shared_bottom", "mmoe", "ple", "esmm"));

// The trainer passes its pos_weights to the loss: the epoch's reported loss (one batch, so the
// loss at the initial weights) is the weighted BCE of the untrained model's predictions, and the
// SGD step it takes is the step on the weighted loss.
TEST(PosWeightTrainer, ReportedLossAndStepUseTheWeights) {
  for (const std::string kind : {"mmoe", "esmm"}) {
    SCOPED_TRACE(kind);
    const std::vector<double> pw = {4.0, 0.5};
    const data::Batch b = first_batch(256);
    auto reference = model(kind);
    const models::ModelOutput out = reference->forward(b);
    std::vector<double> want_loss;
    for (int64_t t = 0; t < 2; ++t) {
      const auto v = out.predictions[static_cast<size_t>(t)].to_vector<double>();
      want_loss.push_back(weighted_bce(v, column(b.labels, t), pw[static_cast<size_t>(t)]));
    }
    // The same step by hand on an identically initialised model.
    const double lr = 0.5;
    const auto losses = reference->loss(out, b.labels, {.weights = {}, .pos_weights = pw});
    rechub::backward(ops::add(losses[0], losses[1]));
    nn::SGD manual({{reference->parameters(), lr}});
    manual.step();

    auto trained = model(kind);
    std::vector<int64_t> rows(256);
    for (int64_t i = 0; i < 256; ++i) rows[static_cast<size_t>(i)] = i;
    const auto one_batch = std::make_shared<const data::Dataset>(synth().data.train->subset(rows));
    data::DataLoader train(one_batch, {.batch_size = 256, .shuffle = false, .prefetch = 0});
    MTLTrainer t(trained, {.optimizer_params = {.lr = lr, .kind = OptimizerKind::sgd},
                           .n_epochs = 1,
                           .pos_weights = pw,
                           .progress = false});
    t.fit(train);
    ASSERT_EQ(t.history().size(), 1u);
    for (size_t k = 0; k < 2; ++k)
      EXPECT_NEAR(t.history()[0].train_loss[k], want_loss[k], 2e-6 * (1 + want_loss[k])) << "task " << k;
    const auto a = trained->named_parameters(), r = reference->named_parameters();
    ASSERT_EQ(a.size(), r.size());
    for (size_t i = 0; i < a.size(); ++i) {
      const auto av = a[i].second.to_vector<double>(), rv = r[i].second.to_vector<double>();
      for (size_t j = 0; j < av.size(); ++j)
        ASSERT_NEAR(av[j], rv[j], 1e-5 * (1 + std::abs(rv[j]))) << a[i].first << " element " << j;
    }
  }
}

}  // namespace
}  // namespace rechub::trainer
