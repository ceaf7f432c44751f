// CSV ingestion: the format rules (quotes, CRLF, blank lines, separators, gzip) and every kind of
// bad input, each reported with file, line and column.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/csv_tokenizer.h"
#include "support/test_util.h"

namespace rechub::data {
namespace {

using testing::error_of;
using testing::TempDir;

namespace fs = std::filesystem;

Schema abc_schema() {
  return {.sparse = {{.name = "a"}}, .dense = {{.name = "b"}}, .labels = {{.task = "y", .column = "y"}}};
}

std::vector<std::string> sparse_values(const ColumnTable& t, const std::string& col) {
  const int c = t.require(col);
  std::vector<std::string> out;
  for (int64_t r = 0; r < t.rows(); ++r) out.push_back(t.dictionary(c).value(t.code(r, c)));
  return out;
}

std::vector<float> numbers(const ColumnTable& t, const std::string& col) {
  const int c = t.require(col);
  std::vector<float> out;
  for (int64_t r = 0; r < t.rows(); ++r) out.push_back(t.value(r, c));
  return out;
}

TEST(CsvReader, ReadsColumnsByHeaderNameInAnyOrder) {
  const auto t = read_csv_bytes("y,skip,b,a\n1,zz,0.5,x\n0,zz,-2e3,y\n", "t.csv", abc_schema());
  EXPECT_EQ(t.rows(), 2);
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(numbers(t, "b"), (std::vector<float>{0.5f, -2000.0f}));
  EXPECT_EQ(numbers(t, "y"), (std::vector<float>{1.0f, 0.0f}));
  EXPECT_EQ(t.find("skip"), -1);
}

TEST(CsvReader, QuotedFieldsHoldSeparatorsQuotesAndNewlines) {
  const std::string text = "a,b,y\n\"x,1\",1,0\n\"say \"\"hi\"\"\",2,1\n\"two\nlines\",3,0\n\"\",4,1\n";
  const auto t = read_csv_bytes(text, "q.csv", abc_schema());
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x,1", "say \"hi\"", "two\nlines", ""}));
  EXPECT_EQ(numbers(t, "b"), (std::vector<float>{1, 2, 3, 4}));
}

TEST(CsvReader, HandlesCrlfBlankLinesBomAndMissingFinalNewline) {
  const std::string text =
      "\xEF\xBB\xBF"
      "a,b,y\r\n\r\nx,1,0\r\n\n\ny,2,1\r\n\r\nz,3,1";
  const auto t = read_csv_bytes(text, "crlf.csv", abc_schema());
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(numbers(t, "y"), (std::vector<float>{0, 1, 1}));
}

TEST(CsvReader, MultiCharacterSeparatorTrimAndMissingMarker) {
  Schema s = abc_schema();
  s.columns = {"a", "b", "y"};
  CsvOptions o{.separator = ", ", .header = false, .trim = true, .missing = "?", .allow_missing_dense = true};
  const auto t = read_csv_bytes(" x y , 1.5, 0\n?, ?, 1\nz , 2 , 1 \n", "sep.csv", s, o);
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x y", "?", "z"}));
  const auto b = numbers(t, "b");
  EXPECT_EQ(b[0], 1.5f);
  EXPECT_TRUE(std::isnan(b[1]));
  EXPECT_EQ(b[2], 2.0f);
}

TEST(CsvReader, TabSeparatorAndNoQuoting) {
  CsvOptions o{.separator = "\t", .quote = '\0'};
  const auto t = read_csv_bytes("a\tb\ty\n\"q\t1\t0\n", "tab.csv", abc_schema(), o);
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"\"q"}));
}

TEST(CsvReader, SparseMissingCanBeOutOfVocabulary) {
  CsvOptions o{.missing = "?", .sparse_missing_as_oov = true};
  const auto t = read_csv_bytes("a,b,y\n?,1,0\n,2,1\nq,3,1\n", "m.csv", abc_schema(), o);
  const int c = t.require("a");
  EXPECT_EQ(t.code(0, c), Dictionary::kMissing);
  EXPECT_EQ(t.code(1, c), Dictionary::kMissing);
  EXPECT_EQ(t.dictionary(c).size(), 1u);
}

