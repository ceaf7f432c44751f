// The column parser: windows of the input split at newlines, parsed in parallel into column
// buffers with part-local dictionaries, merged in order into row groups for a sink (memory or
// the binary cache).
#include <cstring>
#include <exception>
#include <limits>
#include <thread>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/csv_parse.h"
#include "rechub/mtl/data/csv_tokenizer.h"

namespace rechub::data {

namespace detail {

namespace {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

struct ParsePlan {
  std::string name;
  std::vector<std::string> file_columns;
  std::vector<int> target;  // file column -> table column (-1: not read)
  std::vector<ColumnSpec> specs;
  const CsvOptions* opts = nullptr;
};

// Parses one part of a window into column vectors with part-local dictionaries.
class PartParser {
 public:
  explicit PartParser(const ParsePlan& plan)
      : plan_(plan),
        opts_(*plan.opts),
        nfile_(static_cast<int>(plan.file_columns.size())),
        cols_(plan.specs.size()),
        dicts_(plan.specs.size()) {
    for (size_t c = 0; c < plan.specs.size(); ++c) {
      roles_.push_back(plan.specs[c].role);
      if (is_categorical(plan.specs[c].role)) categorical_.push_back(c);
    }
  }

  // Ready for a new part; buffers and dictionaries keep their memory from the last one.
  void reset(size_t expected_rows) {
    rows_ = 0;
    skipped_ = 0;
    problems_.clear();
    examples_.clear();
    for (auto& d : dicts_) d.clear();
    grow(expected_rows);
  }

  std::string& scratch() { return scratch_; }
  void begin_record(int64_t line) {
    line_ = line;
    rec_problems_.clear();
    if (rows_ == capacity_) grow(capacity_ * 2 + 1024);
  }
  // Cells go straight to row rows_ of the column buffers; a bad row is never counted, so the
  // next row overwrites it.
  void field(int idx, std::string_view v, bool /*quoted*/) {
    if (idx >= nfile_) return;
    const int t = plan_.target[static_cast<size_t>(idx)];
    if (t < 0) return;
    cols_[static_cast<size_t>(t)][static_cast<size_t>(rows_)] = convert(t, v);
  }
  void tokenizer_problem(int idx, std::string msg) { rec_problems_.push_back(where(idx) + ": " + msg); }
  bool end_record(int nfields) {
    if (nfields != nfile_) field_count_problem(nfields);
    if (rec_problems_.empty()) {
      commit();
      return true;
    }
    if (opts_.skip_bad_rows) {
      ++skipped_;
      if (static_cast<int64_t>(examples_.size()) < opts_.max_errors) examples_.push_back({line_, rec_problems_[0]});
      return true;
    }
    for (auto& m : rec_problems_) problems_.push_back({line_, std::move(m)});
    return static_cast<int64_t>(problems_.size()) < opts_.max_errors;
  }

  int64_t rows() const { return rows_; }
  std::vector<BigVector<uint32_t>>& columns() { return cols_; }
  std::vector<Dictionary>& dicts() { return dicts_; }
  std::vector<LineProblem>& problems() { return problems_; }
  std::vector<LineProblem>& examples() { return examples_; }
  int64_t skipped() const { return skipped_; }

 private:
  std::string where(int idx) const {
    if (idx < nfile_) return "column '" + plan_.file_columns[static_cast<size_t>(idx)] + "'";
    return "field " + std::to_string(idx + 1);
  }
  bool is_missing(std::string_view v) const { return v.empty() || (!opts_.missing.empty() && v == opts_.missing); }
  void problem(int t, std::string_view v, const char* what) {
    rec_problems_.push_back("column '" + plan_.specs[static_cast<size_t>(t)].name + "' = '" + display_value(v) +
                            "': " + what);
  }
  // A label cell that means "no label" for a task whose labels may be missing.
  bool label_missing(int t, std::string_view v) const {
    const ColumnSpec& s = plan_.specs[static_cast<size_t>(t)];
    return s.missing_ok && (is_missing(v) || (!s.missing_value.empty() && v == s.missing_value));
  }
  void missing_problem(int t, const char* what) {
    rec_problems_.push_back("column '" + plan_.specs[static_cast<size_t>(t)].name + "' is missing: " + what);
  }
  bool number(int t, std::string_view v, float& f) {
    switch (parse_float(v, f)) {
      case NumStatus::ok:
        return true;
      case NumStatus::not_number:
        problem(t, v, "not a number");
        return false;
      case NumStatus::not_finite:
        problem(t, v, "not a finite number (NaN and infinity are refused)");
        return false;
      case NumStatus::out_of_range:
        problem(t, v, "out of the float32 range");
        return false;
    }
    return false;
  }

