#pragma once
// Reading and writing model configs as JSON (checkpoints, make_model): every field optional with
// the struct's default, a wrong type or an unknown key is an error naming the model and the key.
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "rechub/core/error.h"
#include "rechub/mtl/models/model.h"

namespace rechub::models::detail {

inline std::vector<std::string> task_type_names(const std::vector<TaskType>& v) {
  std::vector<std::string> out;
  for (TaskType t : v) out.push_back(data::task_type_name(t));
  return out;
}

// Each model lists its config's fields once, in a function template `fields(config, visitor)`
// that calls `visitor("key", config.member)` per field; ConfigWriter and ConfigReader are the two
// visitors, so to_json and from_json can never disagree on a key.
class ConfigWriter {
 public:
  template <class T>
  void operator()(const char* key, const T& v) {
    j_[key] = v;
  }
  void operator()(const char* key, const Features& f) { j_[key] = features_to_json(f); }
  void operator()(const char* key, const std::vector<TaskType>& t) { j_[key] = task_type_names(t); }
  nlohmann::json take() { return std::move(j_); }

 private:
  nlohmann::json j_ = nlohmann::json::object();
};

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string kind) : j_(j), kind_(std::move(kind)) {
    RECHUB_CHECK(j.is_object(), kind_ << " config: expected a JSON object, got " << j.dump());
  }

  template <class T>
  void operator()(const char* key, T& out) {
    seen_.insert(key);
    if (!j_.contains(key)) return;
    try {
      out = j_.at(key).get<T>();
    } catch (const nlohmann::json::exception& e) {
      RECHUB_FAIL(kind_ << " config: '" << key << "' = " << j_.at(key).dump() << " has the wrong type (" << e.what()
                        << ")");
    }
  }

  void operator()(const char* key, Features& f) {
    seen_.insert(key);
    if (j_.contains(key)) f = features_from_json(j_.at(key), kind_ + " config");
  }

  void operator()(const char* key, std::vector<TaskType>& out) {
    seen_.insert(key);
    if (!j_.contains(key)) return;
    out.clear();
    for (const auto& t : j_.at(key)) {
      const std::string s = t.is_string() ? t.get<std::string>() : t.dump();
      if (s == "binary" || s == "classification")
        out.push_back(TaskType::binary);
      else if (s == "regression")
        out.push_back(TaskType::regression);
      else
        RECHUB_FAIL(kind_ << " config: task type '" << s << "': expected binary or regression");
    }
  }

  // Unknown keys are errors (a typo would otherwise silently fall back to a default).
  void finish() const {
    for (const auto& [k, v] : j_.items()) RECHUB_CHECK(seen_.count(k), kind_ << " config: unknown key '" << k << "'");
  }

 private:
  const nlohmann::json& j_;
  std::string kind_;
  std::set<std::string> seen_;
};

// The fields every model config has.
template <class C, class V>
void common_fields(C& c, V& v) {
  v("features", c.features);
  v("task_names", c.task_names);
  v("dropout", c.dropout);
  v("fused", c.fused);
  v("seed", c.seed);
  v("embedding_init_std", c.embedding_init_std);
  v("sparse_embeddings", c.sparse_embeddings);
}

template <class C, class Fields>
nlohmann::json write_config(const C& c, Fields fields) {
  ConfigWriter w;
  fields(c, w);
  return w.take();
}

template <class C, class Fields>
C read_config(const nlohmann::json& j, const std::string& kind, Fields fields) {
  C c;
  ConfigReader r(j, kind);
  fields(c, r);
  r.finish();
  return c;
}

// The task index in "<prefix><t>." at the start of `name`, or -1.
inline int64_t index_after(const std::string& name, const std::string& prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  size_t i = prefix.size();
  int64_t v = 0;
  bool any = false;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    v = v * 10 + (name[i++] - '0');
    any = true;
  }
  return any && i < name.size() && name[i] == '.' ? v : -1;
}

inline bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace rechub::models::detail
