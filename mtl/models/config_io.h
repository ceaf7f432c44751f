#pragma once
// Reading and writing model configs as JSON (checkpoints, make_model): every field optional with
// the struct's default, a wrong type or an unknown key is an error naming the model and the key.
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "mtl/models/model.h"

namespace rechub::models::detail {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string kind) : j_(j), kind_(std::move(kind)) {
    RECHUB_CHECK(j.is_object(), kind_ << " config: expected a JSON object, got " << j.dump());
  }

  template <class T>
  ConfigReader& get(const char* key, T& out) {
    seen_.insert(key);
    if (!j_.contains(key)) return *this;
    try {
      out = j_.at(key).get<T>();
    } catch (const nlohmann::json::exception& e) {
      RECHUB_FAIL(kind_ << " config: '" << key << "' = " << j_.at(key).dump() << " has the wrong type (" << e.what()
                        << ")");
    }
    return *this;
  }

  ConfigReader& features(Features& f) {
    seen_.insert("features");
    if (j_.contains("features")) f = features_from_json(j_.at("features"), kind_ + " config");
    return *this;
  }

  ConfigReader& task_types(std::vector<TaskType>& out) {
    seen_.insert("task_types");
    if (!j_.contains("task_types")) return *this;
    out.clear();
    for (const auto& t : j_.at("task_types")) {
      const std::string s = t.is_string() ? t.get<std::string>() : t.dump();
      if (s == "binary" || s == "classification")
        out.push_back(TaskType::binary);
      else if (s == "regression")
        out.push_back(TaskType::regression);
      else
        RECHUB_FAIL(kind_ << " config: task type '" << s << "': expected binary or regression");
    }
    return *this;
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

inline std::vector<std::string> task_type_names(const std::vector<TaskType>& v) {
  std::vector<std::string> out;
  for (TaskType t : v) out.push_back(data::task_type_name(t));
  return out;
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
