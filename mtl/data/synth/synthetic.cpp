#include "rechub/mtl/data/synth/synthetic.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "rechub/core/error.h"
#include "rechub/core/rng.h"

namespace rechub::data {

namespace {

// "D" + number without operator+(const char*, string) (GCC 12 warns falsely about it: PR 105651).
std::string numbered(const char* prefix, int64_t k) {
  std::string s(prefix);
  s += std::to_string(k);
  return s;
}

constexpr int64_t kBlockRows = 4096;  // rows per seeded block

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t block_seed(uint64_t seed, uint64_t stream, int64_t block) {
  return splitmix64(seed ^ splitmix64(stream ^ splitmix64(static_cast<uint64_t>(block))));
}

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Vose's alias method: O(1) draws from a discrete distribution.
void build_alias(const std::vector<double>& w, std::vector<double>& prob, std::vector<uint32_t>& alias) {
  const size_t n = w.size();
  double total = 0;
  for (double x : w) total += x;
  prob.assign(n, 0.0);
  alias.assign(n, 0);
  std::vector<double> scaled(n);
  std::vector<uint32_t> small, large;
  for (size_t i = 0; i < n; ++i) {
    scaled[i] = w[i] * static_cast<double>(n) / total;
    (scaled[i] < 1.0 ? small : large).push_back(static_cast<uint32_t>(i));
  }
  while (!small.empty() && !large.empty()) {
    const uint32_t s = small.back(), l = large.back();
    small.pop_back();
    prob[s] = scaled[s];
    alias[s] = l;
    scaled[l] = scaled[l] + scaled[s] - 1.0;
    if (scaled[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  for (uint32_t i : large) prob[i] = 1.0;
  for (uint32_t i : small) prob[i] = 1.0;
}

// Writes rows with a fixed buffer; throws rechub::Error naming the file on failure.
class CsvWriter {
 public:
  explicit CsvWriter(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) throw Error(tmp_ + ": cannot open for writing");
  }
  ~CsvWriter() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const std::string& s) {
    if (!s.empty() && std::fwrite(s.data(), 1, s.size(), f_) != s.size()) throw Error(tmp_ + ": write failed");
  }
  void close() {
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) throw Error(tmp_ + ": write failed");
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) throw Error("cannot rename " + tmp_ + " to " + path_);
  }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
};

void append_int(std::string& s, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, r.ptr);
}

void append_fixed(std::string& s, float v, int digits) {
  char buf[48];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, digits);
  s.append(buf, r.ptr);
}

void append_general(std::string& s, float v) {
  char buf[48];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  s.append(buf, r.ptr);
}

std::string header_line(const std::vector<std::string>& cols) {
  std::string h;
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) h += ',';
    h += cols[i];
  }
  h += '\n';
  return h;
}

// Rows [first, first + n) in slices of 2^18, formatted in parallel, written in order.
template <class Generate, class Format>
void write_rows(const std::string& path, const std::vector<std::string>& cols, int64_t first, int64_t n,
                Generate&& generate, Format&& format) {
  if (first < 0 || n < 0) throw Error(path + ": negative row range");
  CsvWriter w(path);
  w.write(header_line(cols));
  const int64_t slice = int64_t(1) << 18;
  for (int64_t at = 0; at < n; at += slice) {
    const int64_t m = std::min(slice, n - at);
    const auto rows = generate(first + at, m);
    const int64_t parts = 8;
    std::vector<std::string> text(static_cast<size_t>(parts));
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < parts; ++p) {
      std::string& s = text[static_cast<size_t>(p)];
      const int64_t b = m * p / parts, e = m * (p + 1) / parts;
      s.reserve(static_cast<size_t>(e - b) * 80);
      for (int64_t i = b; i < e; ++i) format(rows, i, s);
    }
    for (const auto& s : text) w.write(s);
  }
  w.close();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ali-CCP-shaped click / conversion data

