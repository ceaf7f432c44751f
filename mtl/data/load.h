#pragma once
// One call from files to encoded splits: parse (through the binary cache), fit the preprocessor on
// the training split only, transform every split.
//
//   auto data = load_data({.train = "train.csv", .val = "val.csv", .test = "test.csv"}, schema);
//   DataLoader loader(data.train, {.batch_size = 4096, .seed = 7});
//   model_features = data.preprocessor->schema().sparse;
//
// A JSON data config holds the same in one file (load_data_config):
//   {"schema": {...}, "csv": {...}, "preprocess": {...}, "cache": {...},
//    "files": {"train": "...", "val": "...", "test": "..."},
//    "split": {"val": 0.1, "test": 0.1, "seed": 1}}
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/defaults.h"

namespace rechub::data {

struct DataFiles {
  std::string train{};
  std::string val{};   // optional
  std::string test{};  // optional
};

struct DataOptions {
  CsvOptions csv{};
  CacheOptions cache{};
  PreprocessOptions preprocess{};
  // For a split without its own file: this fraction of the training file's rows, drawn with
  // split_seed (the rest stays training data).
  double val_fraction = 0;
  double test_fraction = 0;
  uint64_t split_seed = defaults::seed;
  // Streaming (data larger than memory): the training rows are not loaded. The CSV is parsed into
  // the binary cache (one streaming pass, or none when a valid cache exists), the preprocessor is
  // fitted from the cache's dictionaries and one pass over its dense columns, and
  // LoadedData::train_source reads the cache in pieces (Preprocessor::stream); train stays null.
  // Needs caching on, and separate validation/test files (val_fraction and test_fraction pick
  // random rows of the whole training table: refused). Validation and test sets are loaded into
  // memory as usual.
  bool stream = false;
};

struct LoadedData {
  std::shared_ptr<Preprocessor> preprocessor{};
  std::shared_ptr<const Dataset> train{};  // null when streaming
  // The training rows as a source: train itself, or the streamed cache (DataOptions::stream).
  std::shared_ptr<const BatchSource> train_source{};
  std::shared_ptr<const CacheFile> train_cache{};  // streaming only
  std::shared_ptr<const Dataset> val{};            // null when there is none
  std::shared_ptr<const Dataset> test{};           // null when there is none
  std::vector<LoadReport> reports{};               // one per file read
};

LoadedData load_data(const DataFiles& files, const Schema& schema, const DataOptions& options = {});

struct DataConfig {
  Schema schema{};
  DataFiles files{};
  DataOptions options{};
};
// Relative file paths are taken relative to `base_dir`.
DataConfig data_config_from_json(const nlohmann::json& j, const std::string& origin = "<json>",
                                 const std::string& base_dir = "");
DataConfig load_data_config(const std::string& path);
nlohmann::json cache_options_to_json(const CacheOptions& o);
CacheOptions cache_options_from_json(const nlohmann::json& j, const std::string& origin = "<json>");

}  // namespace rechub::data
