#include "rechub/mtl/data/infer.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <sstream>
#include <unordered_set>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv_tokenizer.h"

namespace rechub::data {

namespace {

bool is_integer(std::string_view v) {
  const char* b = v.data();
  const char* e = b + v.size();
  if (b < e && *b == '+') ++b;
  int64_t x = 0;
  const auto r = std::from_chars(b, e, x);
  return b < e && r.ec == std::errc() && r.ptr == e;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

struct ColumnStats {
  int64_t missing = 0, integers = 0, numbers = 0, texts = 0;
  double lo = 0, hi = 0;
  bool only01 = true;
  int64_t zero_one = 0;  // numbers equal to 0 or 1
  std::unordered_set<std::string> distinct;
  std::string text_example, number_example;
  // The first few values that would decide against the majority, with their 1-based lines.
  std::vector<std::pair<int64_t, std::string>> texts_seen, non01_seen;
};

constexpr size_t kValuesShown = 4;

std::string values_seen(const std::vector<std::pair<int64_t, std::string>>& seen, int64_t count) {
  std::string s;
  for (const auto& [line, v] : seen) {
    if (!s.empty()) s += ", ";
    s += "'" + detail::display_value(v) + "' (line " + std::to_string(line) + ")";
  }
  if (count > static_cast<int64_t>(seen.size()))
    s += " and " + std::to_string(count - static_cast<int64_t>(seen.size())) + " more";
  return s;
}

}  // namespace

InferredSchema infer_schema_from_rows(const RawRows& raw, const std::string& name, const InferOptions& opt,
                                      const CsvOptions& csv, bool headerless) {
  InferredSchema out;
  std::ostringstream rep;
  const auto n = static_cast<int64_t>(raw.rows.size());
  rep << "schema inferred from " << name << " (" << raw.header.size() << " columns, " << n << " sampled rows):\n";
  std::vector<Label> labels = opt.labels;
  for (const auto& c : opt.label_columns) {
    bool given = false;
    for (const auto& l : labels) given = given || l.column == c;
    if (!given) labels.push_back({.task = c, .column = c});
  }
  for (const auto& l : labels)
    if (!contains(raw.header, l.column)) throw Error(name + ": label column '" + l.column + "' is not in the header");
  for (const auto* list : {&opt.dense, &opt.sparse, &opt.ignore})
    for (const auto& c : *list)
      if (!contains(raw.header, c))
        throw Error(name + ": column '" + c + "' (named in --sparse/--dense or InferOptions) is not in the header");

  for (size_t c = 0; c < raw.header.size(); ++c) {
    const std::string& col = raw.header[c];
    ColumnStats st;
    for (size_t r = 0; r < raw.rows.size(); ++r) {
      const std::string& v = raw.rows[r][c];
      const int64_t line = r < raw.lines.size() ? raw.lines[r] : static_cast<int64_t>(r) + 2;
      if (v.empty() || (!csv.missing.empty() && v == csv.missing)) {
        ++st.missing;
        continue;
      }
      if (st.distinct.size() <= 100000) st.distinct.insert(v);
      float f = 0;
      if (detail::parse_float(v, f) == detail::NumStatus::ok) {
        const bool first = st.numbers == 0;
        ++st.numbers;
        if (is_integer(v)) ++st.integers;
        if (st.number_example.empty() && !is_integer(v)) st.number_example = v;
        st.lo = first ? f : std::min<double>(st.lo, f);
        st.hi = first ? f : std::max<double>(st.hi, f);
        const bool is01 = f == 0.0f || f == 1.0f;
        st.only01 = st.only01 && is01;
        if (is01)
          ++st.zero_one;
        else if (st.non01_seen.size() < kValuesShown)
          st.non01_seen.emplace_back(line, v);
      } else {
        ++st.texts;
        st.only01 = false;
        if (st.text_example.empty()) st.text_example = v;
        if (st.texts_seen.size() < kValuesShown) st.texts_seen.emplace_back(line, v);
      }
    }
    const int64_t present = n - st.missing;
    const std::string missing_note = st.missing ? ", " + std::to_string(st.missing) + " missing" : std::string();
    rep << "  '" << col << "': ";

    auto label = std::find_if(labels.begin(), labels.end(), [&](const Label& l) { return l.column == col; });
    if (label != labels.end()) {
      Label l = *label;
      if (l.is_mapped()) {
        rep << "label of task '" << l.task << "' (binary, mapped from raw values)";
      } else if (st.texts > 0) {
        throw Error(name + ": label column '" + col + "' has text values (e.g. '" +
                    detail::display_value(st.text_example) +
                    "'): give it as a Label with positive_values (the raw values that mean 1)");
      } else if (!opt.labels.empty() && label - labels.begin() < static_cast<std::ptrdiff_t>(opt.labels.size())) {
        rep << "label of task '" << l.task << "' (" << task_type_name(l.type) << ", as given)";
      } else {
        // A column of 0/1 values with a few others is a binary label with bad rows far more often
        // than a regression target: the kind is not guessed from the minority.
        const int64_t others = present - st.zero_one;
        if (others > 0 && st.zero_one > others)
          throw Error(name + ":" + std::to_string(st.non01_seen.front().first) + ": label column '" + col + "' = '" +
                      detail::display_value(st.non01_seen.front().second) + "': not 0 or 1, but " +
                      std::to_string(st.zero_one) + " of its " + std::to_string(present) + " values in the first " +
                      std::to_string(n) +
                      " rows are 0 or 1 (values other than 0/1: " + values_seen(st.non01_seen, others) +
                      "). Say which task it is: --task-types binary (and fix those rows) or --task-types regression "
                      "(InferOptions::labels, or the label's \"type\" in a --schema file)");
        l.type = st.only01 ? TaskType::binary : TaskType::regression;
        rep << "label of task '" << l.task << "' (" << task_type_name(l.type)
            << (st.only01 ? ": every sampled value is 0 or 1" : ": numeric values beyond 0/1") << ")";
      }
      out.schema.labels.push_back(std::move(l));
    } else if (contains(opt.ignore, col)) {
      rep << "ignored (not named by --sparse/--dense; InferOptions::ignore in C++)";
    } else if (contains(opt.dense, col)) {
      if (st.texts > 0)
        throw Error(name + ": column '" + col + "' is forced dense but has text values (e.g. '" +
                    detail::display_value(st.text_example) + "')");
      rep << "dense (forced), values in [" << st.lo << ", " << st.hi << "]";
      out.schema.dense.push_back({col});
    } else if (contains(opt.sparse, col)) {
      rep << "sparse (forced), " << st.distinct.size() << " distinct values";
      out.schema.sparse.push_back({.name = col, .embed_dim = opt.embed_dim});
    } else if (present == 0) {
      rep << "sparse: no values in the sample (every one missing)";
      out.schema.sparse.push_back({.name = col, .embed_dim = opt.embed_dim});
    } else if (st.texts > 0 && st.integers < st.numbers && st.texts < st.numbers) {
      // Mostly fractional numbers with a few words or nan: a dense column with bad values, not a
      // text feature; turning it sparse would train on it as ids without a word.
      throw Error(name + ":" + std::to_string(st.texts_seen.front().first) + ": column '" + col + "' = '" +
                  detail::display_value(st.texts_seen.front().second) + "': not a number, but " +
                  std::to_string(st.numbers) + " of its " + std::to_string(present) + " values in the first " +
                  std::to_string(n) + " rows are numbers, e.g. '" + detail::display_value(st.number_example) +
                  "' (non-numbers: " + values_seen(st.texts_seen, st.texts) +
                  "). Fix those values, or settle the column's kind: --dense " + col + " (numbers only) or --sparse " +
                  col + " (InferOptions::dense/sparse, or the \"dense\"/\"sparse\" list of a --schema file)");
    } else if (st.texts > 0) {
      rep << "sparse: text values (" << st.distinct.size() << " distinct, e.g. '"
          << detail::display_value(st.text_example) << "')";
      out.schema.sparse.push_back({.name = col, .embed_dim = opt.embed_dim});
    } else if (st.integers == present) {
      rep << "sparse: integer values (" << st.distinct.size() << " distinct in [" << st.lo << ", " << st.hi << "])";
      if (st.distinct.size() > 1000 || st.hi - st.lo > 100000)
        rep << " -- if this is a quantity rather than an id, make it dense: --dense " << col
            << " on the command line, InferOptions::dense in C++, or the \"dense\" list of a --schema file";
      out.schema.sparse.push_back({.name = col, .embed_dim = opt.embed_dim});
    } else {
      rep << "dense: float values in [" << st.lo << ", " << st.hi << "] (e.g. '"
          << detail::display_value(st.number_example) << "')";
      out.schema.dense.push_back({col});
    }
    rep << missing_note << "\n";
  }
  if (headerless) out.schema.columns = raw.header;
  rep << "=> " << out.schema.sparse.size() << " sparse, " << out.schema.dense.size() << " dense, "
      << out.schema.labels.size() << " label(s)\n";
  out.report = rep.str();
  validate_schema(out.schema);
  return out;
}

InferredSchema infer_schema(const std::string& path, const InferOptions& options, const CsvOptions& csv,
                            const std::vector<std::string>& columns) {
  const RawRows raw = read_raw_rows(path, csv, options.sample_rows, columns);
  return infer_schema_from_rows(raw, path, options, csv, !csv.header);
}

}  // namespace rechub::data
