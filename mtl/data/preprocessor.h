#pragma once
// Preprocessor: the fitted state between raw columns and model inputs: a vocabulary per sparse
// embedding table, a normaliser per dense feature, and the label mappings. fit() on the training
// split only; transform() any split; encode_rows() raw string rows for a Predictor; to_json() /
// from_json() so a checkpoint can carry it and prediction encodes exactly as training did.
//
//   Preprocessor prep(schema, {.min_freq = 2, .normalization = Normalization::min_max});
//   prep.fit(train_table);
//   Dataset train = prep.transform(train_table), test = prep.transform(test_table);
//   model_config.features = prep.schema().sparse;   // vocab_size filled in
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/column_table.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/data/vocabulary.h"
#include "rechub/mtl/defaults.h"

namespace rechub::data {

struct PreprocessOptions {
  // Values seen fewer times in the training split get the OOV id 0.
  int64_t min_freq = 1;
  // Dense features: none, min_max ([0, 1] on train), standard (mean 0, std 1 on train, the default)
  // or log_standard (standard of sign(x)·log1p(|x|), for heavy tails).
  Normalization normalization = defaults::normalization;
  // Missing dense values (CsvOptions::allow_missing_dense): the training mean, or zero.
  MissingFill fill = MissingFill::mean;
};
nlohmann::json preprocess_options_to_json(const PreprocessOptions& o);
PreprocessOptions preprocess_options_from_json(const nlohmann::json& j, const std::string& origin = "<json>");

class Preprocessor {
 public:
  Preprocessor() = default;
  // `csv` gives the token rules (trim, missing marker) that encode_rows applies to raw strings.
  explicit Preprocessor(Schema schema, PreprocessOptions options = {}, CsvOptions csv = {});

  // Fits vocabularies and normalisers on a training table (read with this schema).
  void fit(const ColumnTable& train);
  // The same from a cache file read in pieces: vocabularies from its dictionaries' counts, the
  // normalisers from one pass over the dense columns (a row group at a time). Equal to fit() on
  // the table read from that cache.
  void fit(const CacheFile& train);
  bool fitted() const { return fitted_; }

  // The schema with every SparseFeature::vocab_size final (after fit).
  const Schema& schema() const { return schema_; }
  const std::vector<SparseFeature>& sparse_features() const { return schema_.sparse; }
  const std::vector<DenseFeature>& dense_features() const { return schema_.dense; }
  const PreprocessOptions& options() const { return options_; }
  const CsvOptions& csv_options() const { return csv_; }
  // The vocabulary a sparse feature's ids come from (its shared table's when shared_with is set).
  const Vocabulary& vocabulary(std::string_view feature) const;
  const Normalizer& normalizer(std::string_view dense_feature) const;

  // Encodes every row of a table into memory.
  Dataset transform(const ColumnTable& table) const;
  // Encodes rows on demand (the table may be a memory-mapped cache larger than memory).
  std::shared_ptr<const BatchSource> view(std::shared_ptr<const ColumnTable> table) const;
  // Reads and encodes rows from a cache file on demand (pread, a row group at a time): the training
  // source of the streaming path, its memory bounded by what the loader asks for at once. Random
  // rows (gather) cost a read of their row groups' spans: pair it with the DataLoader's block
  // shuffle (LoaderOptions::shuffle_block), which reads blocks of consecutive rows.
  std::shared_ptr<const BatchSource> stream(std::shared_ptr<const CacheFile> file) const;
  // Raw rows (strings, as in a CSV file) with their header, for prediction. Labels are encoded
  // when the header has every label column, else the batch's labels are [B, 0].
  // With `file` and `lines` (the 1-based line of each row, as RawRows::lines), errors name
  // "file:line: column 'c' = 'v'"; without them, the row's index in `rows`.
  Batch encode_rows(const std::vector<std::vector<std::string>>& rows, const std::vector<std::string>& header,
                    const std::string& file = {}, const int64_t* lines = nullptr) const;

  nlohmann::json to_json() const;
  static Preprocessor from_json(const nlohmann::json& j, const std::string& origin = "<json>");
  void save(const std::string& path) const;  // temp file + rename
  static Preprocessor load(const std::string& path);

 private:
  void require_fitted(const char* what) const;
  void fit_impl(const ColumnTable& train,
                const std::function<void(int column, Normalizer::Accumulator& acc)>& dense_values);

  Schema base_;    // as given (vocab_size: caps)
  Schema schema_;  // fitted
  PreprocessOptions options_;
  CsvOptions csv_;
  std::map<std::string, Vocabulary, std::less<>> vocabs_;  // by table owner
  std::map<std::string, Normalizer, std::less<>> normalizers_;
  bool fitted_ = false;
};

}  // namespace rechub::data