  uint32_t convert(int t, std::string_view v) {
    const auto ti = static_cast<size_t>(t);
    switch (roles_[ti]) {
      case ColumnRole::sparse:
        if (opts_.sparse_missing_as_oov && is_missing(v)) return Dictionary::kMissing;
        return dicts_[ti].intern(v);
      case ColumnRole::mapped_label:
        if (label_missing(t, v)) return Dictionary::kMissing;
        if (is_missing(v)) {
          missing_problem(t, "a label cannot be missing");
          return 0;
        }
        return dicts_[ti].intern(v);
      case ColumnRole::dense: {
        if (is_missing(v)) {
          if (opts_.allow_missing_dense) return float_bits(std::numeric_limits<float>::quiet_NaN());
          missing_problem(t, "a dense value is required (set CsvOptions::allow_missing_dense to fill missing values)");
          return 0;
        }
        float f = 0;
        number(t, v, f);
        return float_bits(f);
      }
      case ColumnRole::binary_label: {
        if (v.size() == 1 && (v[0] == '0' || v[0] == '1')) return float_bits(v[0] == '1' ? 1.0f : 0.0f);
        if (label_missing(t, v)) return float_bits(std::numeric_limits<float>::quiet_NaN());
        if (is_missing(v)) {
          missing_problem(t, "a label cannot be missing");
          return 0;
        }
        float f = 0;
        if (parse_float(v, f) != NumStatus::ok || (f != 0.0f && f != 1.0f)) {
          problem(t, v, "a binary label must be 0 or 1");
          return 0;
        }
        return float_bits(f);
      }
      case ColumnRole::regression_label: {
        if (label_missing(t, v)) return float_bits(std::numeric_limits<float>::quiet_NaN());
        if (is_missing(v)) {
          missing_problem(t, "a label cannot be missing");
          return 0;
        }
        float f = 0;
        number(t, v, f);
        return float_bits(f);
      }
    }
    return 0;
  }

  void field_count_problem(int nfields) {
    std::string m = "expected " + std::to_string(nfile_) + " fields, found " + std::to_string(nfields);
    if (nfields < nfile_)
      m += ": column '" + plan_.file_columns[static_cast<size_t>(nfields)] + "' is missing";
    else
      m += ": " + std::to_string(nfields - nfile_) + " extra field(s) after column '" + plan_.file_columns.back() + "'";
    rec_problems_.push_back(std::move(m));
  }

  void commit() {
    for (size_t c : categorical_) {
      const uint32_t code = cols_[c][static_cast<size_t>(rows_)];
      if (code != Dictionary::kMissing) dicts_[c].add_count(code);
    }
    ++rows_;
  }

  void grow(size_t rows) {
    if (static_cast<int64_t>(rows) <= capacity_) return;
    for (auto& c : cols_) c.resize(rows);
    capacity_ = static_cast<int64_t>(rows);
  }

