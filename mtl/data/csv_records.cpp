// CSV records as strings (header, raw rows for inference and prediction), the CSV options' JSON
// form and checks, and the message helpers shared with the column parser (csv_reader.cpp).
#include <cstring>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/csv_parse.h"
#include "rechub/mtl/data/csv_tokenizer.h"

namespace rechub::data {

namespace detail {

std::string display_value(std::string_view v) {
  std::string out;
  size_t n = 0;
  for (char ch : v) {
    if (n++ >= 40) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

namespace {

class RecordCollector {
 public:
  explicit RecordCollector(int64_t max_records) : max_(max_records) {}
  std::string& scratch() { return scratch_; }
  void begin_record(int64_t line) {
    cur_.clear();
    cur_problems_.clear();
    line_ = line;
  }
  void field(int, std::string_view v, bool) { cur_.emplace_back(v); }
  void tokenizer_problem(int idx, std::string msg) {
    cur_problems_.push_back({line_, "field " + std::to_string(idx + 1) + ": " + msg});
  }
  bool end_record(int) {
    rows.push_back(std::move(cur_));
    cur_.clear();
    lines.push_back(line_);
    for (auto& p : cur_problems_) problems.push_back(std::move(p));
    return max_ < 0 || static_cast<int64_t>(rows.size()) < max_;
  }

  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> lines;
  std::vector<LineProblem> problems;

 private:
  int64_t max_;
  std::vector<std::string> cur_;
  std::vector<LineProblem> cur_problems_;
  std::string scratch_;
  int64_t line_ = 0;
};

// Fills fixed-size row groups from parsed parts and hands full ones to the sink. The block grows
// with the rows it holds (column stride = its capacity), so small files stay small.

}  // namespace

std::string join_names(const std::vector<std::string>& names, size_t limit) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

std::string format_problems(const std::vector<std::string>& problems, bool stopped, int64_t max_errors) {
  std::string msg;
  for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "\n" : "") + problems[i];
  if (problems.size() > 1 || stopped) {
    msg += "\n(" + std::to_string(problems.size()) + " problem" + (problems.size() > 1 ? "s" : "");
    if (stopped) msg += "; stopped after CsvOptions::max_errors = " + std::to_string(max_errors);
    msg += ")";
  }
  return msg;
}

// The header (or Schema::columns for header-less files), with the line count it used.
std::vector<std::string> read_header(InputStream& in, const std::string& name, const CsvOptions& opts,
                                     const TokenizerConfig& cfg, const std::vector<std::string>& columns,
                                     int64_t& line) {
  line = 0;
  size_t want = size_t(1) << 16;
  for (;;) {
    const InputWindow w = in.window(want);
    const std::string_view b = w.bytes;
    size_t skip = 0;
    if (in.position() == 0 && b.size() >= 3 && std::memcmp(b.data(), "\xEF\xBB\xBF", 3) == 0) skip = 3;
    if (!opts.header) {
      if (skip == 0 && in.position() == 0 && b.size() < 3 && !w.eof) {
        want *= 2;
        continue;
      }
      in.consume(skip);
      if (columns.empty())
        throw Error(name + ": CsvOptions::header is false: name the file's columns in Schema::columns");
      return columns;
    }
    RecordCollector hc(1);
    int64_t l = 0;
    const char* endp = tokenize_any(b.data() + skip, b.data() + b.size(), w.eof, cfg, hc, l);
    if (hc.rows.empty()) {
      if (w.eof) throw Error(name + ":1: the file is empty (expected a header line)");
      want *= 2;
      continue;
    }
    const int64_t hline = hc.lines[0] + 1;
    if (!hc.problems.empty()) throw Error(name + ":" + std::to_string(hline) + ": header: " + hc.problems[0].text);
    in.consume(static_cast<size_t>(endp - b.data()));
    line = l;
    std::vector<std::string> header = std::move(hc.rows[0]);
    if (!columns.empty() && columns != header) {
      std::string m = name + ":" + std::to_string(hline) + ": the header does not match Schema::columns: ";
      if (columns.size() != header.size()) {
        m += "the header has " + std::to_string(header.size()) + " columns, Schema::columns " +
             std::to_string(columns.size());
      } else {
        for (size_t i = 0; i < header.size(); ++i)
          if (header[i] != columns[i]) {
            m += "column " + std::to_string(i + 1) + " is '" + display_value(header[i]) + "' in the header, '" +
                 columns[i] + "' in Schema::columns";
            break;
          }
      }
      throw Error(m);
    }
    return header;
  }
}

}  // namespace detail

void validate_csv_options(const CsvOptions& o) {
  if (o.separator.empty()) throw Error("CsvOptions: the separator is empty");
  for (char c : o.separator)
    if (c == '\n' || c == '\r') throw Error("CsvOptions: the separator cannot hold a newline");
  if (o.quote != '\0' && o.separator.find(o.quote) != std::string::npos)
    throw Error("CsvOptions: the separator cannot hold the quote character");
  if (o.quote == '\n' || o.quote == '\r') throw Error("CsvOptions: the quote character cannot be a newline");
  if (o.trim && detail::is_blank(o.separator[0]))
    throw Error("CsvOptions: trim cannot be used with a separator that starts with a space or a tab");
  if (o.max_errors < 1) throw Error("CsvOptions: max_errors must be at least 1");
}

nlohmann::json csv_options_to_json(const CsvOptions& o) {
  return {{"separator", o.separator},
          {"header", o.header},
          {"quote", o.quote ? std::string(1, o.quote) : std::string()},
          {"trim", o.trim},
          {"missing", o.missing},
          {"allow_missing_dense", o.allow_missing_dense},
          {"sparse_missing_as_oov", o.sparse_missing_as_oov},
          {"max_errors", o.max_errors},
          {"skip_bad_rows", o.skip_bad_rows},
          {"threads", o.threads},
          {"window_bytes", o.window_bytes}};
}

CsvOptions csv_options_from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw Error(origin + ": csv: must be a JSON object");
  CsvOptions o;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    auto need = [&](bool ok, const char* what) {
      if (!ok) throw Error(origin + ": csv: \"" + k + "\" must be " + what);
    };
    if (k == "separator") {
      need(v.is_string(), "a string");
      o.separator = v.get<std::string>();
    } else if (k == "header") {
      need(v.is_boolean(), "true or false");
      o.header = v.get<bool>();
    } else if (k == "quote") {
      need(v.is_string() && v.get<std::string>().size() <= 1, "a one-character string (or \"\" for none)");
      const std::string q = v.get<std::string>();
      o.quote = q.empty() ? '\0' : q[0];
    } else if (k == "trim") {
      need(v.is_boolean(), "true or false");
      o.trim = v.get<bool>();
    } else if (k == "missing") {
      need(v.is_string(), "a string");
      o.missing = v.get<std::string>();
    } else if (k == "allow_missing_dense") {
      need(v.is_boolean(), "true or false");
      o.allow_missing_dense = v.get<bool>();
    } else if (k == "sparse_missing_as_oov") {
      need(v.is_boolean(), "true or false");
      o.sparse_missing_as_oov = v.get<bool>();
    } else if (k == "max_errors") {
      need(v.is_number_integer() && v.get<int64_t>() >= 1, "a positive integer");
      o.max_errors = v.get<int64_t>();
    } else if (k == "skip_bad_rows") {
      need(v.is_boolean(), "true or false");
      o.skip_bad_rows = v.get<bool>();
    } else if (k == "threads") {
      need(v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= 256, "an integer in 1..256");
      o.threads = v.get<int>();
    } else if (k == "window_bytes") {
      need(v.is_number_unsigned() && v.get<uint64_t>() >= 1, "a positive integer");
      o.window_bytes = v.get<size_t>();
    } else {
      throw Error(origin + ": csv: unknown key \"" + k + "\"");
    }
  }
  try {
    validate_csv_options(o);
  } catch (const Error& e) {
    throw Error(origin + ": " + e.what());
  }
  return o;
}

