#pragma once
// Schema inference from a CSV header and a sample of rows: integer-valued columns become sparse
// features, float-valued ones dense features, text columns sparse features; the named label
// columns become tasks (binary when every sampled value is 0 or 1, regression otherwise). The
// report says, column by column, what was decided and why.
#include <cstdint>
#include <string>
#include <vector>

#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/defaults.h"

namespace rechub::data {

struct InferOptions {
  std::vector<std::string> label_columns{};  // label columns; task name = column name, type inferred
  std::vector<Label> labels{};               // or labels in full (mappings, types, task names)
  std::vector<std::string> dense{};          // columns forced dense (e.g. an integer-valued age)
  std::vector<std::string> sparse{};         // columns forced sparse
  std::vector<std::string> ignore{};         // columns that are neither features nor labels
  int64_t sample_rows = 10000;               // rows read to decide
  int64_t embed_dim = defaults::embed_dim;   // SparseFeature::embed_dim of inferred features
};

struct InferredSchema {
  Schema schema{};
  std::string report{};
};

// `columns` names the columns of a header-less file (CsvOptions::header = false).
InferredSchema infer_schema(const std::string& path, const InferOptions& options = {}, const CsvOptions& csv = {},
                            const std::vector<std::string>& columns = {});
InferredSchema infer_schema_from_rows(const RawRows& rows, const std::string& name, const InferOptions& options,
                                      const CsvOptions& csv, bool headerless = false);

}  // namespace rechub::data
