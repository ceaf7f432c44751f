// Vocabularies (OOV id 0, min_freq, caps, shared tables), dense normalisation fitted on the
// training split only, and the encoders: transform, view, encode_rows, JSON round trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/preprocessor.h"
#include "support/test_util.h"

namespace rechub::data {
namespace {

using testing::error_of;

Schema schema() {
  return {.sparse = {{.name = "user"}, {.name = "item"}},
          .dense = {{.name = "price"}},
          .labels = {{.task = "ctr", .column = "click"}}};
}

const char* kTrain =
    "user,item,price,click\n"
    "u1,i1,10,1\n"
    "u1,i2,20,0\n"
    "u2,i1,30,0\n"
    "u1,i3,40,1\n"
    "u3,i1,50,0\n";
const char* kTest =
    "user,item,price,click\n"
    "u1,i1,0,1\n"
    "u9,i3,100,0\n"
    "u2,i8,30,1\n";

TEST(Vocabulary, MostFrequentFirstWithOovZero) {
  const Vocabulary v = Vocabulary::fit({{"b", 3}, {"a", 3}, {"c", 5}, {"d", 1}}, 1);
  EXPECT_EQ(v.size(), 5);
  EXPECT_EQ(v.id("c"), 1);
  EXPECT_EQ(v.id("a"), 2);  // ties in byte order
  EXPECT_EQ(v.id("b"), 3);
  EXPECT_EQ(v.id("d"), 4);
  EXPECT_EQ(v.id("never seen"), 0);
  EXPECT_EQ(v.value(1), "c");
}

TEST(Vocabulary, MinFrequencySendsRareValuesToOov) {
  const Vocabulary v = Vocabulary::fit({{"a", 1}, {"b", 2}, {"c", 3}, {"z", 0}}, 2);
  EXPECT_EQ(v.size(), 3);
  EXPECT_EQ(v.id("a"), 0);
  EXPECT_EQ(v.id("z"), 0);
  EXPECT_GT(v.id("b"), 0);
}

TEST(Vocabulary, CapKeepsTheMostFrequent) {
  const Vocabulary v = Vocabulary::fit({{"a", 1}, {"b", 2}, {"c", 3}}, 1, 3);
  EXPECT_EQ(v.size(), 3);
  EXPECT_EQ(v.id("a"), 0);
  EXPECT_EQ(v.id("c"), 1);
}

TEST(Vocabulary, JsonRoundTrip) {
  const Vocabulary v = Vocabulary::fit({{"x", 4}, {"y,\"q\"", 2}, {"", 1}}, 1);
  const Vocabulary w = Vocabulary::from_json(nlohmann::json::parse(v.to_json().dump()));
  EXPECT_EQ(w.size(), v.size());
  for (const char* s : {"x", "y,\"q\"", "", "other"}) EXPECT_EQ(w.id(s), v.id(s)) << s;
  EXPECT_THROW(Vocabulary::from_json(nlohmann::json::parse(R"({"values": ["a", "a"]})")), Error);
}

TEST(Preprocessor, VocabularyBuiltOnTrainUnseenValuesMapToOov) {
  const ColumnTable train = read_csv_bytes(kTrain, "train.csv", schema());
  const ColumnTable test = read_csv_bytes(kTest, "test.csv", schema());
  Preprocessor p(schema());
  p.fit(train);
  EXPECT_EQ(p.schema().sparse[0].vocab_size, 4);  // OOV + u1 u2 u3
  EXPECT_EQ(p.schema().sparse[1].vocab_size, 4);  // OOV + i1 i2 i3
  const Dataset d = p.transform(test);
  const auto users = d.sparse_column(0), items = d.sparse_column(1);
  EXPECT_EQ(users[0], p.vocabulary("user").id("u1"));
  EXPECT_EQ(users[0], 1);  // u1 is the most frequent user
  EXPECT_EQ(users[1], 0);  // u9 unseen
  EXPECT_EQ(items[2], 0);  // i8 unseen
  EXPECT_EQ(d.label_column(0), (std::vector<float>{1, 0, 1}));
  for (int64_t id : users) EXPECT_LT(id, p.schema().sparse[0].vocab_size);
}

TEST(Preprocessor, MinFrequencyOnTheTrainingSplit) {
  Preprocessor p(schema(), {.min_freq = 2});
  p.fit(read_csv_bytes(kTrain, "train.csv", schema()));
  EXPECT_EQ(p.schema().sparse[0].vocab_size, 2);  // only u1 (3 times)
  EXPECT_EQ(p.vocabulary("user").id("u2"), 0);
  EXPECT_EQ(p.vocabulary("item").id("i1"), 1);
}

TEST(Preprocessor, NormalisationIsFittedOnTrainOnly) {
  const ColumnTable train = read_csv_bytes(kTrain, "train.csv", schema());
  const ColumnTable test = read_csv_bytes(kTest, "test.csv", schema());
  Preprocessor mm(schema(), {.normalization = Normalization::min_max});
  mm.fit(train);
  EXPECT_EQ(mm.transform(train).dense_column(0), (std::vector<float>{0.0f, 0.25f, 0.5f, 0.75f, 1.0f}));
  // The test split's 0 and 100 fall outside the training range [10, 50]: not refitted.
  EXPECT_EQ(mm.transform(test).dense_column(0), (std::vector<float>{-0.25f, 2.25f, 0.5f}));
  Preprocessor z(schema(), {.normalization = Normalization::standard});
  z.fit(train);
  const auto s = z.transform(train).dense_column(0);
  double mean = 0, var = 0;
  for (float x : s) mean += x / 5.0;
  for (float x : s) var += (x - mean) * (x - mean) / 5.0;
  EXPECT_NEAR(mean, 0.0, 1e-6);
  EXPECT_NEAR(var, 1.0, 1e-5);
  EXPECT_NEAR(z.transform(test).dense_column(0)[0], (0.0 - 30.0) / std::sqrt(200.0), 1e-5);
}

TEST(Preprocessor, MissingDenseValuesFilledWithTheTrainingMean) {
  const CsvOptions o{.missing = "?", .allow_missing_dense = true};
  const ColumnTable train = read_csv_bytes("user,item,price,click\na,b,2,1\na,b,?,0\na,b,4,1\n", "t.csv", schema(), o);
  // On the raw scale (no normalisation), so that the fill is the value seen.
  Preprocessor mean(schema(), {.normalization = Normalization::none}, o);
  mean.fit(train);
  EXPECT_EQ(mean.transform(train).dense_column(0), (std::vector<float>{2, 3, 4}));
  Preprocessor zero(schema(), {.normalization = Normalization::none, .fill = MissingFill::zero}, o);
  zero.fit(train);
  EXPECT_EQ(zero.transform(train).dense_column(0), (std::vector<float>{2, 0, 4}));
}

TEST(Preprocessor, SharedFeaturesShareOneVocabulary) {
  const Schema s{.sparse = {{.name = "src"}, {.name = "dst", .shared_with = "src"}},
                 .labels = {{.task = "y", .column = "y"}}};
  const ColumnTable t = read_csv_bytes("src,dst,y\nparis,rome,1\nrome,oslo,0\nrome,paris,1\n", "s.csv", s);
  Preprocessor p(s);
  p.fit(t);
  EXPECT_EQ(p.schema().sparse[0].vocab_size, 4);
  EXPECT_EQ(p.schema().sparse[1].vocab_size, 4);
  const Dataset d = p.transform(t);
  // Equal raw values get equal ids in both columns.
  EXPECT_EQ(d.sparse_column(1)[0], d.sparse_column(0)[1]);  // rome
  EXPECT_EQ(d.sparse_column(1)[2], d.sparse_column(0)[0]);  // paris
  EXPECT_EQ(d.sparse_column(0)[1], 1);                      // rome: 3 times over both columns
}

TEST(Preprocessor, LabelMappingAppliesToRawValues) {
  const Schema s{.sparse = {{.name = "a"}},
                 .labels = {{.task = "rich", .column = "income", .positive_values = {"50000+."}},
                            {.task = "single", .column = "marital", .positive_if = [](std::string_view v) {
                               return v == "Never married";
                             }}}};
  const ColumnTable t = read_csv_bytes(
      "a,income,marital\nx,- 50000.,Never married\ny,50000+.,Divorced\nz,50000+.,Never married\n", "m.csv", s);
  Preprocessor p(s);
  p.fit(t);
  const Dataset d = p.transform(t);
  EXPECT_EQ(d.label_column(0), (std::vector<float>{0, 1, 1}));
  EXPECT_EQ(d.label_column(1), (std::vector<float>{1, 0, 1}));
}

TEST(Preprocessor, ViewEncodesLikeTransform) {
  const ColumnTable test = read_csv_bytes(kTest, "test.csv", schema());
  Preprocessor p(schema(), {.normalization = Normalization::min_max});
  p.fit(read_csv_bytes(kTrain, "train.csv", schema()));
  const Dataset d = p.transform(test);
  const auto v = p.view(std::make_shared<const ColumnTable>(test));
  ASSERT_EQ(v->rows(), 3);
  const std::vector<int64_t> rows{2, 0, 1};
  const Batch a = v->make_batch(rows.data(), 3);
  const Batch b = d.make_batch(rows.data(), 3);
  EXPECT_EQ(a.sparse.to_vector<int64_t>(), b.sparse.to_vector<int64_t>());
  EXPECT_EQ(a.dense.to_vector<float>(), b.dense.to_vector<float>());
  EXPECT_EQ(a.labels.to_vector<float>(), b.labels.to_vector<float>());
  EXPECT_EQ(a.sparse.shape(), (Shape{3, 2}));
  EXPECT_EQ(a.labels.shape(), (Shape{3, 1}));
}

TEST(Preprocessor, EncodeRowsMatchesTransformForAPredictor) {
  const CsvOptions o{.trim = true, .missing = "?", .allow_missing_dense = true};
  Preprocessor p(schema(), {.normalization = Normalization::min_max}, o);
  p.fit(read_csv_bytes(kTrain, "train.csv", schema(), o));
  const Dataset d = p.transform(read_csv_bytes(kTest, "test.csv", schema(), o));
  const std::vector<std::string> header{"price", "item", "user"};  // any order, no labels
  const Batch b = p.encode_rows({{"0", "i1", " u1 "}, {"100", "i3", "u9"}, {"30", "i8", "u2"}}, header);
  EXPECT_EQ(b.sparse.to_vector<int64_t>(), d.batch(0, 3).sparse.to_vector<int64_t>());
  EXPECT_EQ(b.dense.to_vector<float>(), d.batch(0, 3).dense.to_vector<float>());
  EXPECT_EQ(b.labels.shape(), (Shape{3, 0}));
  const Batch missing = p.encode_rows({{"?", "i1", "u1"}}, header);
  EXPECT_FLOAT_EQ(missing.dense.to_vector<float>()[0], 0.5f);  // train mean 30 -> 0.5
  EXPECT_NE(error_of([&] {
              p.encode_rows({{"abc", "i1", "u1"}}, header);
            }).find("row 0, column 'price' = 'abc'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { p.encode_rows({{"1", "i1"}}, header); }).find("row 0 has 2 fields"), std::string::npos);
  EXPECT_NE(error_of([&] { p.encode_rows({{"1"}}, {"price"}); }).find("no column 'user'"), std::string::npos);
}

TEST(Preprocessor, JsonRoundTripEncodesTheSame) {
  const ColumnTable train = read_csv_bytes(kTrain, "train.csv", schema());
  const ColumnTable test = read_csv_bytes(kTest, "test.csv", schema());
  Preprocessor p(schema(), {.min_freq = 1, .normalization = Normalization::standard});
  p.fit(train);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("rechub_prep_" + std::to_string(::getpid()) + ".json")).string();
  p.save(path);
  const Preprocessor q = Preprocessor::load(path);
  std::filesystem::remove(path);
  EXPECT_EQ(q.schema().sparse[0].vocab_size, p.schema().sparse[0].vocab_size);
  const Dataset a = p.transform(test), b = q.transform(test);
  EXPECT_EQ(a.sparse_column(0), b.sparse_column(0));
  EXPECT_EQ(a.sparse_column(1), b.sparse_column(1));
  EXPECT_EQ(a.dense_column(0), b.dense_column(0));
  auto j = p.to_json();
  j["vocabularies"]["user"]["values"].push_back("extra");
  EXPECT_NE(error_of([&] { Preprocessor::from_json(j, "ckpt.json"); }).find("vocab_size"), std::string::npos);
  EXPECT_NE(error_of([&] { Preprocessor::from_json(nlohmann::json::object(), "ckpt.json"); }).find("ckpt.json"),
            std::string::npos);
}

TEST(Preprocessor, RefusesUseBeforeFitAndTablesReadOtherwise) {
  Preprocessor p(schema());
  const ColumnTable t = read_csv_bytes(kTrain, "train.csv", schema());
  EXPECT_NE(error_of([&] { p.transform(t); }).find("fit()"), std::string::npos);
  p.fit(t);
  const Schema other{.sparse = {{.name = "user"}, {.name = "price"}}, .dense = {{.name = "item2"}}};
  const ColumnTable u = read_csv_bytes("user,price,item2\na,b,1\n", "o.csv", other);
  EXPECT_NE(error_of([&] { p.transform(u); }).find("no column 'item'"), std::string::npos);
}

}  // namespace
}  // namespace rechub::data
