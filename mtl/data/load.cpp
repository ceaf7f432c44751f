#include "rechub/mtl/data/load.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "rechub/core/error.h"
#include "rechub/mtl/data/split.h"

namespace rechub::data {

using nlohmann::json;

LoadedData load_data(const DataFiles& files, const Schema& schema, const DataOptions& o) {
  validate_schema(schema);
  if (files.train.empty()) throw Error("load_data: no training file");
  if (!files.val.empty() && o.val_fraction > 0)
    throw Error("load_data: give either a validation file or val_fraction, not both");
  if (!files.test.empty() && o.test_fraction > 0)
    throw Error("load_data: give either a test file or test_fraction, not both");
  LoadedData out;
  std::optional<ColumnTable> train, val, test;
  if (o.stream) {
    if (o.val_fraction > 0 || o.test_fraction > 0)
      throw Error(
          "load_data: streaming takes validation and test rows from their own files; val_fraction and "
          "test_fraction draw random rows of the whole training table (split the file first)");
    LoadReport rep;
    out.train_cache = open_csv_cache(files.train, schema, o.csv, o.cache, &rep);
    out.reports.push_back(rep);
  } else {
    train = load_csv(files.train, schema, o.csv, o.cache);
    out.reports.push_back(train->report());
    if (o.val_fraction > 0 || o.test_fraction > 0) {
      const SplitRows s = split_rows(train->rows(), o.val_fraction, o.test_fraction, o.split_seed);
      if (o.val_fraction > 0) val = train->select(s.val);
      if (o.test_fraction > 0) test = train->select(s.test);
      train = train->select(s.train);
    }
  }
  if (!files.val.empty()) {
    val = load_csv(files.val, schema, o.csv, o.cache);
    out.reports.push_back(val->report());
  }
  if (!files.test.empty()) {
    test = load_csv(files.test, schema, o.csv, o.cache);
    out.reports.push_back(test->report());
  }
  out.preprocessor = std::make_shared<Preprocessor>(schema, o.preprocess, o.csv);
  if (o.stream) {
    out.preprocessor->fit(*out.train_cache);
    out.train_source = out.preprocessor->stream(out.train_cache);
  } else {
    out.preprocessor->fit(*train);
    out.train = std::make_shared<const Dataset>(out.preprocessor->transform(*train));
    out.train_source = out.train;
  }
  if (val) out.val = std::make_shared<const Dataset>(out.preprocessor->transform(*val));
  if (test) out.test = std::make_shared<const Dataset>(out.preprocessor->transform(*test));
  return out;
}

json cache_options_to_json(const CacheOptions& o) {
  return {{"enabled", o.enabled},
          {"dir", o.dir},
          {"compress", o.compress},
          {"level", o.level},
          {"verify_checksum", o.verify_checksum}};
}

CacheOptions cache_options_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw Error(origin + ": cache: must be a JSON object");
  CacheOptions o;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    auto need = [&](bool ok, const char* what) {
      if (!ok) throw Error(origin + ": cache: \"" + k + "\" must be " + what);
    };
    if (k == "enabled") {
      need(v.is_boolean(), "true or false");
      o.enabled = v.get<bool>();
    } else if (k == "dir") {
      need(v.is_string(), "a string");
      o.dir = v.get<std::string>();
    } else if (k == "compress") {
      need(v.is_boolean(), "true or false");
      o.compress = v.get<bool>();
    } else if (k == "level") {
      need(v.is_number_integer() && v.get<int>() >= 1 && v.get<int>() <= 22, "an integer in 1..22");
      o.level = v.get<int>();
    } else if (k == "verify_checksum") {
      need(v.is_boolean(), "true or false");
      o.verify_checksum = v.get<bool>();
    } else {
      throw Error(origin + ": cache: unknown key \"" + k + "\"");
    }
  }
  return o;
}

DataConfig data_config_from_json(const json& j, const std::string& origin, const std::string& base_dir) {
  if (!j.is_object()) throw Error(origin + ": a data config must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "schema" && it.key() != "csv" && it.key() != "preprocess" && it.key() != "cache" &&
        it.key() != "files" && it.key() != "split")
      throw Error(origin + ": unknown key \"" + it.key() + "\"");
  if (!j.contains("schema")) throw Error(origin + ": no \"schema\"");
  DataConfig c;
  c.schema = schema_from_json(j["schema"], origin);
  if (j.contains("csv")) c.options.csv = csv_options_from_json(j["csv"], origin);
  if (j.contains("preprocess")) c.options.preprocess = preprocess_options_from_json(j["preprocess"], origin);
  if (j.contains("cache")) c.options.cache = cache_options_from_json(j["cache"], origin);
  auto path = [&](const json& v, const char* what) {
    if (!v.is_string()) throw Error(origin + ": files: \"" + what + "\" must be a string");
    std::filesystem::path p(v.get<std::string>());
    if (p.is_relative() && !base_dir.empty()) p = std::filesystem::path(base_dir) / p;
    return p.string();
  };
  if (j.contains("files")) {
    const json& f = j["files"];
    if (!f.is_object()) throw Error(origin + ": \"files\" must be an object");
    for (auto it = f.begin(); it != f.end(); ++it) {
      if (it.key() == "train")
        c.files.train = path(it.value(), "train");
      else if (it.key() == "val")
        c.files.val = path(it.value(), "val");
      else if (it.key() == "test")
        c.files.test = path(it.value(), "test");
      else
        throw Error(origin + ": files: unknown key \"" + it.key() + "\"");
    }
  }
  if (j.contains("split")) {
    const json& s = j["split"];
    if (!s.is_object()) throw Error(origin + ": \"split\" must be an object");
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (it.key() == "val" && it.value().is_number())
        c.options.val_fraction = it.value().get<double>();
      else if (it.key() == "test" && it.value().is_number())
        c.options.test_fraction = it.value().get<double>();
      else if (it.key() == "seed" && it.value().is_number_unsigned())
        c.options.split_seed = it.value().get<uint64_t>();
      else
        throw Error(origin + ": split: \"" + it.key() + "\" must be val/test (fractions) or seed (an integer >= 0)");
    }
  }
  return c;
}

DataConfig load_data_config(const std::string& path) {
  const auto dir = std::filesystem::path(path).parent_path().string();
  return data_config_from_json(read_json_file(path), path, dir);
}

}  // namespace rechub::data
