// Schemas: written in code, read from JSON, inferred from a CSV header; the checks that refuse a
// leaking or inconsistent schema.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/infer.h"
#include "rechub/mtl/data/schema.h"
#include "support/test_util.h"

namespace rechub::data {
namespace {

using testing::error_of;

namespace fs = std::filesystem;

std::string data_dir() { return std::string(RECHUB_SOURCE_DIR) + "/examples/data"; }

TEST(Schema, DesignatedInitialisersAndLookups) {
  const Schema s{.sparse = {{.name = "user"},
                            {.name = "item", .embed_dim = 8},
                            {.name = "item2", .embed_dim = 8, .shared_with = "item"}},
                 .dense = {{.name = "price"}},
                 .labels = {{.task = "ctr", .column = "click"},
                            {.task = "time", .column = "dwell", .type = TaskType::regression}}};
  validate_schema(s);
  EXPECT_EQ(s.find_sparse("item")->embed_dim, 8);
  EXPECT_EQ(s.find_sparse("user")->embed_dim, 16);
  EXPECT_EQ(s.find_dense("price")->name, "price");
  EXPECT_EQ(s.task_names(), (std::vector<std::string>{"ctr", "time"}));
  EXPECT_EQ(s.task_types(), (std::vector<TaskType>{TaskType::binary, TaskType::regression}));
  EXPECT_EQ(s.table_owner("item2"), "item");
  EXPECT_EQ(s.table_owner("user"), "user");
}

TEST(Schema, ALabelColumnCanNeverAlsoBeAFeature) {
  const Schema sparse_leak{.sparse = {{.name = "click"}}, .labels = {{.task = "ctr", .column = "click"}}};
  const std::string m1 = error_of([&] { validate_schema(sparse_leak); });
  EXPECT_NE(m1.find("column 'click' is the label of task 'ctr' and also a sparse feature"), std::string::npos) << m1;
  EXPECT_NE(m1.find("AUC 1.0"), std::string::npos);
  const Schema dense_leak{
      .sparse = {{.name = "a"}}, .dense = {{.name = "y"}}, .labels = {{.task = "t", .column = "y"}}};
  EXPECT_NE(error_of([&] {
              validate_schema(dense_leak);
            }).find("column 'y' is the label of task 't' and also a dense feature"),
            std::string::npos);
}

TEST(Schema, RefusesInconsistentDefinitions) {
  EXPECT_NE(error_of([] { validate_schema({}); }).find("no features"), std::string::npos);
  EXPECT_NE(
      error_of([] { validate_schema({.sparse = {{.name = "a"}}, .dense = {{.name = "a"}}}); }).find("listed twice"),
      std::string::npos);
  EXPECT_NE(
      error_of([] { validate_schema({.sparse = {{.name = "a", .shared_with = "zz"}}}); }).find("not a sparse feature"),
      std::string::npos);
  EXPECT_NE(error_of([] {
              validate_schema({.sparse = {{.name = "a", .shared_with = "b"}, {.name = "b", .shared_with = "a"}}});
            }).find("cycle"),
            std::string::npos);
  EXPECT_NE(
      error_of([] {
        validate_schema({.sparse = {{.name = "a", .embed_dim = 4, .shared_with = "b"}, {.name = "b", .embed_dim = 8}}});
      }).find("embed_dim"),
      std::string::npos);
  EXPECT_NE(error_of([] {
              validate_schema(
                  {.sparse = {{.name = "a"}},
                   .labels = {{.task = "r", .column = "r", .type = TaskType::regression, .positive_values = {"x"}}}});
            }).find("regression"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              validate_schema(
                  {.sparse = {{.name = "a"}}, .labels = {{.task = "t", .column = "y"}, {.task = "t", .column = "z"}}});
            }).find("task 't' is listed twice"),
            std::string::npos);
  EXPECT_NE(error_of([] { validate_schema({.sparse = {{.name = "a"}}, .columns = {"b"}}); }).find("not in 'columns'"),
            std::string::npos);
}

TEST(Schema, JsonRoundTrip) {
  const Schema s{
      .sparse = {{.name = "u", .vocab_size = 10, .embed_dim = 4}, {.name = "v", .embed_dim = 4, .shared_with = "u"}},
      .dense = {{.name = "d"}},
      .labels = {{.task = "inc", .column = "income", .positive_values = {"50000+."}},
                 {.task = "r", .column = "r", .type = TaskType::regression}},
      .columns = {"u", "v", "d", "income", "r", "extra"}};
  const Schema t = schema_from_json(schema_to_json(s));
  ASSERT_EQ(t.sparse.size(), 2u);
  EXPECT_EQ(t.sparse[0].vocab_size, 10);
  EXPECT_EQ(t.sparse[1].shared_with, "u");
  EXPECT_EQ(t.dense[0].name, "d");
  EXPECT_EQ(t.labels[0].positive_values, (std::vector<std::string>{"50000+."}));
  EXPECT_EQ(t.labels[1].type, TaskType::regression);
  EXPECT_EQ(t.columns, s.columns);
}

TEST(Schema, JsonShorthandAndErrorsNameTheOrigin) {
  const auto j = nlohmann::json::parse(R"({"sparse": ["a", {"name": "b", "embed_dim": 8}], "dense": ["c"],
                                           "labels": ["y", {"column": "z", "type": "regression"}]})");
  const Schema s = schema_from_json(j, "cfg.json");
  EXPECT_EQ(s.sparse[1].embed_dim, 8);
  EXPECT_EQ(s.labels[0].task, "y");
  EXPECT_EQ(s.labels[1].task, "z");
  EXPECT_NE(error_of([] {
              schema_from_json(nlohmann::json::parse(R"({"sparse": [3]})"), "cfg.json");
            }).find("cfg.json: sparse[0]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              schema_from_json(
                  nlohmann::json::parse(R"({"sparse": ["a"], "labels": [{"column": "y", "type": "ordinal"}]})"),
                  "cfg.json");
            }).find("cfg.json: labels[0]: \"type\""),
            std::string::npos);
  EXPECT_NE(error_of([] {
              schema_from_json(nlohmann::json::parse(R"({"sparse": ["a"], "bogus": 1})"), "cfg.json");
            }).find("unknown key \"bogus\""),
            std::string::npos);
  EXPECT_NE(error_of([] {
              schema_from_json(nlohmann::json::parse(R"({"sparse": ["y"], "labels": ["y"]})"), "cfg.json");
            }).find("cfg.json: schema: column 'y' is the label"),
            std::string::npos);
}

