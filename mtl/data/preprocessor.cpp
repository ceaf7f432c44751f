#include "rechub/mtl/data/preprocessor.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv_tokenizer.h"

namespace rechub::data {

using nlohmann::json;

json preprocess_options_to_json(const PreprocessOptions& o) {
  return {{"min_freq", o.min_freq},
          {"normalization", normalization_name(o.normalization)},
          {"fill", o.fill == MissingFill::mean ? "mean" : "zero"}};
}

PreprocessOptions preprocess_options_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw Error(origin + ": preprocess: must be a JSON object");
  PreprocessOptions o;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    if (k == "min_freq") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1)
        throw Error(origin + ": preprocess: \"min_freq\" must be a positive integer");
      o.min_freq = v.get<int64_t>();
    } else if (k == "normalization") {
      if (!v.is_string()) throw Error(origin + ": preprocess: \"normalization\" must be a string");
      try {
        o.normalization = normalization_from_name(v.get<std::string>());
      } catch (const Error& e) {
        throw Error(origin + ": preprocess: " + e.what());
      }
    } else if (k == "fill") {
      const std::string f = v.is_string() ? v.get<std::string>() : "";
      if (f == "mean")
        o.fill = MissingFill::mean;
      else if (f == "zero")
        o.fill = MissingFill::zero;
      else
        throw Error(origin + ": preprocess: \"fill\" must be \"mean\" or \"zero\"");
    } else {
      throw Error(origin + ": preprocess: unknown key \"" + k + "\"");
    }
  }
  return o;
}

Preprocessor::Preprocessor(Schema schema, PreprocessOptions options, CsvOptions csv)
    : base_(std::move(schema)), options_(options), csv_(std::move(csv)) {
  validate_schema(base_);
  validate_csv_options(csv_);
  schema_ = base_;
}

void Preprocessor::require_fitted(const char* what) const {
  if (!fitted_) throw Error(std::string("Preprocessor::") + what + ": call fit() on the training split first");
}

namespace {

int column_for(const ColumnTable& t, const std::string& name, bool want_categorical, const char* what) {
  const int c = t.require(name);
  if (is_categorical(t.spec(c).role) != want_categorical)
    throw Error(t.source() + ": column '" + name + "' was read as a " + column_role_name(t.spec(c).role) +
                ", but the preprocessor uses it as a " + what + " (read the table with the same schema)");
  return c;
}

// A row without a label for a task whose labels may be missing (Label::missing_ok).
constexpr float kNoLabel = std::numeric_limits<float>::quiet_NaN();

// Per-table lookup state: codes -> ids, label values, normalisers.
struct TableEncoder {
  struct SparseCol {
    int col;
    std::vector<int64_t> lut;  // dictionary code -> vocabulary id
  };
  struct DenseCol {
    int col;
    Normalizer norm;
  };
  struct LabelCol {
    int col;
    bool mapped;
    std::vector<float> lut;  // mapped: dictionary code -> 0/1
  };
  std::vector<SparseCol> sparse;
  std::vector<DenseCol> dense;
  std::vector<LabelCol> labels;

  TableEncoder(const Schema& schema, const std::map<std::string, Vocabulary, std::less<>>& vocabs,
               const std::map<std::string, Normalizer, std::less<>>& norms, const ColumnTable& t) {
    for (const auto& f : schema.sparse) {
      SparseCol s{column_for(t, f.name, true, "sparse feature"), {}};
      const Vocabulary& v = vocabs.find(schema.table_owner(f.name))->second;
      const Dictionary& d = t.dictionary(s.col);
      s.lut.resize(d.size());
      for (uint32_t k = 0; k < d.size(); ++k) s.lut[k] = v.id(d.value(k));
      sparse.push_back(std::move(s));
    }
    for (const auto& f : schema.dense)
      dense.push_back({column_for(t, f.name, false, "dense feature"), norms.find(f.name)->second});
    for (const auto& l : schema.labels) {
      const int c = t.require(l.column);
      LabelCol lc{c, is_categorical(t.spec(c).role), {}};
      if (lc.mapped) {
        if (!l.is_mapped())
          throw Error(t.source() + ": column '" + l.column + "' holds raw label values but task '" + l.task +
                      "' has no label mapping");
        const Dictionary& d = t.dictionary(c);
        lc.lut.resize(d.size());
        for (uint32_t k = 0; k < d.size(); ++k) lc.lut[k] = l.is_positive(d.value(k)) ? 1.0f : 0.0f;
      }
      labels.push_back(std::move(lc));
    }
  }