  const ParsePlan& plan_;
  const CsvOptions& opts_;
  const int nfile_;
  std::vector<ColumnRole> roles_;
  std::vector<size_t> categorical_;
  std::vector<BigVector<uint32_t>> cols_;  // capacity_ cells each, rows_ of them in use
  std::vector<Dictionary> dicts_;
  int64_t capacity_ = 0;
  std::vector<std::string> rec_problems_;
  std::vector<LineProblem> problems_;
  std::vector<LineProblem> examples_;
  std::string scratch_;
  int64_t line_ = 0;
  int64_t rows_ = 0;
  int64_t skipped_ = 0;
};

// Collects records as strings (the header, raw rows).
class GroupBuilder {
 public:
  GroupBuilder(size_t ncols, GroupSink& sink) : ncols_(ncols), sink_(sink) {}
  void append(const std::vector<BigVector<uint32_t>>& cols, const std::vector<std::vector<uint32_t>>& maps, int64_t n) {
    constexpr int64_t G = ColumnTable::kGroupRows;
    int64_t off = 0;
    while (off < n) {
      const int64_t take = std::min(G - fill_, n - off);
      reserve(fill_ + take);
      for (size_t c = 0; c < ncols_; ++c) {
        uint32_t* dst = block_.data() + c * static_cast<size_t>(cap_) + static_cast<size_t>(fill_);
        const uint32_t* src = cols[c].data() + off;
        if (maps[c].empty()) {
          std::memcpy(dst, src, static_cast<size_t>(take) * 4);
        } else {
          const uint32_t* m = maps[c].data();
          for (int64_t i = 0; i < take; ++i) dst[i] = src[i] == Dictionary::kMissing ? Dictionary::kMissing : m[src[i]];
        }
      }
      fill_ += take;
      off += take;
      if (fill_ == G) flush();
    }
  }
  void finish() {
    if (fill_ > 0) flush();
  }
  int64_t rows() const { return rows_; }

 private:
  void reserve(int64_t rows) {
    if (rows <= cap_) return;
    int64_t cap = cap_ == 0 ? 1024 : cap_;
    while (cap < rows) cap *= 2;
    cap = std::min(cap, ColumnTable::kGroupRows);
    BigVector<uint32_t> grown(ncols_ * static_cast<size_t>(cap));
    for (size_t c = 0; c < ncols_ && fill_ > 0; ++c)
      std::memcpy(grown.data() + c * static_cast<size_t>(cap), block_.data() + c * static_cast<size_t>(cap_),
                  static_cast<size_t>(fill_) * 4);
    block_.swap(grown);
    cap_ = cap;
  }
  void flush() {
    const int64_t n = fill_;
    rows_ += n;
    fill_ = 0;
    if (n < cap_) {  // the last, partial group: close the gaps (column stride n) and copy it out
      for (size_t c = 1; c < ncols_; ++c)
        std::memmove(block_.data() + c * static_cast<size_t>(n), block_.data() + c * static_cast<size_t>(cap_),
                     static_cast<size_t>(n) * 4);
      sink_.add_group(block_.data(), n);
      block_.clear();
      cap_ = 0;
      return;
    }
    // A full group: an in-memory sink keeps the block itself, a cache writer leaves it for reuse.
    sink_.add_group_owned(std::move(block_), n);
    if (block_.size() != ncols_ * static_cast<size_t>(cap_)) {
      block_ = BigVector<uint32_t>();
      cap_ = 0;
      reserve(ColumnTable::kGroupRows);
    }
  }