TEST(Schema, AFileThatIsNotJsonIsAnErrorNamingIt) {
  // Found by vocabulary_fuzz: a number too large for a double is nlohmann's out_of_range, not a
  // parse_error; both must become a rechub::Error naming the file, never std::terminate.
  const std::string path = ::testing::TempDir() + "rechub_schema_bad_" + std::to_string(::getpid()) + ".json";
  for (const char* text : {"69898069898576525e576525e}", "{\"sparse\": [", "1e99999"}) {
    std::ofstream(path) << text;
    const std::string e = error_of([&] { load_schema(path); });
    EXPECT_NE(e.find(path + ": not valid JSON"), std::string::npos) << text << " -> " << e;
  }
  fs::remove(path);
}

TEST(Schema, PredicateLabelsSurviveJsonOnlyAsARefusal) {
  const Schema s{
      .sparse = {{.name = "a"}},
      .labels = {{.task = "t", .column = "y", .positive_if = [](std::string_view v) { return v == "yes"; }}}};
  const Schema t = schema_from_json(schema_to_json(s));
  ASSERT_TRUE(t.labels[0].is_mapped());
  const std::string msg = error_of([&] { t.labels[0].is_positive("yes"); });
  EXPECT_NE(msg.find("predicate"), std::string::npos) << msg;
}