  // Codes outside a dictionary (only in a damaged cache) read as OOV / 0, never out of bounds.
  static int64_t id_of(const std::vector<int64_t>& lut, uint32_t code) { return code < lut.size() ? lut[code] : 0; }

  // Rows in any order, written column by column in increasing row order: a memory-mapped cache
  // is then read in sweeps through each column rather than in jumps between them.
  void encode_rows(const ColumnTable& t, const int64_t* rows, int64_t n, int64_t* S, float* D, float* L) const {
    std::vector<std::pair<int64_t, int64_t>> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (rows[i] < 0 || rows[i] >= t.rows())
        throw Error(t.source() + ": row " + std::to_string(rows[i]) + " is out of range (" + std::to_string(t.rows()) +
                    " rows)");
      idx[static_cast<size_t>(i)] = {rows[i], i};
    }
    std::sort(idx.begin(), idx.end());
    const auto ns = sparse.size(), nd = dense.size(), nl = labels.size();
    for (size_t j = 0; j < ns; ++j)
      for (const auto& [r, i] : idx)
        S[static_cast<size_t>(i) * ns + j] = id_of(sparse[j].lut, t.code(r, sparse[j].col));
    for (size_t j = 0; j < nd; ++j)
      for (const auto& [r, i] : idx) D[static_cast<size_t>(i) * nd + j] = dense[j].norm.apply(t.value(r, dense[j].col));
    for (size_t j = 0; j < nl; ++j) {
      const LabelCol& lc = labels[j];
      for (const auto& [r, i] : idx) {
        float v;
        if (lc.mapped) {
          const uint32_t code = t.code(r, lc.col);
          v = code == Dictionary::kMissing ? kNoLabel : code < lc.lut.size() ? lc.lut[code] : 0.0f;
        } else {
          v = t.value(r, lc.col);
        }
        L[static_cast<size_t>(i) * nl + j] = v;
      }
    }
  }

  // A whole row group, column by column (transform's fast path).
  void encode_group(const ColumnTable& t, int64_t g, int64_t first, int64_t* S, float* D, float* L) const {
    const int64_t n = t.group_rows(g);
    const auto ns = sparse.size(), nd = dense.size(), nl = labels.size();
    for (size_t j = 0; j < ns; ++j) {
      const uint32_t* col = t.group_column(g, sparse[j].col);
      for (int64_t i = 0; i < n; ++i) S[static_cast<size_t>(first + i) * ns + j] = id_of(sparse[j].lut, col[i]);
    }
    for (size_t j = 0; j < nd; ++j) {
      const auto* col = reinterpret_cast<const float*>(t.group_column(g, dense[j].col));
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, col + i, 4);
        D[static_cast<size_t>(first + i) * nd + j] = dense[j].norm.apply(v);
      }
    }
    for (size_t j = 0; j < nl; ++j) {
      const uint32_t* col = t.group_column(g, labels[j].col);
      for (int64_t i = 0; i < n; ++i) {
        float v;
        if (labels[j].mapped) {
          v = col[i] == Dictionary::kMissing ? kNoLabel : col[i] < labels[j].lut.size() ? labels[j].lut[col[i]] : 0.0f;
        } else {
          std::memcpy(&v, col + i, 4);
        }
        L[static_cast<size_t>(first + i) * nl + j] = v;
      }
    }
  }
};

class EncodedView final : public BatchSource {
 public:
  EncodedView(Schema schema, std::shared_ptr<const ColumnTable> table, TableEncoder enc)
      : schema_(std::move(schema)), table_(std::move(table)), enc_(std::move(enc)) {}
  int64_t rows() const override { return table_->rows(); }
  const Schema& schema() const override { return schema_; }
  void gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const override {
    enc_.encode_rows(*table_, rows, n, sparse, dense, labels);
  }

 private:
  Schema schema_;
  std::shared_ptr<const ColumnTable> table_;
  TableEncoder enc_;
};

bool token_missing(std::string_view v, const CsvOptions& csv) {
  return v.empty() || (!csv.missing.empty() && v == csv.missing);
}

std::string_view trimmed(std::string_view v, bool trim) {
  if (!trim) return v;
  while (!v.empty() && detail::is_blank(v.front())) v.remove_prefix(1);
  while (!v.empty() && detail::is_blank(v.back())) v.remove_suffix(1);
  return v;
}

}  // namespace