TEST(CsvReader, ReadsGzipFilesDirectly) {
  TempDir dir;
  const std::string text = "a,b,y\nx,1,0\ny,2,1\n";
  const std::string path = (dir.path / "t.csv.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  const auto t = read_csv(path, abc_schema());
  EXPECT_EQ(t.rows(), 2);
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x", "y"}));
}

TEST(CsvReader, TruncatedGzipIsAnErrorNamingTheFile) {
  TempDir dir;
  std::string text = "a,b,y\n";
  for (int i = 0; i < 20000; ++i) {
    const std::string n = std::to_string(i);
    text.append("v").append(n).append(",").append(n).append(",1\n");
  }
  const std::string full = (dir.path / "full.gz").string();
  gzFile gz = gzopen(full.c_str(), "wb");
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  std::ifstream in(full, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = dir.write("cut.csv.gz", bytes.substr(0, bytes.size() / 2));
  const std::string msg = error_of([&] { read_csv(cut, abc_schema()); });
  EXPECT_NE(msg.find("cut.csv.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gzip"), std::string::npos) << msg;
}

// Every kind of bad input: the message names the file, the line and the column.
struct BadInput {
  const char* what;
  std::string text;
  std::string expect;  // a substring of the message
};

TEST(CsvReader, EveryBadInputNamesFileLineAndColumn) {
  const std::vector<BadInput> cases = {
      {"binary label 2", "a,b,y\nx,1,0\nx,1,2\n", "bad.csv:3: column 'y' = '2': a binary label must be 0 or 1"},
      {"non-numeric dense", "a,b,y\nx,abc,0\n", "bad.csv:2: column 'b' = 'abc': not a number"},
      {"NaN", "a,b,y\nx,nan,0\n", "bad.csv:2: column 'b' = 'nan': not a finite number"},
      {"inf", "a,b,y\nx,-inf,0\n", "bad.csv:2: column 'b' = '-inf': not a finite number"},
      {"float32 overflow", "a,b,y\nx,1e300,0\n", "bad.csv:2: column 'b' = '1e300': out of the float32 range"},
      {"too few fields", "a,b,y\nx,1\n", "bad.csv:2: expected 3 fields, found 2: column 'y' is missing"},
      {"too many fields", "a,b,y\nx,1,0,9\n", "bad.csv:2: expected 3 fields, found 4"},
      {"missing dense", "a,b,y\nx,,0\n", "bad.csv:2: column 'b' is missing"},
      {"missing label", "a,b,y\nx,1,\n", "bad.csv:2: column 'y' is missing: a label cannot be missing"},
      {"unclosed quote", "a,b,y\nx,1,0\n\"x,1,0\n", "bad.csv:3: column 'a': a quoted field is never closed"},
      {"text after quote", "a,b,y\n\"x\"z,1,0\n", "bad.csv:2: column 'a': unexpected text after a closing quote"},
      {"empty file", "", "bad.csv:1: the file is empty"},
      {"blank file", "\n\r\n\n", "bad.csv:1: the file is empty"},
      {"header only", "a,b,y\n", "bad.csv: no data rows"},
      {"missing column", "a,y\nx,0\n", "bad.csv:1: column 'b' (dense feature) is not in the header"},
      {"duplicate column", "a,b,b,y\nx,1,1,0\n", "bad.csv:1: the header names column 'b' twice"},
      {"line after quoted newline", "a,b,y\n\"p\nq\",1,0\nx,zz,0\n", "bad.csv:4: column 'b' = 'zz': not a number"},
  };
  for (const auto& c : cases) {
    const std::string msg = error_of([&] { read_csv_bytes(c.text, "bad.csv", abc_schema()); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": got\n" << msg;
  }
}

TEST(CsvReader, ErrorsOnDiskNameTheFilePath) {
  TempDir dir;
  const std::string p = dir.write("ali_ccp_train.csv", "a,b,y\nx,1,0\nx,1,2\n");
  const std::string msg = error_of([&] { read_csv(p, abc_schema()); });
  EXPECT_NE(msg.find(p + ":3: column 'y' = '2': a binary label must be 0 or 1"), std::string::npos) << msg;
  EXPECT_NE(
      error_of([&] { read_csv((dir.path / "absent.csv").string(), abc_schema()); }).find("absent.csv: cannot open"),
      std::string::npos);
}

TEST(CsvReader, CollectsUpToMaxErrorsProblemsInOneMessage) {
  std::string text = "a,b,y\n";
  for (int i = 0; i < 50; ++i) text += "x,1,7\n";
  const std::string all = error_of([&] { read_csv_bytes(text, "many.csv", abc_schema()); });
  EXPECT_NE(all.find("many.csv:2: column 'y' = '7'"), std::string::npos);
  EXPECT_NE(all.find("many.csv:21: column 'y' = '7'"), std::string::npos);
  EXPECT_EQ(all.find("many.csv:22:"), std::string::npos);
  EXPECT_NE(all.find("20 problems; stopped after CsvOptions::max_errors = 20"), std::string::npos) << all;
  CsvOptions o{.max_errors = 3};
  const std::string three = error_of([&] { read_csv_bytes(text, "many.csv", abc_schema(), o); });
  EXPECT_NE(three.find("many.csv:4:"), std::string::npos);
  EXPECT_EQ(three.find("many.csv:5:"), std::string::npos);
}

TEST(CsvReader, DifferentProblemsOnDifferentLinesAreAllReported) {
  const std::string msg =
      error_of([&] { read_csv_bytes("a,b,y\nx,1,0\nx,q,0\nx,1,5\nx,1\n", "mixed.csv", abc_schema()); });
  EXPECT_NE(msg.find("mixed.csv:3: column 'b' = 'q': not a number"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mixed.csv:4: column 'y' = '5'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mixed.csv:5: expected 3 fields"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(3 problems)"), std::string::npos) << msg;
}

TEST(CsvReader, SkipBadRowsCountsWhatWasSkipped) {
  CsvOptions o{.skip_bad_rows = true};
  const auto t = read_csv_bytes("a,b,y\nx,1,0\nx,q,0\ny,2,1\nz,3\nw,4,1\n", "skip.csv", abc_schema(), o);
  EXPECT_EQ(t.rows(), 3);
  EXPECT_EQ(t.report().skipped_rows, 2);
  ASSERT_EQ(t.report().skipped_examples.size(), 2u);
  EXPECT_NE(t.report().skipped_examples[0].find("skip.csv:3: column 'b'"), std::string::npos);
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x", "y", "w"}));
  // Counts only see the rows kept.
  const int a = t.require("a");
  EXPECT_EQ(t.dictionary(a).count(static_cast<uint32_t>(t.dictionary(a).find("x"))), 1);
  const std::string msg = error_of([&] { read_csv_bytes("a,b,y\nx,q,0\n", "allbad.csv", abc_schema(), o); });
  EXPECT_NE(msg.find("every data row was bad"), std::string::npos) << msg;
}

TEST(CsvReader, BinaryLabelsAcceptZeroPointZeroAndRegressionAnyFinite) {
  Schema s{.sparse = {{.name = "a"}},
           .labels = {{.task = "y", .column = "y"}, {.task = "r", .column = "r", .type = TaskType::regression}}};
  const auto t = read_csv_bytes("a,y,r\nx,1.0,-3.5\nx,0.0,+2\n", "l.csv", s);
  EXPECT_EQ(numbers(t, "y"), (std::vector<float>{1, 0}));
  EXPECT_EQ(numbers(t, "r"), (std::vector<float>{-3.5f, 2.0f}));
}

TEST(CsvReader, LabelMappingByValueOrPredicate) {
  Schema s{.sparse = {{.name = "a"}},
           .labels = {{.task = "rich", .column = "income", .positive_values = {"50000+."}},
                      {.task = "single", .column = "marital", .positive_if = [](std::string_view v) {
                         return v.starts_with("Never");
                       }}}};
  const auto t = read_csv_bytes("a,income,marital\nx,- 50000.,Never married\ny,50000+.,Divorced\n", "m.csv", s);
  const int inc = t.require("income"), mar = t.require("marital");
  EXPECT_EQ(t.spec(inc).role, ColumnRole::mapped_label);
  EXPECT_EQ(t.dictionary(inc).value(t.code(1, inc)), "50000+.");
  EXPECT_EQ(t.dictionary(mar).value(t.code(0, mar)), "Never married");
}

TEST(CsvReader, HeaderlessFilesTakeNamesFromSchemaColumns) {
  Schema s = abc_schema();
  CsvOptions o{.header = false};
  EXPECT_NE(error_of([&] { read_csv_bytes("x,1,0\n", "h.csv", s, o); }).find("Schema::columns"), std::string::npos);
  s.columns = {"y", "a", "b"};
  const auto t = read_csv_bytes("1,x,2\n0,y,3\n", "h.csv", s, o);
  EXPECT_EQ(sparse_values(t, "a"), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(numbers(t, "y"), (std::vector<float>{1, 0}));
  // With a header, Schema::columns must match it.
  const std::string msg = error_of([&] { read_csv_bytes("a,b,y\nx,1,0\n", "h.csv", s); });
  EXPECT_NE(msg.find("h.csv:1: the header does not match Schema::columns"), std::string::npos) << msg;
}

TEST(CsvReader, RefusesALabelThatIsAlsoAFeature) {
  Schema s{.sparse = {{.name = "click"}}, .labels = {{.task = "ctr", .column = "click"}}};
  const std::string msg = error_of([&] { read_csv_bytes("click\n1\n", "leak.csv", s); });
  EXPECT_NE(msg.find("column 'click' is the label of task 'ctr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("leaks"), std::string::npos) << msg;
}

TEST(CsvReader, BadOptionsAreRefused) {
  EXPECT_THROW(read_csv_bytes("a\n", "o.csv", abc_schema(), {.separator = ""}), Error);
  EXPECT_THROW(read_csv_bytes("a\n", "o.csv", abc_schema(), {.separator = "\""}), Error);
  EXPECT_THROW(read_csv_bytes("a\n", "o.csv", abc_schema(), {.separator = " ", .trim = true}), Error);
  EXPECT_THROW(read_csv_bytes("a\n", "o.csv", abc_schema(), {.max_errors = 0}), Error);
}

// Random data in many windows and threads: the same table whatever the parse plan.
std::string random_csv(std::mt19937_64& rng, int rows, bool quotes) {
  std::string s = "a,b,y\n";
  std::uniform_int_distribution<int> id(0, 500), coin(0, 9);
  for (int r = 0; r < rows; ++r) {
    if (quotes && coin(rng) == 0)
      s.append("\"v,").append(std::to_string(id(rng))).append("\n\"\"q\"\"\"");
    else
      s.append("v").append(std::to_string(id(rng)));
    s.append(",").append(std::to_string(id(rng) * 0.25)).append(",").append(std::to_string(coin(rng) % 2));
    s.append(coin(rng) == 0 ? "\r\n" : "\n");
    if (coin(rng) == 0) s += "\n";
  }
  return s;
}

TEST(CsvReader, WindowSizeAndThreadCountDoNotChangeTheResult) {
  std::mt19937_64 rng(3);
  for (bool quotes : {false, true}) {
    const std::string text = random_csv(rng, 120000, quotes);
    const auto ref = read_csv_bytes(text, "r.csv", abc_schema(), {.threads = 1, .window_bytes = size_t(1) << 30});
    const auto par = read_csv_bytes(text, "r.csv", abc_schema(), {.threads = 2, .window_bytes = 1 << 16});
    ASSERT_EQ(ref.rows(), 120000);
    ASSERT_EQ(par.rows(), ref.rows());
    EXPECT_EQ(sparse_values(par, "a"), sparse_values(ref, "a"));
    EXPECT_EQ(numbers(par, "b"), numbers(ref, "b"));
    EXPECT_EQ(numbers(par, "y"), numbers(ref, "y"));
    const int a = ref.require("a");
    for (uint32_t k = 0; k < ref.dictionary(a).size(); ++k) {
      const auto& v = ref.dictionary(a).value(k);
      EXPECT_EQ(par.dictionary(a).count(static_cast<uint32_t>(par.dictionary(a).find(v))), ref.dictionary(a).count(k));
    }
  }
}

TEST(CsvReader, LineNumbersStayRightAcrossWindowsAndThreads) {
  std::string text = "a,b,y\n";
  for (int i = 0; i < 100000; ++i) text += "x,1,0\n";
  text += "x,1,3\n";  // line 100002
  const std::string msg =
      error_of([&] { read_csv_bytes(text, "far.csv", abc_schema(), {.threads = 2, .window_bytes = 1 << 16}); });
  EXPECT_NE(msg.find("far.csv:100002: column 'y' = '3'"), std::string::npos) << msg;
}

TEST(CsvReader, NeverCrashesOnRandomBytes) {
  // Random pieces of valid and broken CSV, and raw random bytes: a table or an Error, nothing else.
  std::mt19937_64 rng(11);
  const std::vector<std::string> pieces = {"x,1,0\n",  "\"q\"\"r\",2.5,1\r\n", "\n",  ",",   "\"", "zz", "\r",
                                           "\xff\xfe", std::string(1, '\0'),   "1e9", "nan", "?",  " ",  "y,-3,1\n"};
  int ok = 0, errors = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string s = (it % 3) ? "a,b,y\n" : "";
    const size_t n = rng() % 12;
    for (size_t i = 0; i < n; ++i) {
      if (rng() % 5 == 0)
        s += static_cast<char>(rng());
      else
        s += pieces[rng() % pieces.size()];
    }
    for (const auto& opts :
         {CsvOptions{},
          CsvOptions{
              .separator = ", ", .trim = true, .missing = "?", .allow_missing_dense = true, .skip_bad_rows = true}}) {
      try {
        const auto t = read_csv_bytes(s, "fuzz.csv", abc_schema(), opts);
        ++ok;
        for (int64_t r = 0; r < t.rows(); ++r) (void)t.code(r, 0);
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(ok, 100);
  EXPECT_GT(errors, 100);
}

TEST(CsvReader, DecimalFastPathMatchesFromChars) {
  // parse_float reads plain decimals itself; it must give exactly what from_chars (double, then
  // float) gives, which is what the slow path and pandas give.
  std::mt19937_64 rng(5);
  for (int it = 0; it < 200000; ++it) {
    std::string s;
    if (rng() % 3 == 0) s += '-';
    const int int_digits = static_cast<int>(rng() % 9), frac_digits = static_cast<int>(rng() % 9);
    for (int i = 0; i < int_digits; ++i) s += static_cast<char>('0' + rng() % 10);
    if (frac_digits > 0 || int_digits == 0) s += '.';
    for (int i = 0; i < frac_digits || (int_digits == 0 && i == 0); ++i) s += static_cast<char>('0' + rng() % 10);
    float fast = 0;
    ASSERT_EQ(detail::parse_float(s, fast), detail::NumStatus::ok) << s;
    double d = 0;
    const char* b = s.data();
    const auto r = std::from_chars(b, b + s.size(), d);
    ASSERT_TRUE(r.ec == std::errc() && r.ptr == b + s.size()) << s;
    ASSERT_EQ(fast, static_cast<float>(d)) << s;
  }
  float f = 0;
  EXPECT_EQ(detail::parse_float("1e3", f), detail::NumStatus::ok);
  EXPECT_EQ(f, 1000.0f);
  EXPECT_EQ(detail::parse_float("+2.5", f), detail::NumStatus::ok);
  EXPECT_EQ(f, 2.5f);
  EXPECT_EQ(detail::parse_float("12345678901234567890", f), detail::NumStatus::ok);  // past the fast path
  EXPECT_EQ(f, 12345678901234567890.0f);
  EXPECT_EQ(detail::parse_float(".", f), detail::NumStatus::not_number);
  EXPECT_EQ(detail::parse_float("1.2.3", f), detail::NumStatus::not_number);
  EXPECT_EQ(detail::parse_float("+-1", f), detail::NumStatus::not_number);
}

TEST(RawRows, ReadsStringsForInferenceAndPrediction) {
  const RawRows r = read_raw_rows_bytes("a,b\n\"x,1\",2\n\ny,3\n", "raw.csv", {}, -1);
  EXPECT_EQ(r.header, (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0], (std::vector<std::string>{"x,1", "2"}));
  EXPECT_EQ(r.lines, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(read_raw_rows_bytes("a,b\n1,2\n3,4\n5,6\n", "raw.csv", {}, 2).rows.size(), 2u);
  const std::string msg = [] {
    try {
      read_raw_rows_bytes("a,b\n1,2\n3\n", "raw.csv", {});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(msg.find("raw.csv:3: expected 2 fields, found 1: column 'b' is missing"), std::string::npos) << msg;
}

}  // namespace
}  // namespace rechub::data
