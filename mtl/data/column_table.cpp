#include "rechub/mtl/data/column_table.h"

#include <limits>

#include "rechub/core/error.h"

namespace rechub::data {

const char* column_role_name(ColumnRole r) {
  switch (r) {
    case ColumnRole::sparse:
      return "sparse feature";
    case ColumnRole::dense:
      return "dense feature";
    case ColumnRole::binary_label:
      return "binary label";
    case ColumnRole::regression_label:
      return "regression label";
    case ColumnRole::mapped_label:
      return "mapped binary label";
  }
  return "?";
}

const char* cache_status_name(CacheStatus s) {
  switch (s) {
    case CacheStatus::not_used:
      return "not used";
    case CacheStatus::built:
      return "built";
    case CacheStatus::loaded:
      return "loaded";
    case CacheStatus::rebuilt_stale:
      return "rebuilt (stale)";
    case CacheStatus::rebuilt_corrupt:
      return "rebuilt (corrupt)";
    case CacheStatus::unwritable:
      return "not written";
  }
  return "?";
}

std::vector<ColumnSpec> column_specs(const Schema& schema) {
  std::vector<ColumnSpec> out;
  for (const auto& f : schema.sparse) out.push_back({f.name, ColumnRole::sparse});
  for (const auto& f : schema.dense) out.push_back({f.name, ColumnRole::dense});
  for (const auto& l : schema.labels) {
    ColumnRole r = l.type == TaskType::regression ? ColumnRole::regression_label
                   : l.is_mapped()                ? ColumnRole::mapped_label
                                                  : ColumnRole::binary_label;
    out.push_back({l.column, r, l.missing_ok, l.missing_value});
  }
  return out;
}

ColumnTable::ColumnTable(std::vector<ColumnSpec> specs, std::vector<std::shared_ptr<const Dictionary>> dicts,
                         std::vector<const uint32_t*> groups, std::vector<int64_t> group_rows,
                         std::shared_ptr<const void> backing, LoadReport report)
    : specs_(std::move(specs)),
      dicts_(std::move(dicts)),
      groups_(std::move(groups)),
      group_rows_(std::move(group_rows)),
      backing_(std::move(backing)),
      report_(std::move(report)) {
  if (dicts_.size() != specs_.size()) throw Error("ColumnTable: one dictionary per column is required");
  if (groups_.size() != group_rows_.size()) throw Error("ColumnTable: groups and group sizes differ");
  rows_ = 0;
  for (size_t g = 0; g < group_rows_.size(); ++g) {
    const bool last = g + 1 == group_rows_.size();
    if (group_rows_[g] <= 0 || group_rows_[g] > kGroupRows || (!last && group_rows_[g] != kGroupRows))
      throw Error("ColumnTable: every group but the last must hold exactly " + std::to_string(kGroupRows) + " rows");
    rows_ += group_rows_[g];
  }
  for (auto& d : dicts_)
    if (!d) d = std::make_shared<const Dictionary>();
  report_.rows = rows_;
}

int ColumnTable::find(std::string_view name) const {
  for (size_t c = 0; c < specs_.size(); ++c)
    if (specs_[c].name == name) return static_cast<int>(c);
  return -1;
}

int ColumnTable::require(std::string_view name) const {
  const int c = find(name);
  if (c < 0) {
    std::string have;
    for (const auto& s : specs_) have += (have.empty() ? "" : ", ") + s.name;
    throw Error(source() + ": no column '" + std::string(name) + "' in the table (it holds: " + have + ")");
  }
  return c;
}

ColumnTable make_table(std::vector<ColumnSpec> specs, std::vector<std::shared_ptr<const Dictionary>> dicts,
                       std::shared_ptr<GroupBlocks> blocks, LoadReport report) {
  std::vector<const uint32_t*> ptrs;
  for (const auto& b : blocks->blocks) ptrs.push_back(b.data());
  std::vector<int64_t> rows = blocks->rows;
  return ColumnTable(std::move(specs), std::move(dicts), std::move(ptrs), std::move(rows), std::move(blocks),
                     std::move(report));
}

ColumnTable ColumnTable::from_columns(const std::vector<ColumnSpec>& specs, const std::vector<ColumnValues>& columns,
                                      const std::string& source) {
  if (columns.size() != specs.size()) throw Error("ColumnTable::from_columns: one column of values per spec");
  int64_t n = -1;
  for (size_t c = 0; c < specs.size(); ++c) {
    const auto len =
        static_cast<int64_t>(is_categorical(specs[c].role) ? columns[c].strings.size() : columns[c].numbers.size());
    if (n >= 0 && len != n)
      throw Error("ColumnTable::from_columns: column '" + specs[c].name + "' has " + std::to_string(len) +
                  " values, the first column " + std::to_string(n));
    n = len;
  }
  if (n < 0) n = 0;
  std::vector<std::shared_ptr<const Dictionary>> dicts;
  std::vector<std::vector<uint32_t>> cells(specs.size());
  for (size_t c = 0; c < specs.size(); ++c) {
    auto d = std::make_shared<Dictionary>();
    cells[c].resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      uint32_t v;
      if (is_categorical(specs[c].role)) {
        v = d->intern(columns[c].strings[static_cast<size_t>(r)]);
        d->add_count(v);
      } else {
        std::memcpy(&v, &columns[c].numbers[static_cast<size_t>(r)], 4);
      }
      cells[c][static_cast<size_t>(r)] = v;
    }
    dicts.push_back(std::move(d));
  }
  auto blocks = std::make_shared<GroupBlocks>();
  for (int64_t start = 0; start < n; start += kGroupRows) {
    const int64_t len = std::min(kGroupRows, n - start);
    BigVector<uint32_t> b(static_cast<size_t>(len) * specs.size());
    for (size_t c = 0; c < specs.size(); ++c)
      std::memcpy(b.data() + c * static_cast<size_t>(len), cells[c].data() + start, static_cast<size_t>(len) * 4);
    blocks->blocks.push_back(std::move(b));
    blocks->rows.push_back(len);
  }
  LoadReport rep;
  rep.source = source;
  return make_table(specs, std::move(dicts), std::move(blocks), rep);
}