void Preprocessor::fit(const ColumnTable& train) {
  fit_impl(train, [&](int c, Normalizer::Accumulator& acc) {
    for (int64_t g = 0; g < train.num_groups(); ++g)
      acc.add(reinterpret_cast<const float*>(train.group_column(g, c)), train.group_rows(g));
  });
}

void Preprocessor::fit(const CacheFile& train) {
  // The same sums in the same order as fit(ColumnTable): one row group at a time, per column.
  std::vector<uint32_t> buf;
  fit_impl(train.header(), [&](int c, Normalizer::Accumulator& acc) {
    for (int64_t at = 0; at < train.rows(); at += ColumnTable::kGroupRows) {
      const int64_t m = std::min(ColumnTable::kGroupRows, train.rows() - at);
      buf.resize(static_cast<size_t>(m));
      train.read(at, m, {c}, buf.data());
      acc.add(reinterpret_cast<const float*>(buf.data()), m);
    }
  });
}

void Preprocessor::fit_impl(const ColumnTable& train,
                            const std::function<void(int column, Normalizer::Accumulator& acc)>& dense_values) {
  schema_ = base_;
  vocabs_.clear();
  normalizers_.clear();
  fitted_ = false;
  // One vocabulary per embedding table: shared features pool their training counts.
  std::map<std::string, std::vector<std::string>> members;
  for (const auto& f : base_.sparse) members[base_.table_owner(f.name)].push_back(f.name);
  for (const auto& [owner, names] : members) {
    Dictionary pooled;
    for (const auto& name : names) {
      const int c = column_for(train, name, true, "sparse feature");
      const Dictionary& d = train.dictionary(c);
      for (uint32_t k = 0; k < d.size(); ++k) pooled.add_count(pooled.intern(d.value(k)), d.count(k));
    }
    std::vector<std::pair<std::string, int64_t>> counts;
    counts.reserve(pooled.size());
    for (uint32_t k = 0; k < pooled.size(); ++k) counts.emplace_back(pooled.value(k), pooled.count(k));
    const int64_t cap = base_.find_sparse(owner)->vocab_size;
    vocabs_.emplace(owner, Vocabulary::fit(counts, options_.min_freq, cap));
  }
  for (auto& f : schema_.sparse) f.vocab_size = vocabs_.find(schema_.table_owner(f.name))->second.size();
  for (const auto& f : base_.dense) {
    const int c = column_for(train, f.name, false, "dense feature");
    Normalizer::Accumulator acc;
    dense_values(c, acc);
    normalizers_.emplace(f.name, acc.finish(options_.normalization, options_.fill));
  }
  for (const auto& l : base_.labels) train.require(l.column);
  fitted_ = true;
}

const Vocabulary& Preprocessor::vocabulary(std::string_view feature) const {
  require_fitted("vocabulary");
  if (!schema_.find_sparse(feature)) throw Error("Preprocessor: no sparse feature '" + std::string(feature) + "'");
  return vocabs_.find(schema_.table_owner(feature))->second;
}

const Normalizer& Preprocessor::normalizer(std::string_view dense_feature) const {
  require_fitted("normalizer");
  auto it = normalizers_.find(dense_feature);
  if (it == normalizers_.end()) throw Error("Preprocessor: no dense feature '" + std::string(dense_feature) + "'");
  return it->second;
}

Dataset Preprocessor::transform(const ColumnTable& table) const {
  require_fitted("transform");
  const TableEncoder enc(schema_, vocabs_, normalizers_, table);
  Dataset ds(schema_, table.rows());
  const int64_t ng = table.num_groups();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < ng; ++g)
    enc.encode_group(table, g, g * ColumnTable::kGroupRows, ds.sparse_data(), ds.dense_data(), ds.label_data());
  return ds;
}

