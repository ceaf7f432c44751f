#include "rechub/mtl/data/schema.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "rechub/core/error.h"

namespace rechub::data {

using nlohmann::json;

const char* task_type_name(TaskType t) { return t.name(); }

TaskType TaskType::from_string(std::string_view name) {
  if (name == "binary" || name == "classification") return binary;
  if (name == "regression") return regression;
  RECHUB_FAIL("unknown task type '" << name << "' (expected binary, classification (= binary) or regression)");
}

bool Label::is_positive(std::string_view raw) const {
  if (positive_if) return positive_if(raw);
  return std::find(positive_values.begin(), positive_values.end(), raw) != positive_values.end();
}

const SparseFeature* Schema::find_sparse(std::string_view name) const {
  for (const auto& f : sparse)
    if (f.name == name) return &f;
  return nullptr;
}
const DenseFeature* Schema::find_dense(std::string_view name) const {
  for (const auto& f : dense)
    if (f.name == name) return &f;
  return nullptr;
}
const Label* Schema::find_label_column(std::string_view column) const {
  for (const auto& l : labels)
    if (l.column == column) return &l;
  return nullptr;
}
std::vector<std::string> Schema::task_names() const {
  std::vector<std::string> out;
  for (const auto& l : labels) out.push_back(l.task);
  return out;
}
std::vector<TaskType> Schema::task_types() const {
  std::vector<TaskType> out;
  for (const auto& l : labels) out.push_back(l.type);
  return out;
}

std::string Schema::table_owner(std::string_view name) const {
  std::string cur(name);
  for (size_t steps = 0; steps <= sparse.size(); ++steps) {
    const SparseFeature* f = find_sparse(cur);
    if (!f || f->shared_with.empty()) return cur;
    cur = f->shared_with;
  }
  throw Error("sparse feature '" + std::string(name) + "': shared_with forms a cycle");
}

void validate_schema(const Schema& s) {
  if (s.sparse.empty() && s.dense.empty()) throw Error("schema: no features (give sparse and/or dense features)");
  std::map<std::string, std::string> role;  // column -> what it is
  auto claim = [&](const std::string& col, const std::string& what) {
    if (col.empty()) throw Error("schema: a " + what + " has an empty column name");
    auto [it, fresh] = role.emplace(col, what);
    if (!fresh) throw Error("schema: column '" + col + "' is listed twice (as " + it->second + " and as " + what + ")");
  };
  for (const auto& f : s.sparse) {
    claim(f.name, "a sparse feature");
    if (f.embed_dim <= 0)
      throw Error("schema: sparse feature '" + f.name + "': embed_dim must be positive, got " +
                  std::to_string(f.embed_dim));
    if (f.vocab_size < 0)
      throw Error("schema: sparse feature '" + f.name + "': vocab_size must be >= 0, got " +
                  std::to_string(f.vocab_size));
  }
  for (const auto& f : s.dense) claim(f.name, "a dense feature");
  std::set<std::string> tasks;
  std::set<std::string> label_columns;
  for (const auto& l : s.labels) {
    if (l.task.empty()) throw Error("schema: the label of column '" + l.column + "' has no task name");
    if (!tasks.insert(l.task).second) throw Error("schema: task '" + l.task + "' is listed twice");
    if (l.column.empty()) throw Error("schema: task '" + l.task + "' has no label column");
    auto it = role.find(l.column);
    if (it != role.end() && it->second != "a label")
      throw Error("schema: column '" + l.column + "' is the label of task '" + l.task + "' and also " + it->second +
                  ": a label used as an input leaks the answer (AUC 1.0); remove it from the features");
    if (!label_columns.insert(l.column).second)
      throw Error("schema: column '" + l.column + "' is the label of two tasks");
    role.emplace(l.column, "a label");
    if (l.type == TaskType::regression && l.is_mapped())
      throw Error("schema: task '" + l.task +
                  "' is a regression task: a 0/1 label mapping applies to binary tasks only");
    if (!l.missing_value.empty() && !l.missing_ok)
      throw Error("schema: task '" + l.task + "' names a missing_value ('" + l.missing_value +
                  "') but its labels may not be missing (set \"missing\": \"skip\")");
    if (l.missing_ok && !l.missing_value.empty() && l.is_mapped() &&
        std::find(l.positive_values.begin(), l.positive_values.end(), l.missing_value) != l.positive_values.end())
      throw Error("schema: task '" + l.task + "': the missing_value '" + l.missing_value +
                  "' is also one of its positive values");
  }
  for (const auto& f : s.sparse) {
    if (f.shared_with.empty()) continue;
    if (f.shared_with == f.name) throw Error("schema: sparse feature '" + f.name + "' is shared_with itself");
    if (!s.find_sparse(f.shared_with))
      throw Error("schema: sparse feature '" + f.name + "' is shared_with '" + f.shared_with +
                  "', which is not a sparse feature");
    const std::string owner = s.table_owner(f.name);
    const SparseFeature* o = s.find_sparse(owner);
    if (o->embed_dim != f.embed_dim)
      throw Error("schema: sparse feature '" + f.name + "' shares the table of '" + owner + "' but has embed_dim " +
                  std::to_string(f.embed_dim) + " instead of " + std::to_string(o->embed_dim));
  }
  if (!s.columns.empty()) {
    std::set<std::string> cols;
    for (const auto& c : s.columns)
      if (!cols.insert(c).second) throw Error("schema: 'columns' lists '" + c + "' twice");
    for (const auto& [col, what] : role)
      if (!cols.count(col)) throw Error("schema: column '" + col + "' (" + what + ") is not in 'columns'");
  }
}

json schema_to_json(const Schema& s) {
  json j;
  j["sparse"] = json::array();
  for (const auto& f : s.sparse) {
    json o{{"name", f.name}, {"vocab_size", f.vocab_size}, {"embed_dim", f.embed_dim}};
    if (!f.shared_with.empty()) o["shared_with"] = f.shared_with;
    j["sparse"].push_back(o);
  }
  j["dense"] = json::array();
  for (const auto& f : s.dense) j["dense"].push_back(f.name);
  j["labels"] = json::array();
  for (const auto& l : s.labels) {
    json o{{"task", l.task}, {"column", l.column}, {"type", task_type_name(l.type)}};
    if (!l.positive_values.empty()) o["positive"] = l.positive_values;
    if (l.positive_if) o["positive_if"] = "predicate";
    if (l.missing_ok) o["missing"] = "skip";
    if (!l.missing_value.empty()) o["missing_value"] = l.missing_value;
    j["labels"].push_back(o);
  }
  if (!s.columns.empty()) j["columns"] = s.columns;
  return j;
}

namespace {

[[noreturn]] void bad(const std::string& origin, const std::string& where, const std::string& what) {
  throw Error(origin + ": " + where + ": " + what);
}

std::string get_string(const json& o, const char* key, const std::string& origin, const std::string& where,
                       bool required, const std::string& fallback = "") {
  auto it = o.find(key);
  if (it == o.end()) {
    if (required) bad(origin, where, std::string("missing \"") + key + "\"");
    return fallback;
  }
  if (!it->is_string()) bad(origin, where, std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

int64_t get_int(const json& o, const char* key, const std::string& origin, const std::string& where, int64_t fallback) {
  auto it = o.find(key);
  if (it == o.end()) return fallback;
  if (!it->is_number_integer()) bad(origin, where, std::string("\"") + key + "\" must be an integer");
  return it->get<int64_t>();
}

void check_keys(const json& o, std::initializer_list<const char*> allowed, const std::string& origin,
                const std::string& where) {
  for (auto it = o.begin(); it != o.end(); ++it) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || it.key() == a;
    if (!ok) bad(origin, where, "unknown key \"" + it.key() + "\"");
  }
}

}  // namespace

Schema schema_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) bad(origin, "schema", "must be a JSON object");
  check_keys(j, {"sparse", "dense", "labels", "columns"}, origin, "schema");
  Schema s;
  if (auto it = j.find("sparse"); it != j.end()) {
    if (!it->is_array()) bad(origin, "sparse", "must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      const std::string where = "sparse[" + std::to_string(i) + "]";
      SparseFeature f;
      if (e.is_string()) {
        f.name = e.get<std::string>();
      } else if (e.is_object()) {
        check_keys(e, {"name", "vocab_size", "embed_dim", "shared_with"}, origin, where);
        f.name = get_string(e, "name", origin, where, true);
        f.vocab_size = get_int(e, "vocab_size", origin, where, 0);
        f.embed_dim = get_int(e, "embed_dim", origin, where, 16);
        f.shared_with = get_string(e, "shared_with", origin, where, false);
      } else {
        bad(origin, where, "must be a column name or an object");
      }
      s.sparse.push_back(std::move(f));
    }
  }
  if (auto it = j.find("dense"); it != j.end()) {
    if (!it->is_array()) bad(origin, "dense", "must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      const std::string where = "dense[" + std::to_string(i) + "]";
      if (e.is_string()) {
        s.dense.push_back({e.get<std::string>()});
      } else if (e.is_object()) {
        check_keys(e, {"name"}, origin, where);
        s.dense.push_back({get_string(e, "name", origin, where, true)});
      } else {
        bad(origin, where, "must be a column name or an object");
      }
    }
  }
  if (auto it = j.find("labels"); it != j.end()) {
    if (!it->is_array()) bad(origin, "labels", "must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      const std::string where = "labels[" + std::to_string(i) + "]";
      Label l;
      if (e.is_string()) {
        l.column = l.task = e.get<std::string>();
      } else if (e.is_object()) {
        check_keys(e, {"task", "column", "type", "positive", "positive_if", "missing", "missing_value"}, origin, where);
        l.column = get_string(e, "column", origin, where, true);
        l.task = get_string(e, "task", origin, where, false, l.column);
        const std::string type = get_string(e, "type", origin, where, false, "binary");
        if (type == "binary")
          l.type = TaskType::binary;
        else if (type == "regression")
          l.type = TaskType::regression;
        else
          bad(origin, where, "\"type\" must be \"binary\" or \"regression\", got \"" + type + "\"");
        if (auto p = e.find("positive"); p != e.end()) {
          if (p->is_string()) {
            l.positive_values.push_back(p->get<std::string>());
          } else if (p->is_array()) {
            for (const auto& v : *p) {
              if (!v.is_string()) bad(origin, where, "\"positive\" must hold strings");
              l.positive_values.push_back(v.get<std::string>());
            }
          } else {
            bad(origin, where, "\"positive\" must be a string or an array of strings");
          }
        }
        const std::string missing = get_string(e, "missing", origin, where, false, "error");
        if (missing == "skip")
          l.missing_ok = true;
        else if (missing != "error")
          bad(origin, where, "\"missing\" must be \"skip\" or \"error\", got \"" + missing + "\"");
        l.missing_value = get_string(e, "missing_value", origin, where, false, "");
        if (e.contains("positive_if")) {
          const std::string task = l.task;
          l.positive_if = [task](std::string_view) -> bool {
            throw Error("label of task '" + task +
                        "': its 0/1 mapping was a C++ predicate, which a JSON file cannot hold; set Label::positive_if "
                        "again (or use \"positive\": [values])");
          };
        }
      } else {
        bad(origin, where, "must be a column name or an object");
      }
      s.labels.push_back(std::move(l));
    }
  }
  if (auto it = j.find("columns"); it != j.end()) {
    if (!it->is_array()) bad(origin, "columns", "must be an array of column names");
    for (const auto& c : *it) {
      if (!c.is_string()) bad(origin, "columns", "must be an array of column names");
      s.columns.push_back(c.get<std::string>());
    }
  }
  try {
    validate_schema(s);
  } catch (const Error& e) {
    throw Error(origin + ": " + e.what());
  }
  return s;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    // parse_error for bad syntax, out_of_range for a number that does not fit (say 1e99999).
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

Schema load_schema(const std::string& path) {
  const json j = read_json_file(path);
  if (j.is_object() && j.contains("schema")) return schema_from_json(j["schema"], path);
  return schema_from_json(j, path);
}

}  // namespace rechub::data