  size_t ncols_;
  GroupSink& sink_;
  BigVector<uint32_t> block_;
  int64_t cap_ = 0;
  int64_t fill_ = 0;
  int64_t rows_ = 0;
};

}  // namespace

void MemorySink::add_group(const uint32_t* cells, int64_t rows) {
  blocks_->blocks.emplace_back(cells, cells + static_cast<size_t>(rows) * ncols_);
  blocks_->rows.push_back(rows);
}

void MemorySink::add_group_owned(BigVector<uint32_t>&& cells, int64_t rows) {
  if (cells.size() != static_cast<size_t>(rows) * ncols_) return add_group(cells.data(), rows);
  blocks_->blocks.push_back(std::move(cells));
  blocks_->rows.push_back(rows);
}

ParseOutput parse_csv_stream(InputStream& in, const std::string& name, const std::vector<ColumnSpec>& specs,
                             const std::vector<std::string>& columns, const CsvOptions& opts, GroupSink& sink) {
  validate_csv_options(opts);
  const TokenizerConfig cfg{opts.separator, opts.quote, opts.trim};
  int64_t line = 0;

  ParsePlan plan;
  plan.name = name;
  plan.opts = &opts;
  plan.specs = specs;
  plan.file_columns = read_header(in, name, opts, cfg, columns, line);
  const std::string at_header = name + ":" + (opts.header ? std::to_string(line > 0 ? line : 1) : std::string("1"));
  plan.target.assign(plan.file_columns.size(), -1);
  std::vector<std::string> absent;
  for (size_t t = 0; t < specs.size(); ++t) {
    int found = -1;
    for (size_t i = 0; i < plan.file_columns.size(); ++i) {
      if (plan.file_columns[i] != specs[t].name) continue;
      if (found >= 0)
        throw Error(at_header + ": the header names column '" + specs[t].name + "' twice (columns " +
                    std::to_string(found + 1) + " and " + std::to_string(i + 1) + ")");
      found = static_cast<int>(i);
    }
    if (found < 0) {
      absent.push_back("'" + specs[t].name + "' (" + column_role_name(specs[t].role) + ")");
      continue;
    }
    if (plan.target[static_cast<size_t>(found)] >= 0)
      throw Error(at_header + ": column '" + specs[t].name + "' is read twice by the schema");
    plan.target[static_cast<size_t>(found)] = static_cast<int>(t);
  }
  if (!absent.empty())
    throw Error(at_header + ": column" + (absent.size() > 1 ? "s " : " ") + join_names(absent) +
                (absent.size() > 1 ? " are" : " is") + " not in the " + (opts.header ? "header" : "Schema::columns") +
                " (it has: " + join_names(plan.file_columns) + ")");

  const size_t ncols = specs.size();
  ParseOutput out;
  for (size_t c = 0; c < ncols; ++c) out.dicts.push_back(std::make_shared<Dictionary>());
  GroupBuilder groups(ncols, sink);
  std::vector<std::string> problems;
  bool stopped = false;
  const int threads = opts.threads < 1 ? 1 : opts.threads;
  std::vector<std::unique_ptr<PartParser>> pp;  // one per part, reused window after window
  size_t want = opts.window_bytes < 1 ? 1 : opts.window_bytes;

  for (;;) {
    const InputWindow w = in.window(want);
    if (w.bytes.empty()) break;
    const char* b = w.bytes.data();
    const char* e = b + w.bytes.size();
    const bool quoted = cfg.quote != '\0' && std::memchr(b, cfg.quote, w.bytes.size()) != nullptr;
    std::vector<std::pair<const char*, const char*>> parts;
    if (!quoted) {
      // Without quotes every newline ends a record: cut at the last one, split at newlines.
      const char* cut = e;
      if (!w.eof) {
        const auto* nl = static_cast<const char*>(::memrchr(b, '\n', w.bytes.size()));
        if (!nl) {
          want *= 2;
          continue;
        }
        cut = nl + 1;
      }
      const int np = (threads > 1 && cut - b > (1 << 20)) ? threads : 1;
      const char* s = b;
      for (int k = 1; k < np; ++k) {
        const char* mid = b + (cut - b) / np * k;
        if (mid < s) mid = s;
        const auto* nl = static_cast<const char*>(std::memchr(mid, '\n', static_cast<size_t>(cut - mid)));
        if (!nl || nl + 1 >= cut) break;
        parts.push_back({s, nl + 1});
        s = nl + 1;
      }
      parts.push_back({s, cut});
    } else {
      parts.push_back({b, e});
    }

    const size_t np = parts.size();
    while (pp.size() < np) pp.push_back(std::make_unique<PartParser>(plan));
    std::vector<const char*> ends(np);
    std::vector<int64_t> part_lines(np, 0);
    std::vector<std::exception_ptr> errors(np);
    auto run = [&](size_t k) {
      try {
        const size_t bytes = static_cast<size_t>(parts[k].second - parts[k].first);
        pp[k]->reset(bytes / 40 + 16);
        const bool eof = k + 1 == np && w.eof;
        int64_t lines = 0;  // local: neighbouring counters of two threads would share a cache line
        const char* end = tokenize_any(parts[k].first, parts[k].second, eof, cfg, *pp[k], lines);
        part_lines[k] = lines;
        ends[k] = end;
      } catch (...) {
        errors[k] = std::current_exception();
      }
    };
    std::vector<std::thread> workers;
    for (size_t k = 1; k < np; ++k) workers.emplace_back(run, k);
    run(0);
    for (auto& t : workers) t.join();
    for (auto& err : errors)
      if (err) std::rethrow_exception(err);

    size_t consumed = quoted ? static_cast<size_t>(ends[0] - b) : static_cast<size_t>(parts.back().second - b);
    if (quoted && consumed == 0 && !w.eof && pp[0]->problems().empty()) {
      want *= 2;  // one record longer than the window
      continue;
    }

    for (size_t k = 0; k < np; ++k) {
      PartParser& P = *pp[k];
      for (auto& p : P.problems()) {
        if (static_cast<int64_t>(problems.size()) >= opts.max_errors) {
          stopped = true;
          break;
        }
        problems.push_back(name + ":" + std::to_string(line + p.line + 1) + ": " + p.text);
      }
      out.skipped_rows += P.skipped();
      for (auto& p : P.examples())
        if (static_cast<int64_t>(out.skipped_examples.size()) < opts.max_errors)
          out.skipped_examples.push_back(name + ":" + std::to_string(line + p.line + 1) + ": " + p.text);
      if (problems.empty()) {
        std::vector<std::vector<uint32_t>> maps(ncols);
        for (size_t c = 0; c < ncols; ++c) {
          if (!is_categorical(specs[c].role)) continue;
          Dictionary& local = P.dicts()[c];
          if (out.dicts[c]->empty())
            std::swap(*out.dicts[c], local);  // the first part's codes are the global codes
          else
            maps[c] = out.dicts[c]->merge(local);
        }
        groups.append(P.columns(), maps, P.rows());
      }
      line += part_lines[k];
      if (ends[k] != parts[k].second && !quoted) stopped = true;  // a part stopped at max_errors
    }
    if (!problems.empty() && static_cast<int64_t>(problems.size()) >= opts.max_errors) {
      stopped = stopped || !(w.eof && consumed == w.bytes.size());
      break;
    }
    in.consume(consumed);
    if (w.eof && consumed == w.bytes.size()) break;
  }
  groups.finish();

  if (!problems.empty()) throw Error(format_problems(problems, stopped, opts.max_errors));
  out.rows = groups.rows();
  if (out.rows == 0) {
    if (out.skipped_rows > 0)
      throw Error(name + ": every data row was bad (" + std::to_string(out.skipped_rows) +
                  " skipped); the first: " + out.skipped_examples.front());
    throw Error(name + ": no data rows" + (opts.header ? " after the header" : ""));
  }
  return out;
}

ColumnTable table_from_parse(const std::string& name, const std::vector<ColumnSpec>& specs, ParseOutput out,
                             std::shared_ptr<GroupBlocks> blocks) {
  LoadReport rep;
  rep.source = name;
  rep.skipped_rows = out.skipped_rows;
  rep.skipped_examples = std::move(out.skipped_examples);
  std::vector<std::shared_ptr<const Dictionary>> dicts(out.dicts.begin(), out.dicts.end());
  return make_table(specs, std::move(dicts), std::move(blocks), std::move(rep));
}

}  // namespace detail

ColumnTable read_csv(const std::string& path, const Schema& schema, const CsvOptions& options) {
  validate_schema(schema);
  const auto specs = column_specs(schema);
  auto in = open_input(path);
  detail::MemorySink sink(specs.size());
  auto out = detail::parse_csv_stream(*in, path, specs, schema.columns, options, sink);
  return detail::table_from_parse(path, specs, std::move(out), sink.blocks());
}

ColumnTable read_csv_bytes(std::string_view bytes, const std::string& name, const Schema& schema,
                           const CsvOptions& options) {
  validate_schema(schema);
  const auto specs = column_specs(schema);
  auto in = memory_input(bytes);
  detail::MemorySink sink(specs.size());
  auto out = detail::parse_csv_stream(*in, name, specs, schema.columns, options, sink);
  return detail::table_from_parse(name, specs, std::move(out), sink.blocks());
}

}  // namespace rechub::data