namespace {

// Rows read from a cache file on demand (Preprocessor::stream): only the columns the schema uses,
// at most one row group at a time, encoded by the same TableEncoder as transform().
class CacheSource final : public BatchSource {
 public:
  CacheSource(const Schema& schema, std::shared_ptr<const CacheFile> file,
              const std::map<std::string, Vocabulary, std::less<>>& vocabs,
              const std::map<std::string, Normalizer, std::less<>>& norms)
      : schema_(schema), file_(std::move(file)) {
    const ColumnTable& h = file_->header();
    std::vector<std::string> names;
    for (const auto& f : schema_.sparse) names.push_back(f.name);
    for (const auto& f : schema_.dense) names.push_back(f.name);
    for (const auto& l : schema_.labels) names.push_back(l.column);
    for (const auto& n : names) {
      const int c = h.require(n);
      if (std::find(cols_.begin(), cols_.end(), c) == cols_.end()) cols_.push_back(c);
    }
    // The encoder's lookup tables come from the dictionaries (copied for a moment here); the
    // chunks it encodes later need none (empty ones keep the table well-formed).
    std::vector<std::shared_ptr<const Dictionary>> dicts;
    for (const int c : cols_) {
      specs_.push_back(h.spec(c));
      dicts.push_back(std::make_shared<const Dictionary>(h.dictionary(c)));
    }
    LoadReport rep;
    rep.source = file_->path();
    const ColumnTable sub(specs_, std::move(dicts), {}, {}, nullptr, rep);
    enc_ = std::make_unique<TableEncoder>(schema_, vocabs, norms, sub);
    dicts_.assign(cols_.size(), std::make_shared<const Dictionary>());
  }
  int64_t rows() const override { return file_->rows(); }
  const Schema& schema() const override { return schema_; }

  void copy_range(int64_t begin, int64_t n, int64_t* S, float* D, float* L) const override {
    RECHUB_CHECK(begin >= 0 && n >= 0 && begin + n <= rows(),
                 file_->path() << ": rows [" << begin << ", " << begin + n << ") out of range (" << rows() << " rows)");
    const auto ns = schema_.sparse.size(), nd = schema_.dense.size(), nl = schema_.labels.size();
    std::vector<uint32_t> buf;
    for (int64_t at = begin; at < begin + n;) {
      // At most 8192 rows at a time (inside one row group): the read buffer stays small.
      const int64_t next_group = (at / ColumnTable::kGroupRows + 1) * ColumnTable::kGroupRows;
      const int64_t m = std::min({begin + n, next_group, at + 8192}) - at;
      const auto o = static_cast<size_t>(at - begin);
      encode(at, m, buf, S + o * ns, D + o * nd, L + o * nl);
      at += m;
    }
  }

  // Rows in any order: runs of rows in one row group are read as one span, encoded, and the
  // asked-for rows picked out (a source for ordered or block-shuffled reading, not random rows).
  void gather(const int64_t* rows, int64_t n, int64_t* S, float* D, float* L) const override {
    std::vector<std::pair<int64_t, int64_t>> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      RECHUB_CHECK(rows[i] >= 0 && rows[i] < this->rows(),
                   file_->path() << ": row " << rows[i] << " is out of range (" << this->rows() << " rows)");
      idx[static_cast<size_t>(i)] = {rows[i], i};
    }
    std::sort(idx.begin(), idx.end());
    const auto ns = schema_.sparse.size(), nd = schema_.dense.size(), nl = schema_.labels.size();
    std::vector<uint32_t> buf;
    std::vector<int64_t> s;
    std::vector<float> d, l;
    for (size_t a = 0; a < idx.size();) {
      const int64_t g = idx[a].first / ColumnTable::kGroupRows;
      size_t b = a;
      while (b < idx.size() && idx[b].first / ColumnTable::kGroupRows == g) ++b;
      const int64_t lo = idx[a].first, m = idx[b - 1].first - lo + 1;
      s.resize(static_cast<size_t>(m) * ns);
      d.resize(static_cast<size_t>(m) * nd);
      l.resize(static_cast<size_t>(m) * nl);
      encode(lo, m, buf, s.data(), d.data(), l.data());
      for (size_t k = a; k < b; ++k) {
        const auto r = static_cast<size_t>(idx[k].first - lo), i = static_cast<size_t>(idx[k].second);
        std::copy_n(s.data() + r * ns, ns, S + i * ns);
        std::copy_n(d.data() + r * nd, nd, D + i * nd);
        std::copy_n(l.data() + r * nl, nl, L + i * nl);
      }
      a = b;
    }
  }

  void will_need(int64_t begin, int64_t n) const override { file_->will_need(begin, n); }

 private:
  // Rows [at, at + m) inside one row group.
  void encode(int64_t at, int64_t m, std::vector<uint32_t>& buf, int64_t* S, float* D, float* L) const {
    buf.resize(static_cast<size_t>(m) * cols_.size());
    file_->read(at, m, cols_, buf.data());
    const ColumnTable chunk(specs_, dicts_, {buf.data()}, {m}, nullptr, {});
    enc_->encode_group(chunk, 0, 0, S, D, L);
  }