TEST(Schema, LoadsTheBundledConfigs) {
  const Schema census = load_schema(data_dir() + "/census-income-kdd/census_income_kdd.json");
  EXPECT_EQ(census.columns.size(), 42u);
  EXPECT_EQ(census.dense.size(), 7u);
  EXPECT_EQ(census.sparse.size(), 32u);
  EXPECT_EQ(census.labels.size(), 2u);
  EXPECT_EQ(census.labels[0].positive_values, (std::vector<std::string>{"50000+."}));
  const Schema ali = load_schema(data_dir() + "/ali-ccp/ali_ccp.json");
  EXPECT_EQ(ali.sparse.size(), 23u);
  EXPECT_EQ(ali.dense.size(), 8u);
  EXPECT_NE(error_of([] { load_schema("/nonexistent/x.json"); }).find("/nonexistent/x.json: cannot open"),
            std::string::npos);
}

TEST(SchemaInference, IntegersSparseFloatsDenseWithAReport) {
  const RawRows raw = read_raw_rows_bytes(
      "click,user,city,price,score\n0,17,paris,1.5,3\n1,42,rome,2.25,4\n0,17,oslo,3,5\n", "shop.csv", {});
  const InferredSchema inf =
      infer_schema_from_rows(raw, "shop.csv", {.label_columns = {"click"}, .dense = {"score"}}, {});
  ASSERT_EQ(inf.schema.sparse.size(), 2u);
  EXPECT_EQ(inf.schema.sparse[0].name, "user");
  EXPECT_EQ(inf.schema.sparse[1].name, "city");
  ASSERT_EQ(inf.schema.dense.size(), 2u);
  EXPECT_EQ(inf.schema.dense[0].name, "price");
  EXPECT_EQ(inf.schema.dense[1].name, "score");
  ASSERT_EQ(inf.schema.labels.size(), 1u);
  EXPECT_EQ(inf.schema.labels[0].type, TaskType::binary);
  EXPECT_NE(inf.report.find("'user': sparse: integer values (2 distinct"), std::string::npos) << inf.report;
  EXPECT_NE(inf.report.find("'city': sparse: text values"), std::string::npos) << inf.report;
  EXPECT_NE(inf.report.find("'price': dense: float values"), std::string::npos) << inf.report;
  EXPECT_NE(inf.report.find("'score': dense (forced)"), std::string::npos) << inf.report;
  EXPECT_NE(inf.report.find("'click': label of task 'click' (binary"), std::string::npos) << inf.report;
}

TEST(SchemaInference, LabelsNeverBecomeFeaturesAndTextLabelsNeedAMapping) {
  const RawRows raw = read_raw_rows_bytes("y,r,x\n0,0.5,1\n1,2.5,2\n", "t.csv", {});
  const InferredSchema inf = infer_schema_from_rows(raw, "t.csv", {.label_columns = {"y", "r"}}, {});
  EXPECT_EQ(inf.schema.labels[1].type, TaskType::regression);
  EXPECT_EQ(inf.schema.sparse.size(), 1u);
  EXPECT_TRUE(inf.schema.dense.empty());
  const RawRows text = read_raw_rows_bytes("inc,x\nhigh,1\nlow,2\n", "t.csv", {});
  EXPECT_NE(
      error_of([&] { infer_schema_from_rows(text, "t.csv", {.label_columns = {"inc"}}, {}); }).find("positive_values"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              infer_schema_from_rows(text, "t.csv", {.label_columns = {"nope"}}, {});
            }).find("not in the header"),
            std::string::npos);
}

