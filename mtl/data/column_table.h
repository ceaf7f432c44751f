#pragma once
// ColumnTable: a parsed CSV file as columns of 32-bit cells, before any vocabulary or
// normalisation: categorical columns hold codes into their Dictionary, numeric columns hold float
// bits. Rows are stored in groups of kGroupRows (each group column-major), the same layout in
// memory and in the binary cache, so a table read from a cache is a memory mapping, not a copy.
//
// Copies are cheap: the cells are shared (immutable) storage.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rechub/mtl/data/big_buffer.h"
#include "rechub/mtl/data/dictionary.h"
#include "rechub/mtl/data/schema.h"

namespace rechub::data {

// How a column is parsed and checked.
enum class ColumnRole : uint8_t {
  sparse,            // categorical: any value, coded into the dictionary
  dense,             // numeric: a finite float (or missing, when allowed)
  binary_label,      // numeric: 0 or 1
  regression_label,  // numeric: a finite float
  mapped_label,      // categorical: raw values, mapped to 0/1 by the Label's mapping later
};
const char* column_role_name(ColumnRole r);
inline bool is_categorical(ColumnRole r) { return r == ColumnRole::sparse || r == ColumnRole::mapped_label; }

struct ColumnSpec {
  std::string name;
  ColumnRole role = ColumnRole::sparse;
  // Labels only: a missing cell (or missing_value) is "no label" (NaN, or Dictionary::kMissing for
  // a mapped label) instead of an error (Label::missing_ok).
  bool missing_ok = false;
  std::string missing_value{};
};
// The columns a schema reads, in schema order: sparse, dense, labels.
std::vector<ColumnSpec> column_specs(const Schema& schema);

enum class CacheStatus : uint8_t {
  not_used,         // caching off, or the source cannot be cached
  built,            // parsed the CSV and wrote a new cache
  loaded,           // mapped an existing, valid cache
  rebuilt_stale,    // the cache was for another version of the source or other options
  rebuilt_corrupt,  // the cache failed its checks (checksum, truncation, format)
  unwritable,       // parsed the CSV; the cache could not be written (see cache_message)
};
const char* cache_status_name(CacheStatus s);

struct LoadReport {
  std::string source;
  int64_t rows = 0;                           // rows in the table
  int64_t skipped_rows = 0;                   // bad rows dropped (CsvOptions::skip_bad_rows)
  std::vector<std::string> skipped_examples;  // the first problems of the skipped rows
  CacheStatus cache = CacheStatus::not_used;
  std::string cache_path;
  std::string cache_message;
};

class ColumnTable {
 public:
  static constexpr int kGroupBits = 16;
  static constexpr int64_t kGroupRows = int64_t(1) << kGroupBits;

  ColumnTable() = default;

  int64_t rows() const { return rows_; }
  int num_columns() const { return static_cast<int>(specs_.size()); }
  const std::vector<ColumnSpec>& specs() const { return specs_; }
  const ColumnSpec& spec(int c) const { return specs_[static_cast<size_t>(c)]; }
  // Index of a column, or -1.
  int find(std::string_view name) const;
  // Index of a column; throws rechub::Error naming the table's source when absent.
  int require(std::string_view name) const;
  // Categorical columns only (an empty dictionary for numeric ones).
  const Dictionary& dictionary(int c) const { return *dicts_[static_cast<size_t>(c)]; }

  uint32_t code(int64_t row, int c) const {
    const int64_t g = row >> kGroupBits;
    const auto gi = static_cast<size_t>(g);
    return groups_[gi][static_cast<size_t>(c) * static_cast<size_t>(group_rows_[gi]) +
                       static_cast<size_t>(row & (kGroupRows - 1))];
  }
  float value(int64_t row, int c) const {
    const uint32_t bits = code(row, c);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }

  int64_t num_groups() const { return static_cast<int64_t>(groups_.size()); }
  int64_t group_rows(int64_t g) const { return group_rows_[static_cast<size_t>(g)]; }
  // The cells of column c in group g (group_rows(g) of them).
  const uint32_t* group_column(int64_t g, int c) const {
    const auto gi = static_cast<size_t>(g);
    return groups_[gi] + static_cast<size_t>(c) * static_cast<size_t>(group_rows_[gi]);
  }

  const LoadReport& report() const { return report_; }
  LoadReport& report() { return report_; }
  const std::string& source() const { return report_.source; }

  // Assembles a table. Each group holds group_rows[g] * specs.size() cells (column-major);
  // `backing` keeps them alive (a mapping or owned blocks).
  ColumnTable(std::vector<ColumnSpec> specs, std::vector<std::shared_ptr<const Dictionary>> dicts,
              std::vector<const uint32_t*> groups, std::vector<int64_t> group_rows, std::shared_ptr<const void> backing,
              LoadReport report);

  // A table from whole columns (tests, synthetic data): categorical columns as raw strings,
  // numeric ones as floats; `cells[c]` is the column c's values of the matching kind.
  struct ColumnValues {
    std::vector<std::string> strings;  // categorical
    std::vector<float> numbers;        // numeric
  };
  static ColumnTable from_columns(const std::vector<ColumnSpec>& specs, const std::vector<ColumnValues>& columns,
                                  const std::string& source = "<memory>");

  // The rows in `rows` (in that order) as a new in-memory table; dictionaries are shared and the
  // counts recomputed over the selection.
  ColumnTable select(const std::vector<int64_t>& rows) const;

 private:
  std::vector<ColumnSpec> specs_;
  std::vector<std::shared_ptr<const Dictionary>> dicts_;
  std::vector<const uint32_t*> groups_;
  std::vector<int64_t> group_rows_;
  std::shared_ptr<const void> backing_;
  int64_t rows_ = 0;
  LoadReport report_;
};

// Owned group blocks: the in-memory form of a table's cells.
struct GroupBlocks {
  std::vector<BigVector<uint32_t>> blocks;
  std::vector<int64_t> rows;
};
ColumnTable make_table(std::vector<ColumnSpec> specs, std::vector<std::shared_ptr<const Dictionary>> dicts,
                       std::shared_ptr<GroupBlocks> blocks, LoadReport report);

}  // namespace rechub::data