ColumnTable ColumnTable::select(const std::vector<int64_t>& rows) const {
  const size_t nc = specs_.size();
  auto blocks = std::make_shared<GroupBlocks>();
  const auto n = static_cast<int64_t>(rows.size());
  for (int64_t start = 0; start < n; start += kGroupRows) {
    const int64_t len = std::min(kGroupRows, n - start);
    BigVector<uint32_t> b(static_cast<size_t>(len) * nc);
    for (size_t c = 0; c < nc; ++c)
      for (int64_t i = 0; i < len; ++i) {
        const int64_t r = rows[static_cast<size_t>(start + i)];
        if (r < 0 || r >= rows_)
          throw Error(source() + ": row " + std::to_string(r) + " is out of range (the table has " +
                      std::to_string(rows_) + " rows)");
        b[c * static_cast<size_t>(len) + static_cast<size_t>(i)] = code(r, static_cast<int>(c));
      }
    blocks->blocks.push_back(std::move(b));
    blocks->rows.push_back(len);
  }
  // Dictionaries keep their codes; counts describe the selection (a vocabulary fitted on a split
  // must not see the other splits' frequencies).
  std::vector<std::shared_ptr<const Dictionary>> dicts;
  for (size_t c = 0; c < nc; ++c) {
    if (!is_categorical(specs_[c].role)) {
      dicts.push_back(dicts_[c]);
      continue;
    }
    auto d = std::make_shared<Dictionary>(*dicts_[c]);
    for (uint32_t k = 0; k < d->size(); ++k) d->set_count(k, 0);
    for (const auto& b : blocks->blocks) {
      const size_t len = b.size() / nc;
      const uint32_t* col = b.data() + c * len;
      for (size_t i = 0; i < len; ++i)
        if (col[i] != Dictionary::kMissing) d->add_count(col[i]);
    }
    dicts.push_back(std::move(d));
  }
  LoadReport rep = report_;
  rep.skipped_rows = 0;
  rep.skipped_examples.clear();
  return make_table(specs_, std::move(dicts), std::move(blocks), rep);
}

}  // namespace rechub::data