// One stray value among the sampled rows must not change a column's kind: it is an error that
// names the file, the value's line, the column, the values seen and what settles it.
TEST(SchemaInference, AFewStrayValuesAreErrorsNotANewKind) {
  auto csv = [](const std::string& stray_d1, const std::string& stray_click) {
    std::string text = "click,D1,city\n";
    for (int i = 0; i < 20; ++i) {
      const bool stray = i == 9;  // line 11 (the header is line 1)
      text += (stray ? stray_click : std::to_string(i % 2)) + "," + (stray ? stray_d1 : std::to_string(i) + ".5") +
              ",c" + std::to_string(i % 3) + "\n";
    }
    return text;
  };
  const InferOptions opt{.label_columns = {"click"}};
  for (const std::string word : {"nan", "abc"}) {
    const RawRows raw = read_raw_rows_bytes(csv(word, "1"), "t.csv", {});
    const std::string m = error_of([&] { infer_schema_from_rows(raw, "t.csv", opt, {}); });
    EXPECT_NE(m.find("t.csv:11: column 'D1' = '" + word + "': not a number"), std::string::npos) << m;
    EXPECT_NE(m.find("19 of its 20 values"), std::string::npos) << m;
    EXPECT_NE(m.find("--dense D1"), std::string::npos) << m;
    EXPECT_NE(m.find("--sparse D1"), std::string::npos) << m;
  }
  const RawRows two = read_raw_rows_bytes(csv("3.5", "2"), "t.csv", {});
  const std::string m = error_of([&] { infer_schema_from_rows(two, "t.csv", opt, {}); });
  EXPECT_NE(m.find("t.csv:11: label column 'click' = '2': not 0 or 1"), std::string::npos) << m;
  EXPECT_NE(m.find("19 of its 20 values"), std::string::npos) << m;
  EXPECT_NE(m.find("'2' (line 11)"), std::string::npos) << m;
  EXPECT_NE(m.find("--task-types"), std::string::npos) << m;
  // Settled by the caller, the same rows are accepted.
  const InferredSchema as_regression = infer_schema_from_rows(
      two, "t.csv", {.labels = {{.task = "click", .column = "click", .type = TaskType::regression}}}, {});
  EXPECT_EQ(as_regression.schema.labels[0].type, TaskType::regression);
  const RawRows word = read_raw_rows_bytes(csv("abc", "1"), "t.csv", {});
  const InferredSchema as_sparse =
      infer_schema_from_rows(word, "t.csv", {.label_columns = {"click"}, .sparse = {"D1"}}, {});
  EXPECT_NE(as_sparse.schema.find_sparse("D1"), nullptr);
  // A majority still decides: mostly words is a text feature, mostly other numbers a regression.
  const RawRows mostly_text = read_raw_rows_bytes("y,D1\n0.5,a\n2.5,b\n1,1.5\n0,c\n", "m.csv", {});
  const InferredSchema inf = infer_schema_from_rows(mostly_text, "m.csv", {.label_columns = {"y"}}, {});
  EXPECT_NE(inf.schema.find_sparse("D1"), nullptr);
  EXPECT_EQ(inf.schema.labels[0].type, TaskType::regression);
}

TEST(SchemaInference, InfersTheAliCcpSampleFromItsHeader) {
  const InferredSchema inf =
      infer_schema(data_dir() + "/ali-ccp/ali_ccp_train_sample.csv", {.label_columns = {"click", "purchase"}});
  EXPECT_EQ(inf.schema.sparse.size(), 23u);
  EXPECT_EQ(inf.schema.dense.size(), 8u);
  EXPECT_EQ(inf.schema.labels.size(), 2u);
  for (const auto& d : inf.schema.dense) EXPECT_EQ(d.name[0], 'D') << d.name;
}

TEST(SchemaInference, RawCensusFileWithoutHeader) {
  const Schema census = load_schema(data_dir() + "/census-income-kdd/census_income_kdd.json");
  Label income{.task = "income", .column = "income", .positive_values = {"50000+."}};
  const InferredSchema inf =
      infer_schema(data_dir() + "/census-income-kdd/census-income.test.gz",
                   {.labels = {income}, .dense = {"age"}, .ignore = {"instance weight"}, .sample_rows = 2000},
                   {.separator = ", ", .header = false, .trim = true, .missing = "?"}, census.columns);
  EXPECT_EQ(inf.schema.columns.size(), 42u);
  EXPECT_NE(inf.schema.find_dense("age"), nullptr);
  EXPECT_NE(inf.schema.find_sparse("education"), nullptr);
  EXPECT_EQ(inf.schema.find_sparse("instance weight"), nullptr);
  EXPECT_EQ(inf.schema.find_dense("instance weight"), nullptr);
  EXPECT_NE(inf.report.find("'instance weight': ignored"), std::string::npos) << inf.report;
}

}  // namespace
}  // namespace rechub::data
