// Synthetic data: the planted statistics (click rate, conversions only after clicks, the MMoE
// task correlation), determinism from the seed, and CSV output the reader takes back.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/synth/synthetic.h"

namespace rechub::data {
namespace {

namespace fs = std::filesystem;

// Rank AUC of scores against 0/1 labels (ties averaged).
double auc(const std::vector<float>& score, const std::vector<float>& label) {
  std::vector<size_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), size_t(0));
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  double rank_sum = 0, pos = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && score[idx[j]] == score[idx[i]]) ++j;
    const double avg = 0.5 * static_cast<double>(i + j + 1);
    for (size_t k = i; k < j; ++k)
      if (label[idx[k]] > 0.5) {
        rank_sum += avg;
        ++pos;
      }
    i = j;
  }
  const double neg = static_cast<double>(label.size()) - pos;
  return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

double correlation(const std::vector<float>& a, const std::vector<float>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ma += a[i] / n;
    mb += b[i] / n;
  }
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

TEST(AliCcpSynth, ClickRateIsAFewPercentAndConversionsOnlyFollowClicks) {
  const AliCcpSynth gen({.seed = 3});
  const AliCcpRows r = gen.generate(0, 200000);
  double clicks = 0, buys = 0;
  for (int64_t i = 0; i < r.n; ++i) {
    clicks += r.click[static_cast<size_t>(i)];
    buys += r.purchase[static_cast<size_t>(i)];
    ASSERT_LE(r.purchase[static_cast<size_t>(i)], r.click[static_cast<size_t>(i)]) << "a purchase without a click";
  }
  EXPECT_NEAR(clicks / 200000, 0.04, 0.006);
  EXPECT_NEAR(buys / clicks, 0.15, 0.03);
  for (size_t f = 0; f < gen.config().vocab_sizes.size(); ++f)
    for (int64_t i = 0; i < r.n; ++i) {
      const int64_t id = r.ids[static_cast<size_t>(i) * 8 + f];
      ASSERT_TRUE(id >= 0 && id < gen.config().vocab_sizes[f]);
    }
  for (float x : r.dense) ASSERT_TRUE(x >= 0 && x < 1);
}

TEST(AliCcpSynth, IdsAreZipfDistributed) {
  const AliCcpSynth gen({.seed = 4});
  const AliCcpRows r = gen.generate(0, 100000);
  // Field 0 (vocabulary 100000, exponent 1.1): P(rank k) ~ (k + 1)^-1.1.
  std::vector<int64_t> count(100000, 0);
  for (int64_t i = 0; i < r.n; ++i) ++count[static_cast<size_t>(r.ids[static_cast<size_t>(i) * 8])];
  double z = 0;
  for (int k = 0; k < 100000; ++k) z += std::pow(k + 1.0, -1.1);
  EXPECT_NEAR(count[0] / 100000.0, 1.0 / z, 0.01);
  EXPECT_NEAR(static_cast<double>(count[0]) / static_cast<double>(count[9]), std::pow(10.0, 1.1), 2.5);
}

TEST(AliCcpSynth, PlantedSignalIsStrongButNotPerfect) {
  const AliCcpSynth gen({.seed = 5});
  const AliCcpRows r = gen.generate(0, 100000);
  const double click_auc = auc(r.click_prob, r.click), buy_auc = auc(r.ctcvr_prob, r.purchase);
  EXPECT_GT(click_auc, 0.85);
  EXPECT_LT(click_auc, 0.97);
  EXPECT_GT(buy_auc, 0.85);
  const AliCcpSynth noise({.seed = 5, .signal = 0.0});
  const AliCcpRows n = noise.generate(0, 100000);
  EXPECT_NEAR(auc(n.click_prob, n.click), 0.5, 0.02);
}

