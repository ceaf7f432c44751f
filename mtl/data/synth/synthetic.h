#pragma once
// Synthetic datasets with a planted signal, deterministic from a seed (what `rechub synth` writes).
//
// AliCcpSynth: click / conversion data shaped like Ali-CCP: sparse fields with Zipf-distributed
// ids (vocabularies 10 .. 10^6), a few dense fields in [0, 1], and a latent model behind the
// labels: every id has a hidden bias and a hidden 4-d embedding; the user-side fields' embeddings
// summed, dotted with the item-side ones, plus the biases and dense terms give the click logit,
// and another set of biases and a second interaction the conversion logit. Intercepts are
// calibrated so clicks happen on click_rate of the rows and conversions on conversion_rate of the
// clicks (never without a click: purchase implies click, as in ESMM's CTCVR).
//
// MmoeSynth: the regression tasks of the MMoE paper (Ma et al., KDD 2018, section 3.3) with a
// controllable task correlation p:
//   u1, u2 orthogonal unit vectors in R^d;  w1 = c u1,  w2 = c (p u1 + sqrt(1 - p^2) u2)
//   x ~ N(0, I_d);  y_i = w_i^T x + sum_{j=1..m} sin(alpha_j w_i^T x + beta_j) + eps_i,
//   eps_i ~ N(0, 0.01) (variance; noise_std = 0.1)
// The paper does not give alpha_j, beta_j: here they are drawn from N(0, 1) with the seed.
//
// Row r of a generator is the same whichever slice asks for it: rows come in seeded blocks, so
// train/val/test files are disjoint slices of one stream ([0, n_train), then val, then test).
#include <cstdint>
#include <string>
#include <vector>

#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/schema.h"

namespace rechub::data {

struct AliCcpSynthConfig {
  uint64_t seed = 1;
  // One sparse field per entry; field i is user-side when i is even, item-side when odd.
  std::vector<int64_t> vocab_sizes{100000, 50000, 20000, 5000, 1000, 100, 10, 4};
  // Column names of the sparse fields; empty: Ali-CCP field ids ("101", "205", ...).
  std::vector<std::string> field_names{};
  int64_t num_dense = 4;
  double zipf_exponent = 1.1;  // P(rank k) ~ 1 / (k + 1)^s
  int64_t latent_dim = 4;
  double click_rate = 0.04;       // clicked rows / rows
  double conversion_rate = 0.15;  // converted rows / clicked rows
  double signal = 1.0;            // scale of every planted term (0: labels are pure noise)
};

struct AliCcpRows {
  int64_t n = 0;
  std::vector<int64_t> ids{};       // [n, fields] raw ids (0 .. vocab - 1)
  std::vector<float> dense{};       // [n, num_dense] in [0, 1]
  std::vector<float> click{};       // [n] 0/1
  std::vector<float> purchase{};    // [n] 0/1, only where click = 1
  std::vector<float> click_prob{};  // [n] the true click probability
  std::vector<float> ctcvr_prob{};  // [n] the true P(click and purchase)
};

class AliCcpSynth {
 public:
  explicit AliCcpSynth(AliCcpSynthConfig config = {});

  AliCcpRows generate(int64_t first_row, int64_t n) const;
  // Header: click, purchase, the sparse fields, D1..Dk (dense).
  void write_csv(const std::string& path, int64_t first_row, int64_t n) const;
  std::vector<std::string> columns() const;
  // Sparse fields, dense fields, tasks ctr (click) and ctcvr (purchase).
  Schema schema(int64_t embed_dim = 16) const;
  const AliCcpSynthConfig& config() const { return cfg_; }
  const std::vector<std::string>& field_names() const { return names_; }

 private:
  struct Field {
    std::vector<double> prob;  // alias method tables (Vose) for the Zipf draw
    std::vector<uint32_t> alias;
    std::vector<float> bias_click;  // per id
    std::vector<float> bias_cvr;
    std::vector<float> emb;      // [vocab, latent_dim]
    std::vector<float> emb_cvr;  // [vocab, latent_dim]
  };
  void fill_block(int64_t block, AliCcpRows& out, int64_t at, int64_t from, int64_t to) const;
  void logits(const int64_t* ids, const float* dense, double& click, double& cvr) const;

  AliCcpSynthConfig cfg_;
  std::vector<std::string> names_;
  std::vector<Field> fields_;
  std::vector<float> w_click_, w_cvr_;  // dense weights
  double b_click_ = 0, b_cvr_ = 0;      // calibrated intercepts
};

// Writes <prefix>_train.csv, <prefix>_val.csv, <prefix>_test.csv (skipping empty splits) and
// returns the paths written.
std::vector<std::string> write_ali_ccp_synthetic(const std::string& prefix, const AliCcpSynthConfig& config,
                                                 int64_t train_rows, int64_t val_rows, int64_t test_rows);

// The dataset the tutorials and examples train on: a small Ali-CCP-shaped click/purchase set with a
// planted signal (6 sparse features, 2 dense, click rate 0.2, conversion rate 0.3, embedding width 8),
// train_rows training rows and train_rows / 5 each for validation and test. It is written as CSV to
// a temporary folder, loaded like any CSV files (load_data, no cache) and the folder removed.
LoadedData ali_ccp_example_data(int64_t train_rows = 20000, uint64_t seed = 1);

struct MmoeSynthConfig {
  uint64_t seed = 1;
  int64_t dim = 100;         // d
  double correlation = 0.5;  // p, in [-1, 1]
  double scale = 1.0;        // c
  int64_t num_sin = 10;      // m
  double noise_std = 0.1;    // eps ~ N(0, noise_std^2)
};

struct MmoeRows {
  int64_t n = 0;
  std::vector<float> x{};   // [n, dim]
  std::vector<float> y1{};  // [n]
  std::vector<float> y2{};  // [n]
};

class MmoeSynth {
 public:
  explicit MmoeSynth(MmoeSynthConfig config = {});
  MmoeRows generate(int64_t first_row, int64_t n) const;
  // Header: x0..x{d-1}, y1, y2.
  void write_csv(const std::string& path, int64_t first_row, int64_t n) const;
  std::vector<std::string> columns() const;
  // Dense x0..x{d-1}; regression tasks y1, y2.
  Schema schema() const;
  const MmoeSynthConfig& config() const { return cfg_; }
  const std::vector<double>& w1() const { return w1_; }
  const std::vector<double>& w2() const { return w2_; }
  const std::vector<double>& alphas() const { return alpha_; }
  const std::vector<double>& betas() const { return beta_; }

 private:
  MmoeSynthConfig cfg_;
  std::vector<double> w1_, w2_, alpha_, beta_;
};

std::vector<std::string> write_mmoe_synthetic(const std::string& prefix, const MmoeSynthConfig& config,
                                              int64_t train_rows, int64_t val_rows, int64_t test_rows);

}  // namespace rechub::data
