#pragma once
// Schema: which CSV columns are sparse (id) features, dense (float) features and task labels.
//
//   Schema s{.sparse = {{.name = "101"}, {.name = "205", .embed_dim = 8}},
//            .dense = {{.name = "D508"}},
//            .labels = {{.task = "ctr", .column = "click"},
//                       {.task = "ctcvr", .column = "purchase"}}};
//
// A schema comes from code (as above), from a JSON file (load_schema) or from a CSV header plus
// the label column names (infer_schema in mtl/data/infer.h). The model code takes `sparse` and
// `dense` from a fitted schema (Preprocessor::schema()), where every vocab_size is final.
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "rechub/mtl/defaults.h"

namespace rechub::data {

struct SparseFeature {
  std::string name{};
  // Ids are 0..vocab_size-1 with 0 the out-of-vocabulary id (unseen, rare or missing values).
  // Preprocessor::fit sets it; a value given before fitting caps the vocabulary (the most frequent
  // vocab_size-1 values keep their own id).
  int64_t vocab_size = 0;
  int64_t embed_dim = defaults::embed_dim;
  // Another sparse feature whose embedding table this one uses; both then share one vocabulary
  // (fitted on the values of both columns), so equal raw values get equal ids.
  std::string shared_with{};
};

struct DenseFeature {
  std::string name{};
};

// A task's kind: binary (a 0/1 label; BCE loss, AUC and LogLoss) or regression (a real label; MSE).
// Written as TaskType::binary / TaskType::regression, or by name: a string converts implicitly, so
// a config may say `.task_types = {"binary", "regression"}` (torch-rechub's "classification" is
// binary). An unknown name throws rechub::Error naming it and the valid ones.
class TaskType {
 public:
  enum Kind : uint8_t { binary, regression };
  constexpr TaskType(Kind k = binary) : kind_(k) {}  // NOLINT(google-explicit-constructor): TaskType::binary
  TaskType(std::string_view name) : kind_(from_string(name).kind_) {}      // NOLINT(google-explicit-constructor)
  TaskType(const char* name) : TaskType(std::string_view(name)) {}         // NOLINT(google-explicit-constructor)
  TaskType(const std::string& name) : TaskType(std::string_view(name)) {}  // NOLINT(google-explicit-constructor)
  // "binary" or "classification" -> binary, "regression" -> regression.
  static TaskType from_string(std::string_view name);
  constexpr operator Kind() const { return kind_; }  // switch, ==, TaskType::binary comparisons
  const char* name() const { return kind_ == binary ? "binary" : "regression"; }

 private:
  Kind kind_;
};
const char* task_type_name(TaskType t);

struct Label {
  std::string task{};    // the task's name (metrics, logs, checkpoints)
  std::string column{};  // the CSV column it is read from
  TaskType type = TaskType::binary;
  // Label mapping for raw files: a binary label is 1 when the raw (trimmed) value is one of
  // positive_values, or when positive_if says so, and 0 otherwise, e.g. the UCI census file's
  // income column: {.positive_values = {"50000+."}}. Without either, a binary label must read 0
  // or 1 and a regression label any finite number.
  std::vector<std::string> positive_values{};
  std::function<bool(std::string_view)> positive_if{};

  // Missing labels (opt-in, per task): with missing_ok an empty cell (or CsvOptions::missing, or
  // missing_value when set, e.g. "-1") means "this row has no label for this task". The row is
  // kept; its label reads NaN, the task's loss is averaged over the labelled rows of each batch (a
  // batch without any contributes 0) and its metrics are computed over the labelled rows. Without
  // missing_ok a missing label is an error. JSON: "missing": "skip", "missing_value": "-1".
  bool missing_ok = false;
  std::string missing_value{};

  bool is_mapped() const { return !positive_values.empty() || static_cast<bool>(positive_if); }
  // Whether the raw (trimmed) cell means "no label" for this task (missing_ok only).
  bool is_missing_value(std::string_view raw) const {
    return missing_ok && !missing_value.empty() && raw == missing_value;
  }
  // Whether `raw` maps to 1 (is_mapped() only).
  bool is_positive(std::string_view raw) const;
};

struct Schema {
  std::vector<SparseFeature> sparse{};
  std::vector<DenseFeature> dense{};
  std::vector<Label> labels{};
  // Every column of the file in order: required for files without a header, checked against the
  // header otherwise. May hold columns that are neither features nor labels (they are skipped).
  std::vector<std::string> columns{};

  const SparseFeature* find_sparse(std::string_view name) const;
  const DenseFeature* find_dense(std::string_view name) const;
  const Label* find_label_column(std::string_view column) const;
  std::vector<std::string> task_names() const;
  std::vector<TaskType> task_types() const;
  // The feature whose table `name` uses: follows shared_with to its end (name itself if unshared).
  std::string table_owner(std::string_view name) const;
};

// Refuses, with a message naming the column: a label column that is also a feature (the label
// would leak into the inputs: AUC 1.0), a column listed twice, empty names, a shared_with that
// names no sparse feature or forms a cycle, shared tables of different embed_dim, a regression
// label with a mapping, non-positive embed_dim, a schema without features.
void validate_schema(const Schema& schema);

// JSON form (labels' positive_if cannot be written: to_json marks it and from_json refuses to
// use such a label for parsing until the predicate is set again in code):
// {"sparse": ["101", {"name": "205", "embed_dim": 8, "vocab_size": 0, "shared_with": ""}],
//  "dense": ["D508"],
//  "labels": [{"task": "ctr", "column": "click", "type": "binary", "positive": ["1"]}],
//  "columns": [...]}
nlohmann::json schema_to_json(const Schema& schema);
// `origin` names the source in error messages ("config.json").
Schema schema_from_json(const nlohmann::json& j, const std::string& origin = "<json>");
// Reads a JSON file: either a schema object or a data config whose "schema" member is one.
Schema load_schema(const std::string& path);
nlohmann::json read_json_file(const std::string& path);

}  // namespace rechub::data