  Schema schema_;
  std::shared_ptr<const CacheFile> file_;
  std::vector<int> cols_;  // cache columns read, in the order of specs_ / dicts_
  std::vector<ColumnSpec> specs_;
  std::vector<std::shared_ptr<const Dictionary>> dicts_;
  std::unique_ptr<TableEncoder> enc_;
};

}  // namespace

std::shared_ptr<const BatchSource> Preprocessor::stream(std::shared_ptr<const CacheFile> file) const {
  require_fitted("stream");
  if (!file) throw Error("Preprocessor::stream: no cache file");
  return std::make_shared<CacheSource>(schema_, std::move(file), vocabs_, normalizers_);
}

std::shared_ptr<const BatchSource> Preprocessor::view(std::shared_ptr<const ColumnTable> table) const {
  require_fitted("view");
  if (!table) throw Error("Preprocessor::view: no table");
  TableEncoder enc(schema_, vocabs_, normalizers_, *table);
  return std::make_shared<EncodedView>(schema_, std::move(table), std::move(enc));
}

Batch Preprocessor::encode_rows(const std::vector<std::vector<std::string>>& rows,
                                const std::vector<std::string>& header, const std::string& file,
                                const int64_t* lines) const {
  require_fitted("encode_rows");
  auto index_of = [&](const std::string& name) -> int64_t {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int64_t>(i);
    return -1;
  };
  auto need = [&](const std::string& name, const char* what) -> size_t {
    const int64_t i = index_of(name);
    if (i < 0)
      throw Error((file.empty() ? std::string("encode_rows") : file + ":1") + ": the header has no column '" + name +
                  "' (" + what + ")");
    return static_cast<size_t>(i);
  };
  std::vector<size_t> sc, dc, lc;
  for (const auto& f : schema_.sparse) sc.push_back(need(f.name, "sparse feature"));
  for (const auto& f : schema_.dense) dc.push_back(need(f.name, "dense feature"));
  bool with_labels = !schema_.labels.empty();
  for (const auto& l : schema_.labels) with_labels = with_labels && index_of(l.column) >= 0;
  if (with_labels)
    for (const auto& l : schema_.labels) lc.push_back(static_cast<size_t>(index_of(l.column)));

  const auto n = static_cast<int64_t>(rows.size());
  const auto ns = sc.size(), nd = dc.size(), nt = lc.size();
  Batch b;
  b.sparse = empty({n, static_cast<int64_t>(ns)}, {.dtype = DType::i64});
  b.dense = empty({n, static_cast<int64_t>(nd)}, {.dtype = DType::f32});
  b.labels = empty({n, static_cast<int64_t>(nt)}, {.dtype = DType::f32});
  auto* S = static_cast<int64_t*>(b.sparse.raw_data());
  auto* D = static_cast<float*>(b.dense.raw_data());
  auto* L = static_cast<float*>(b.labels.raw_data());
  std::vector<const Vocabulary*> vocab;
  for (const auto& f : schema_.sparse) vocab.push_back(&vocabs_.find(schema_.table_owner(f.name))->second);
  for (int64_t r = 0; r < n; ++r) {
    const auto& row = rows[static_cast<size_t>(r)];
    const auto ru = static_cast<size_t>(r);
    const bool located = !file.empty() && lines != nullptr;
    const std::string at =
        located ? file + ":" + std::to_string(lines[r]) + ":" : "encode_rows: row " + std::to_string(r) + ",";
    if (row.size() != header.size())
      throw Error((located ? at + " the row" : "encode_rows: row " + std::to_string(r)) + " has " +
                  std::to_string(row.size()) + " fields, the header " + std::to_string(header.size()));
    auto where = [&](const std::string& col, std::string_view v) {
      return at + " column '" + col + "' = '" + detail::display_value(v) + "': ";
    };
    for (size_t j = 0; j < ns; ++j) {
      const std::string_view v = trimmed(row[sc[j]], csv_.trim);
      S[ru * ns + j] = csv_.sparse_missing_as_oov && token_missing(v, csv_) ? 0 : vocab[j]->id(v);
    }
    for (size_t j = 0; j < nd; ++j) {
      const std::string_view v = trimmed(row[dc[j]], csv_.trim);
      float x = std::numeric_limits<float>::quiet_NaN();
      if (!token_missing(v, csv_) && detail::parse_float(v, x) != detail::NumStatus::ok)
        throw Error(where(schema_.dense[j].name, v) + "not a finite float32 number");
      D[ru * nd + j] = normalizers_.find(schema_.dense[j].name)->second.apply(x);
    }
    for (size_t t = 0; t < nt; ++t) {
      const Label& l = schema_.labels[t];
      const std::string_view v = trimmed(row[lc[t]], csv_.trim);
      float y = 0;
      if (l.missing_ok && (token_missing(v, csv_) || l.is_missing_value(v))) {
        y = std::numeric_limits<float>::quiet_NaN();
      } else if (l.is_mapped()) {
        y = l.is_positive(v) ? 1.0f : 0.0f;
      } else if (detail::parse_float(v, y) != detail::NumStatus::ok ||
                 (l.type == TaskType::binary && y != 0.0f && y != 1.0f)) {
        throw Error(where(l.column, v) +
                    (l.type == TaskType::binary ? "a binary label must be 0 or 1" : "not a finite float32 number"));
      }
      L[ru * nt + t] = y;
    }
  }
  b.first_row = 0;
  return b;
}

