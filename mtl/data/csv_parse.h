#pragma once
// The streaming core of the CSV reader (internal to mtl/data): parses an input window by window
// and hands each completed row group to a sink, so that a cache can be written from a file larger
// than memory without holding the table.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/mtl/data/column_table.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/csv_tokenizer.h"
#include "rechub/mtl/data/input_stream.h"

namespace rechub::data::detail {

class GroupSink {
 public:
  virtual ~GroupSink() = default;
  // `cells`: rows * ncols values, column-major; rows == ColumnTable::kGroupRows except for the last.
  virtual void add_group(const uint32_t* cells, int64_t rows) = 0;
  // The same for a block the sink may keep (moving from it); by default it is copied.
  virtual void add_group_owned(BigVector<uint32_t>&& cells, int64_t rows) { add_group(cells.data(), rows); }
};

struct ParseOutput {
  std::vector<std::shared_ptr<Dictionary>> dicts;  // one per spec (empty for numeric columns)
  int64_t rows = 0;
  int64_t skipped_rows = 0;
  std::vector<std::string> skipped_examples;
};

// Throws rechub::Error with every problem found (up to options.max_errors).
ParseOutput parse_csv_stream(InputStream& in, const std::string& name, const std::vector<ColumnSpec>& specs,
                             const std::vector<std::string>& columns, const CsvOptions& options, GroupSink& sink);

// A problem in a record; `line` counts the newlines before the record in the bytes parsed.
struct LineProblem {
  int64_t line;
  std::string text;
};

// "a, b, c" (at most `limit` names).
std::string join_names(const std::vector<std::string>& names, size_t limit = 50);
// The problems one per line, with their count (and whether max_errors cut the list short).
std::string format_problems(const std::vector<std::string>& problems, bool stopped, int64_t max_errors);
// Reads the header record (skipping a UTF-8 BOM and blank lines) and consumes it; without a header
// returns `columns`. `line` is set to the newlines consumed. Checks the header against `columns`.
std::vector<std::string> read_header(InputStream& in, const std::string& name, const CsvOptions& opts,
                                     const TokenizerConfig& cfg, const std::vector<std::string>& columns,
                                     int64_t& line);

// Keeps the groups in memory.
class MemorySink final : public GroupSink {
 public:
  explicit MemorySink(size_t ncols) : ncols_(ncols), blocks_(std::make_shared<GroupBlocks>()) {}
  void add_group(const uint32_t* cells, int64_t rows) override;
  void add_group_owned(BigVector<uint32_t>&& cells, int64_t rows) override;
  std::shared_ptr<GroupBlocks> blocks() const { return blocks_; }

 private:
  size_t ncols_;
  std::shared_ptr<GroupBlocks> blocks_;
};

ColumnTable table_from_parse(const std::string& name, const std::vector<ColumnSpec>& specs, ParseOutput out,
                             std::shared_ptr<GroupBlocks> blocks);

}  // namespace rechub::data::detail