AliCcpSynth::AliCcpSynth(AliCcpSynthConfig config) : cfg_(std::move(config)) {
  const auto nf = cfg_.vocab_sizes.size();
  if (nf < 2) throw Error("AliCcpSynth: at least two sparse fields (one user-side, one item-side) are needed");
  for (int64_t v : cfg_.vocab_sizes)
    if (v < 2 || v > 100000000)
      throw Error("AliCcpSynth: vocabulary sizes must be in [2, 1e8], got " + std::to_string(v));
  if (cfg_.num_dense < 0 || cfg_.latent_dim < 1) throw Error("AliCcpSynth: num_dense >= 0 and latent_dim >= 1 needed");
  if (!(cfg_.click_rate > 0 && cfg_.click_rate < 1) || !(cfg_.conversion_rate > 0 && cfg_.conversion_rate < 1))
    throw Error("AliCcpSynth: click_rate and conversion_rate must be in (0, 1)");
  if (!(cfg_.zipf_exponent > 0)) throw Error("AliCcpSynth: zipf_exponent must be positive");
  if (!cfg_.field_names.empty()) {
    if (cfg_.field_names.size() != nf) throw Error("AliCcpSynth: one field name per vocabulary size");
    names_ = cfg_.field_names;
  } else if (nf == 8) {
    // Ali-CCP field ids: user id, item id, user category behaviour, brand, user shop behaviour,
    // item category, age, scene (user-side at even positions).
    names_ = {"101", "205", "109_14", "216", "110_14", "206", "125", "301"};
  } else {
    for (size_t i = 0; i < nf; ++i) names_.push_back(numbered("f", static_cast<int64_t>(i + 1)));
  }

  Generator g(splitmix64(cfg_.seed ^ 0xa11cc9ULL));
  const auto d = static_cast<size_t>(cfg_.latent_dim);
  // Embeddings sized so that the user-item dot product has a standard deviation near 1.
  const double users = static_cast<double>((nf + 1) / 2), items = static_cast<double>(nf / 2);
  const double emb_sd = 1.25 * std::pow(static_cast<double>(d) * users * items, -0.25);
  fields_.resize(nf);
  for (size_t f = 0; f < nf; ++f) {
    Field& F = fields_[f];
    const auto v = static_cast<size_t>(cfg_.vocab_sizes[f]);
    std::vector<double> w(v);
    for (size_t k = 0; k < v; ++k) w[k] = std::pow(static_cast<double>(k + 1), -cfg_.zipf_exponent);
    build_alias(w, F.prob, F.alias);
    // Per-id biases: stronger for small vocabularies, whose ids a model sees often.
    const double bias_sd = 0.8 / std::sqrt(1.0 + std::log10(static_cast<double>(v)));
    F.bias_click.resize(v);
    F.bias_cvr.resize(v);
    F.emb.resize(v * d);
    F.emb_cvr.resize(v * d);
    for (size_t k = 0; k < v; ++k) {
      const double a = g.normal(), b = g.normal();
      F.bias_click[k] = static_cast<float>(bias_sd * a);
      F.bias_cvr[k] = static_cast<float>(bias_sd * (0.5 * a + 0.8660254 * b));  // correlated tasks
    }
    for (auto& x : F.emb) x = static_cast<float>(emb_sd * g.normal());
    for (auto& x : F.emb_cvr) x = static_cast<float>(emb_sd * g.normal());
  }
  for (int64_t j = 0; j < cfg_.num_dense; ++j) {
    w_click_.push_back(static_cast<float>(2.0 * g.normal()));
    w_cvr_.push_back(static_cast<float>(2.0 * g.normal()));
  }

  // Calibrate the intercepts on a sample of the same distribution (its own seeded stream).
  const int64_t cal = 40000;
  std::vector<double> zc(cal), zv(cal);
  {
    Generator cg(splitmix64(cfg_.seed ^ 0xca11b ^ 0x5eedULL));
    std::vector<int64_t> ids(nf);
    std::vector<float> dense(static_cast<size_t>(cfg_.num_dense));
    for (int64_t r = 0; r < cal; ++r) {
      for (size_t f = 0; f < nf; ++f) {
        const double u = cg.uniform() * static_cast<double>(fields_[f].prob.size());
        const auto k = std::min(static_cast<size_t>(u), fields_[f].prob.size() - 1);
        ids[f] = (u - static_cast<double>(k)) < fields_[f].prob[k] ? static_cast<int64_t>(k) : fields_[f].alias[k];
      }
      for (auto& x : dense) x = static_cast<float>(cg.uniform());
      logits(ids.data(), dense.data(), zc[static_cast<size_t>(r)], zv[static_cast<size_t>(r)]);
    }
  }
  auto solve = [](auto&& rate_at, double target) {
    double lo = -40, hi = 40;
    for (int it = 0; it < 100; ++it) {
      const double mid = 0.5 * (lo + hi);
      (rate_at(mid) < target ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
  };
  b_click_ = solve(
      [&](double b) {
        double s = 0;
        for (double z : zc) s += sigmoid(b + z);
        return s / static_cast<double>(cal);
      },
      cfg_.click_rate);
  b_cvr_ = solve(
      [&](double b) {
        double num = 0, den = 0;
        for (int64_t r = 0; r < cal; ++r) {
          const double pc = sigmoid(b_click_ + zc[static_cast<size_t>(r)]);
          num += pc * sigmoid(b + zv[static_cast<size_t>(r)]);
          den += pc;
        }
        return num / den;
      },
      cfg_.conversion_rate);
}

// z_click = sum_f bias_f[id_f] + <sum_{f user} e_f[id_f], sum_{f item} e_f[id_f]> + w . (x - 0.5),
// z_cvr the same with its own biases, embeddings and weights; both times `signal`.
void AliCcpSynth::logits(const int64_t* ids, const float* dense, double& click, double& cvr) const {
  const auto d = static_cast<size_t>(cfg_.latent_dim);
  double uc[16] = {0}, ic[16] = {0}, uv[16] = {0}, iv[16] = {0};
  std::vector<double> big;
  double *pu = uc, *pi = ic, *qu = uv, *qi = iv;
  if (d > 16) {
    big.assign(4 * d, 0.0);
    pu = big.data();
    pi = pu + d;
    qu = pi + d;
    qi = qu + d;
  }
  double zc = 0, zv = 0;
  for (size_t f = 0; f < fields_.size(); ++f) {
    const Field& F = fields_[f];
    const auto k = static_cast<size_t>(ids[f]);
    zc += F.bias_click[k];
    zv += F.bias_cvr[k];
    double* a = f % 2 == 0 ? pu : pi;
    double* b = f % 2 == 0 ? qu : qi;
    for (size_t j = 0; j < d; ++j) {
      a[j] += F.emb[k * d + j];
      b[j] += F.emb_cvr[k * d + j];
    }
  }
  for (size_t j = 0; j < d; ++j) {
    zc += pu[j] * pi[j];
    zv += qu[j] * qi[j];
  }
  for (size_t j = 0; j < w_click_.size(); ++j) {
    zc += w_click_[j] * (dense[j] - 0.5);
    zv += w_cvr_[j] * (dense[j] - 0.5);
  }
  click = cfg_.signal * zc;
  cvr = cfg_.signal * zv;
}

void AliCcpSynth::fill_block(int64_t block, AliCcpRows& out, int64_t at, int64_t from, int64_t to) const {
  Generator g(block_seed(cfg_.seed, 0xc11c, block));
  const size_t nf = fields_.size();
  const auto nd = static_cast<size_t>(cfg_.num_dense);
  std::vector<int64_t> ids(nf);
  std::vector<float> dense(nd);
  for (int64_t i = 0; i < kBlockRows; ++i) {
    // Every row draws the same number of numbers, so row r does not depend on earlier outcomes.
    for (size_t f = 0; f < nf; ++f) {
      const double u = g.uniform() * static_cast<double>(fields_[f].prob.size());
      const auto k = std::min(static_cast<size_t>(u), fields_[f].prob.size() - 1);
      ids[f] = (u - static_cast<double>(k)) < fields_[f].prob[k] ? static_cast<int64_t>(k) : fields_[f].alias[k];
    }
    for (auto& x : dense) x = static_cast<float>(g.uniform());
    const double u_click = g.uniform(), u_buy = g.uniform();
    if (i < from || i >= to) continue;
    double zc, zv;
    logits(ids.data(), dense.data(), zc, zv);
    const double pc = sigmoid(b_click_ + zc), pv = sigmoid(b_cvr_ + zv);
    const bool click = u_click < pc;
    const bool buy = click && u_buy < pv;
    const auto r = static_cast<size_t>(at + (i - from));
    std::copy(ids.begin(), ids.end(), out.ids.begin() + static_cast<std::ptrdiff_t>(r * nf));
    std::copy(dense.begin(), dense.end(), out.dense.begin() + static_cast<std::ptrdiff_t>(r * nd));
    out.click[r] = click ? 1.0f : 0.0f;
    out.purchase[r] = buy ? 1.0f : 0.0f;
    out.click_prob[r] = static_cast<float>(pc);
    out.ctcvr_prob[r] = static_cast<float>(pc * pv);
  }
}

AliCcpRows AliCcpSynth::generate(int64_t first, int64_t n) const {
  if (first < 0 || n < 0) throw Error("AliCcpSynth::generate: negative row range");
  AliCcpRows out;
  out.n = n;
  const auto un = static_cast<size_t>(n);
  out.ids.resize(un * fields_.size());
  out.dense.resize(un * static_cast<size_t>(cfg_.num_dense));
  out.click.resize(un);
  out.purchase.resize(un);
  out.click_prob.resize(un);
  out.ctcvr_prob.resize(un);
  if (n == 0) return out;
  const int64_t b0 = first / kBlockRows, b1 = (first + n - 1) / kBlockRows;
#pragma omp parallel for schedule(static)
  for (int64_t b = b0; b <= b1; ++b) {
    const int64_t lo = std::max(first, b * kBlockRows), hi = std::min(first + n, (b + 1) * kBlockRows);
    fill_block(b, out, lo - first, lo - b * kBlockRows, hi - b * kBlockRows);
  }
  return out;
}

std::vector<std::string> AliCcpSynth::columns() const {
  std::vector<std::string> c{"click", "purchase"};
  c.insert(c.end(), names_.begin(), names_.end());
  for (int64_t j = 0; j < cfg_.num_dense; ++j) c.push_back(numbered("D", j + 1));
  return c;
}

Schema AliCcpSynth::schema(int64_t embed_dim) const {
  Schema s;
  for (const auto& n : names_) s.sparse.push_back({.name = n, .embed_dim = embed_dim});
  for (int64_t j = 0; j < cfg_.num_dense; ++j) s.dense.push_back({numbered("D", j + 1)});
  s.labels.push_back({.task = "ctr", .column = "click"});
  s.labels.push_back({.task = "ctcvr", .column = "purchase"});
  return s;
}

void AliCcpSynth::write_csv(const std::string& path, int64_t first, int64_t n) const {
  const size_t nf = fields_.size(), nd = static_cast<size_t>(cfg_.num_dense);
  write_rows(
      path, columns(), first, n, [&](int64_t f, int64_t m) { return generate(f, m); },
      [&](const AliCcpRows& rows, int64_t i, std::string& s) {
        const auto r = static_cast<size_t>(i);
        s += rows.click[r] != 0 ? '1' : '0';
        s += ',';
        s += rows.purchase[r] != 0 ? '1' : '0';
        for (size_t f = 0; f < nf; ++f) {
          s += ',';
          append_int(s, rows.ids[r * nf + f]);
        }
        for (size_t j = 0; j < nd; ++j) {
          s += ',';
          append_fixed(s, rows.dense[r * nd + j], 4);
        }
        s += '\n';
      });
}

namespace {
// <prefix>_train.csv, _val.csv, _test.csv from consecutive row ranges of one generator (a split
// with 0 rows is not written); returns the paths written.
template <class Gen>
std::vector<std::string> write_splits(const Gen& gen, const std::string& prefix, int64_t train_rows, int64_t val_rows,
                                      int64_t test_rows) {
  std::vector<std::string> out;
  int64_t at = 0;
  for (auto [name, n] :
       {std::pair<const char*, int64_t>{"train", train_rows}, {"val", val_rows}, {"test", test_rows}}) {
    if (n <= 0) continue;
    out.push_back(prefix + "_" + name + ".csv");
    gen.write_csv(out.back(), at, n);
    at += n;
  }
  return out;
}
}  // namespace

std::vector<std::string> write_ali_ccp_synthetic(const std::string& prefix, const AliCcpSynthConfig& config,
                                                 int64_t train_rows, int64_t val_rows, int64_t test_rows) {
  return write_splits(AliCcpSynth(config), prefix, train_rows, val_rows, test_rows);
}

// ---------------------------------------------------------------------------------------------
// MMoE-paper regression tasks

MmoeSynth::MmoeSynth(MmoeSynthConfig config) : cfg_(config) {
  if (cfg_.dim < 2) throw Error("MmoeSynth: dim must be at least 2 (two orthogonal directions)");
  if (!(cfg_.correlation >= -1.0 && cfg_.correlation <= 1.0))
    throw Error("MmoeSynth: correlation must be in [-1, 1], got " + std::to_string(cfg_.correlation));
  if (cfg_.num_sin < 0 || !(cfg_.noise_std >= 0)) throw Error("MmoeSynth: num_sin >= 0 and noise_std >= 0 needed");
  Generator g(splitmix64(cfg_.seed ^ 0x33e0eULL));
  const auto d = static_cast<size_t>(cfg_.dim);
  auto normalize = [](std::vector<double>& v) {
    double n = 0;
    for (double x : v) n += x * x;
    n = std::sqrt(n);
    for (double& x : v) x /= n;
  };
  // u1, u2: Gram-Schmidt on two Gaussian vectors.
  std::vector<double> u1(d), u2(d);
  for (auto& x : u1) x = g.normal();
  for (auto& x : u2) x = g.normal();
  normalize(u1);
  double dot = 0;
  for (size_t i = 0; i < d; ++i) dot += u1[i] * u2[i];
  for (size_t i = 0; i < d; ++i) u2[i] -= dot * u1[i];
  normalize(u2);
  const double p = cfg_.correlation, c = cfg_.scale, q = std::sqrt(std::max(0.0, 1.0 - p * p));
  w1_.resize(d);
  w2_.resize(d);
  for (size_t i = 0; i < d; ++i) {
    w1_[i] = c * u1[i];
    w2_[i] = c * (p * u1[i] + q * u2[i]);
  }
  for (int64_t j = 0; j < cfg_.num_sin; ++j) {
    alpha_.push_back(g.normal());
    beta_.push_back(g.normal());
  }
}

MmoeRows MmoeSynth::generate(int64_t first, int64_t n) const {
  if (first < 0 || n < 0) throw Error("MmoeSynth::generate: negative row range");
  MmoeRows out;
  out.n = n;
  const auto d = static_cast<size_t>(cfg_.dim);
  out.x.resize(static_cast<size_t>(n) * d);
  out.y1.resize(static_cast<size_t>(n));
  out.y2.resize(static_cast<size_t>(n));
  if (n == 0) return out;
  const int64_t b0 = first / kBlockRows, b1 = (first + n - 1) / kBlockRows;
#pragma omp parallel for schedule(static)
  for (int64_t b = b0; b <= b1; ++b) {
    Generator g(block_seed(cfg_.seed, 0x33e0e, b));
    std::vector<double> x(d);
    for (int64_t i = b * kBlockRows; i < (b + 1) * kBlockRows; ++i) {
      for (auto& v : x) v = g.normal();
      const double e1 = g.normal(), e2 = g.normal();
      if (i < first || i >= first + n) continue;
      double z1 = 0, z2 = 0;
      for (size_t k = 0; k < d; ++k) {
        z1 += w1_[k] * x[k];
        z2 += w2_[k] * x[k];
      }
      double y1 = z1 + cfg_.noise_std * e1, y2 = z2 + cfg_.noise_std * e2;
      for (size_t j = 0; j < alpha_.size(); ++j) {
        y1 += std::sin(alpha_[j] * z1 + beta_[j]);
        y2 += std::sin(alpha_[j] * z2 + beta_[j]);
      }
      const auto r = static_cast<size_t>(i - first);
      for (size_t k = 0; k < d; ++k) out.x[r * d + k] = static_cast<float>(x[k]);
      out.y1[r] = static_cast<float>(y1);
      out.y2[r] = static_cast<float>(y2);
    }
  }
  return out;
}

std::vector<std::string> MmoeSynth::columns() const {
  std::vector<std::string> c;
  for (int64_t k = 0; k < cfg_.dim; ++k) c.push_back(numbered("x", k));
  c.push_back("y1");
  c.push_back("y2");
  return c;
}

Schema MmoeSynth::schema() const {
  Schema s;
  for (int64_t k = 0; k < cfg_.dim; ++k) s.dense.push_back({numbered("x", k)});
  s.labels.push_back({.task = "y1", .column = "y1", .type = TaskType::regression});
  s.labels.push_back({.task = "y2", .column = "y2", .type = TaskType::regression});
  return s;
}

void MmoeSynth::write_csv(const std::string& path, int64_t first, int64_t n) const {
  const auto d = static_cast<size_t>(cfg_.dim);
  write_rows(
      path, columns(), first, n, [&](int64_t f, int64_t m) { return generate(f, m); },
      [&](const MmoeRows& rows, int64_t i, std::string& s) {
        const auto r = static_cast<size_t>(i);
        for (size_t k = 0; k < d; ++k) {
          append_general(s, rows.x[r * d + k]);
          s += ',';
        }
        append_general(s, rows.y1[r]);
        s += ',';
        append_general(s, rows.y2[r]);
        s += '\n';
      });
}

std::vector<std::string> write_mmoe_synthetic(const std::string& prefix, const MmoeSynthConfig& config,
                                              int64_t train_rows, int64_t val_rows, int64_t test_rows) {
  return write_splits(MmoeSynth(config), prefix, train_rows, val_rows, test_rows);
}

LoadedData ali_ccp_example_data(int64_t train_rows, uint64_t seed) {
  namespace fs = std::filesystem;
  RECHUB_CHECK(train_rows >= 5, "ali_ccp_example_data: train_rows must be at least 5, got " << train_rows);
  const fs::path dir =
      fs::temp_directory_path() / ("rechub_example_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
  fs::create_directories(dir);
  const AliCcpSynthConfig cfg{.seed = seed,
                              .vocab_sizes = {2000, 500, 300, 100, 50, 10},
                              .num_dense = 2,
                              .click_rate = 0.2,
                              .conversion_rate = 0.3};
  try {
    const auto paths = write_ali_ccp_synthetic((dir / "ali").string(), cfg, train_rows, train_rows / 5, train_rows / 5);
    LoadedData d = load_data({.train = paths[0], .val = paths[1], .test = paths[2]}, AliCcpSynth(cfg).schema(8),
                             {.cache = {.enabled = false}});
    fs::remove_all(dir);
    return d;
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw;
  }
}

}  // namespace rechub::data
