#pragma once
// Reading CSV files into ColumnTables: one hand-written single pass over a memory-mapped (or
// gzip-decompressed) window of the file, numbers by std::from_chars, two threads splitting each
// window at newlines when it holds no quote character.
//
// Every problem is a rechub::Error naming file, line and column:
//   ali_ccp_train.csv:1043: column 'click' = '2': a binary label must be 0 or 1
// Up to max_errors problems are collected and reported together; with skip_bad_rows the bad rows
// are dropped instead and counted in the table's LoadReport.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "rechub/mtl/data/column_table.h"
#include "rechub/mtl/data/schema.h"

namespace rechub::data {

struct CsvOptions {
  // Field separator, one or more characters: "," "\t" ";" or ", " (the raw UCI census files).
  std::string separator = ",";
  // The first record names the columns. Without a header, Schema::columns names them.
  bool header = true;
  // Fields may be quoted with this character ("" inside is one quote); '\0' turns quoting off.
  char quote = '"';
  // Strip spaces and tabs around every field (outside the quotes).
  bool trim = false;
  // A token meaning "missing" besides the empty field, e.g. "?".
  std::string missing{};
  // A missing dense value is kept (as NaN) for the Preprocessor to fill; otherwise it is an error.
  bool allow_missing_dense = false;
  // A missing sparse value gets the out-of-vocabulary id 0; otherwise the marker ("" or "?") is a
  // category of its own (missingness often carries signal).
  bool sparse_missing_as_oov = false;
  // Problems collected before giving up (all are reported in one error).
  int64_t max_errors = 20;
  // Drop bad rows (counted in LoadReport::skipped_rows) instead of failing.
  bool skip_bad_rows = false;
  // Parser threads (windows without quotes are split at newlines).
  int threads = 2;
  // Bytes parsed per step; resident memory is about this plus the parsed columns.
  size_t window_bytes = size_t(32) << 20;
};

nlohmann::json csv_options_to_json(const CsvOptions& o);
// Keys as the struct's fields; unknown keys are refused. `origin` names the source in errors.
CsvOptions csv_options_from_json(const nlohmann::json& j, const std::string& origin = "<json>");
// Throws rechub::Error on an unusable separator or quote.
void validate_csv_options(const CsvOptions& o);

// Parses a whole file (plain or gzip) into memory. The schema must be valid (validate_schema).
ColumnTable read_csv(const std::string& path, const Schema& schema, const CsvOptions& options = {});
// The same over bytes in memory; `name` stands for the file name in messages.
ColumnTable read_csv_bytes(std::string_view bytes, const std::string& name, const Schema& schema,
                           const CsvOptions& options = {});

// Rows as strings (after unquoting and trimming), for schema inference and prediction input.
struct RawRows {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> lines;  // the 1-based line each row starts on
};
// At most max_rows rows (-1: all). Without a header, `columns` names the columns. Rows with the
// wrong number of fields are errors like in read_csv.
RawRows read_raw_rows(const std::string& path, const CsvOptions& options, int64_t max_rows = -1,
                      const std::vector<std::string>& columns = {});
RawRows read_raw_rows_bytes(std::string_view bytes, const std::string& name, const CsvOptions& options,
                            int64_t max_rows = -1, const std::vector<std::string>& columns = {});

}  // namespace rechub::data