json Preprocessor::to_json() const {
  require_fitted("to_json");
  json j;
  j["format"] = "rechub-preprocessor";
  j["version"] = 1;
  j["schema"] = schema_to_json(schema_);
  j["base_schema"] = schema_to_json(base_);
  j["options"] = preprocess_options_to_json(options_);
  j["csv"] = csv_options_to_json(csv_);
  j["vocabularies"] = json::object();
  for (const auto& [owner, v] : vocabs_) j["vocabularies"][owner] = v.to_json();
  j["normalizers"] = json::object();
  for (const auto& [name, z] : normalizers_) j["normalizers"][name] = z.to_json();
  return j;
}

Preprocessor Preprocessor::from_json(const json& j, const std::string& origin) {
  if (!j.is_object() || j.value("format", "") != "rechub-preprocessor")
    throw Error(origin + ": not a rechub preprocessor (\"format\" must be \"rechub-preprocessor\")");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != 1)
    throw Error(origin + ": unsupported preprocessor version (this build reads version 1)");
  for (const char* k : {"schema", "base_schema", "options", "csv", "vocabularies", "normalizers"})
    if (!j.contains(k)) throw Error(origin + ": the preprocessor has no \"" + k + "\"");
  Preprocessor p(schema_from_json(j["base_schema"], origin), preprocess_options_from_json(j["options"], origin),
                 csv_options_from_json(j["csv"], origin));
  p.schema_ = schema_from_json(j["schema"], origin);
  if (!j["vocabularies"].is_object() || !j["normalizers"].is_object())
    throw Error(origin + ": \"vocabularies\" and \"normalizers\" must be objects");
  for (const auto& f : p.schema_.sparse) {
    const std::string owner = p.schema_.table_owner(f.name);
    if (p.vocabs_.count(owner)) continue;
    if (!j["vocabularies"].contains(owner)) throw Error(origin + ": no vocabulary for sparse feature '" + owner + "'");
    Vocabulary v = Vocabulary::from_json(j["vocabularies"][owner], origin + ": vocabulary '" + owner + "'");
    p.vocabs_.emplace(owner, std::move(v));
  }
  for (const auto& f : p.schema_.sparse) {
    const int64_t size = p.vocabs_.find(p.schema_.table_owner(f.name))->second.size();
    if (f.vocab_size != size)
      throw Error(origin + ": sparse feature '" + f.name + "' has vocab_size " + std::to_string(f.vocab_size) +
                  " but its vocabulary holds " + std::to_string(size) + " ids");
  }
  for (const auto& f : p.schema_.dense) {
    if (!j["normalizers"].contains(f.name)) throw Error(origin + ": no normaliser for dense feature '" + f.name + "'");
    p.normalizers_.emplace(f.name,
                           Normalizer::from_json(j["normalizers"][f.name], origin + ": normaliser '" + f.name + "'"));
  }
  p.fitted_ = true;
  return p;
}

void Preprocessor::save(const std::string& path) const {
  const std::string text = to_json().dump(1);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(tmp + ": cannot open for writing");
    out << text;
    out.flush();
    if (!out) throw Error(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot rename " + tmp + " to " + path);
}

Preprocessor Preprocessor::load(const std::string& path) { return from_json(read_json_file(path), path); }

}  // namespace rechub::data