TEST(AliCcpSynth, RowsDependOnlyOnSeedAndIndex) {
  const AliCcpSynth a({.seed = 11}), b({.seed = 11}), c({.seed = 12});
  const AliCcpRows whole = a.generate(0, 10000);
  const AliCcpRows part = b.generate(5000, 3000);
  for (int64_t i = 0; i < 3000; ++i) {
    for (int f = 0; f < 8; ++f)
      ASSERT_EQ(part.ids[static_cast<size_t>(i * 8 + f)], whole.ids[static_cast<size_t>((5000 + i) * 8 + f)]);
    ASSERT_EQ(part.click[static_cast<size_t>(i)], whole.click[static_cast<size_t>(5000 + i)]);
  }
  EXPECT_NE(c.generate(0, 100).ids, a.generate(0, 100).ids);
}

TEST(AliCcpSynth, WritesTrainValTestCsvsThatLoad) {
  const fs::path dir = fs::temp_directory_path() / ("rechub_synth_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const AliCcpSynthConfig cfg{.seed = 2, .vocab_sizes = {1000, 50, 10}, .num_dense = 2};
  const auto paths = write_ali_ccp_synthetic((dir / "ali").string(), cfg, 3000, 500, 700);
  ASSERT_EQ(paths.size(), 3u);
  const AliCcpSynth gen(cfg);
  const Schema s = gen.schema();
  EXPECT_EQ(s.sparse.size(), 3u);
  EXPECT_EQ(s.dense.size(), 2u);
  EXPECT_EQ(s.task_names(), (std::vector<std::string>{"ctr", "ctcvr"}));
  const ColumnTable train = read_csv(paths[0], s), test = read_csv(paths[2], s);
  EXPECT_EQ(train.rows(), 3000);
  EXPECT_EQ(test.rows(), 700);
  // The test file is rows [3500, 4200) of the stream.
  const AliCcpRows expect = gen.generate(3500, 700);
  const int f0 = test.require(gen.field_names()[0]), click = test.require("click"), d1 = test.require("D1");
  for (int64_t i = 0; i < 700; ++i) {
    ASSERT_EQ(test.dictionary(f0).value(test.code(i, f0)), std::to_string(expect.ids[static_cast<size_t>(i) * 3]));
    ASSERT_EQ(test.value(i, click), expect.click[static_cast<size_t>(i)]);
    ASSERT_NEAR(test.value(i, d1), expect.dense[static_cast<size_t>(i) * 2], 5e-5);
  }
  Preprocessor p(s);
  p.fit(train);
  EXPECT_LE(p.schema().sparse[2].vocab_size, 11);
  fs::remove_all(dir);
}

TEST(MmoeSynth, WeightsFollowThePaperConstruction) {
  const MmoeSynth g({.seed = 1, .dim = 50, .correlation = 0.3, .scale = 2.0});
  double n1 = 0, n2 = 0, dot = 0;
  for (size_t k = 0; k < 50; ++k) {
    n1 += g.w1()[k] * g.w1()[k];
    n2 += g.w2()[k] * g.w2()[k];
    dot += g.w1()[k] * g.w2()[k];
  }
  EXPECT_NEAR(std::sqrt(n1), 2.0, 1e-9);  // |w1| = c
  EXPECT_NEAR(std::sqrt(n2), 2.0, 1e-9);  // |w2| = c
  EXPECT_NEAR(dot / 4.0, 0.3, 1e-9);      // cos(w1, w2) = p
}

// The label correlation that p implies, in closed form: with g1, g2 standard normal of
// correlation r and z_i = c g_i,
//   E sin(a g + b) = exp(-a^2/2) sin b,   E g1 sin(a g2 + b) = r a exp(-a^2/2) cos b,
//   E sin(a1 g1 + b1) sin(a2 g2 + b2) = [exp(-(a1^2 + a2^2 - 2 r a1 a2)/2) cos(b1 - b2)
//                                        - exp(-(a1^2 + a2^2 + 2 r a1 a2)/2) cos(b1 + b2)] / 2.
double implied_correlation(const MmoeSynth& g) {
  const double c = g.config().scale, p = g.config().correlation, s2 = g.config().noise_std * g.config().noise_std;
  const auto& al = g.alphas();
  const auto& be = g.betas();
  const size_t m = al.size();
  auto es = [&](size_t j) { return std::exp(-c * c * al[j] * al[j] / 2) * std::sin(be[j]); };
  auto cov_ss = [&](double r) {
    double v = 0;
    for (size_t j = 0; j < m; ++j)
      for (size_t k = 0; k < m; ++k) {
        const double a1 = c * al[j], a2 = c * al[k];
        const double ess = 0.5 * (std::exp(-(a1 * a1 + a2 * a2 - 2 * r * a1 * a2) / 2) * std::cos(be[j] - be[k]) -
                                  std::exp(-(a1 * a1 + a2 * a2 + 2 * r * a1 * a2) / 2) * std::cos(be[j] + be[k]));
        v += ess - es(j) * es(k);
      }
    return v;
  };
  auto cov_zs = [&](double r) {
    double v = 0;
    for (size_t k = 0; k < m; ++k) v += c * r * c * al[k] * std::exp(-c * c * al[k] * al[k] / 2) * std::cos(be[k]);
    return v;
  };
  const double cov = c * c * p + 2 * cov_zs(p) + cov_ss(p);
  const double var = c * c + 2 * cov_zs(1.0) + cov_ss(1.0) + s2;
  return cov / var;
}

TEST(MmoeSynth, LabelCorrelationIsWhatPImplies) {
  const int64_t n = 40000;
  for (uint64_t seed : {1, 7}) {
    double last = -2;
    for (double p : {-0.5, 0.1, 0.5, 0.9, 1.0}) {
      const MmoeSynth g({.seed = seed, .correlation = p});
      const MmoeRows r = g.generate(0, n);
      const double measured = correlation(r.y1, r.y2), implied = implied_correlation(g);
      EXPECT_NEAR(measured, implied, 0.025) << "seed " << seed << ", p = " << p;
      EXPECT_GT(measured, last) << "label correlation grows with p";
      last = measured;
    }
  }
  // p = 0.9 against p = 0.1: far apart, near p itself for seed 1.
  const double high = correlation(MmoeSynth({.seed = 1, .correlation = 0.9}).generate(0, n).y1,
                                  MmoeSynth({.seed = 1, .correlation = 0.9}).generate(0, n).y2);
  const double low = correlation(MmoeSynth({.seed = 1, .correlation = 0.1}).generate(0, n).y1,
                                 MmoeSynth({.seed = 1, .correlation = 0.1}).generate(0, n).y2);
  EXPECT_GT(high, low + 0.5);
  EXPECT_NEAR(high, 0.9, 0.1);
  EXPECT_NEAR(low, 0.1, 0.1);
}

TEST(MmoeSynth, DeterministicCsvWithSchema) {
  const fs::path dir = fs::temp_directory_path() / ("rechub_mmoe_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const MmoeSynthConfig cfg{.seed = 3, .dim = 8, .correlation = 0.5};
  const auto paths = write_mmoe_synthetic((dir / "mmoe").string(), cfg, 1000, 0, 200);
  ASSERT_EQ(paths.size(), 2u);
  const MmoeSynth g(cfg);
  const Schema s = g.schema();
  EXPECT_EQ(s.dense.size(), 8u);
  EXPECT_EQ(s.task_types(), (std::vector<TaskType>{TaskType::regression, TaskType::regression}));
  EXPECT_TRUE(s.sparse.empty());
  // A schema with only dense features and regression labels reads back exactly (shortest
  // round-trip float text).
  const ColumnTable t = read_csv(paths[1], s);
  const MmoeRows r = g.generate(1000, 200);
  const int y1 = t.require("y1"), x3 = t.require("x3");
  for (int64_t i = 0; i < 200; ++i) {
    ASSERT_EQ(t.value(i, y1), r.y1[static_cast<size_t>(i)]);
    ASSERT_EQ(t.value(i, x3), r.x[static_cast<size_t>(i) * 8 + 3]);
  }
  fs::remove_all(dir);
  EXPECT_THROW(MmoeSynth({.correlation = 1.5}), Error);
  EXPECT_THROW(MmoeSynth({.dim = 1}), Error);
}

}  // namespace
}  // namespace rechub::data