namespace {

RawRows read_raw(InputStream& in, const std::string& name, const CsvOptions& opts, int64_t max_rows,
                 const std::vector<std::string>& columns) {
  validate_csv_options(opts);
  const detail::TokenizerConfig cfg{opts.separator, opts.quote, opts.trim};
  RawRows out;
  int64_t line = 0;
  out.header = detail::read_header(in, name, opts, cfg, columns, line);
  std::vector<std::string> problems;
  bool stopped = false;
  size_t want = size_t(1) << 20;
  while (max_rows < 0 || static_cast<int64_t>(out.rows.size()) < max_rows) {
    const InputWindow w = in.window(want);
    if (w.bytes.empty()) break;
    const int64_t left = max_rows < 0 ? -1 : max_rows - static_cast<int64_t>(out.rows.size());
    detail::RecordCollector rc(left);
    int64_t l = 0;
    const char* endp = detail::tokenize_any(w.bytes.data(), w.bytes.data() + w.bytes.size(), w.eof, cfg, rc, l);
    const auto consumed = static_cast<size_t>(endp - w.bytes.data());
    if (rc.rows.empty() && consumed == 0 && !w.eof) {
      want *= 2;
      continue;
    }
    for (const auto& p : rc.problems)
      if (static_cast<int64_t>(problems.size()) < opts.max_errors)
        problems.push_back(name + ":" + std::to_string(line + p.line + 1) + ": " + p.text);
    for (size_t i = 0; i < rc.rows.size(); ++i) {
      const int64_t at = line + rc.lines[i] + 1;
      if (rc.rows[i].size() != out.header.size()) {
        if (static_cast<int64_t>(problems.size()) >= opts.max_errors) {
          stopped = true;
          continue;
        }
        std::string m = name + ":" + std::to_string(at) + ": expected " + std::to_string(out.header.size()) +
                        " fields, found " + std::to_string(rc.rows[i].size());
        if (rc.rows[i].size() < out.header.size()) m += ": column '" + out.header[rc.rows[i].size()] + "' is missing";
        problems.push_back(std::move(m));
        continue;
      }
      out.rows.push_back(std::move(rc.rows[i]));
      out.lines.push_back(at);
    }
    line += l;
    in.consume(consumed);
    if (w.eof && consumed == w.bytes.size()) break;
  }
  if (!problems.empty()) throw Error(detail::format_problems(problems, stopped, opts.max_errors));
  return out;
}

}  // namespace

RawRows read_raw_rows(const std::string& path, const CsvOptions& options, int64_t max_rows,
                      const std::vector<std::string>& columns) {
  auto in = open_input(path);
  return read_raw(*in, path, options, max_rows, columns);
}

RawRows read_raw_rows_bytes(std::string_view bytes, const std::string& name, const CsvOptions& options,
                            int64_t max_rows, const std::vector<std::string>& columns) {
  auto in = memory_input(bytes);
  return read_raw(*in, name, options, max_rows, columns);
}

}  // namespace rechub::data
