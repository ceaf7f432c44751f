// The bundled real data: the raw UCI census-income file loads with label mapping and no
// conversion script; the Ali-CCP, census and AliExpress samples load with their configs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "rechub/core/error.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/loader.h"
#include "support/test_util.h"

namespace rechub::data {
namespace {

using testing::TempDir;

namespace fs = std::filesystem;

std::string data_dir() { return std::string(RECHUB_SOURCE_DIR) + "/examples/data"; }

// Rows, income > 50K and never-married counts of the raw file, computed by Python's gzip module
// at test time; the values measured when the test was written when no Python is at hand.
struct CensusFacts {
  long rows = 99762, income = 6186, never_married = 43143;
  bool from_python = false;
};

CensusFacts census_reference(const std::string& path) {
  CensusFacts f;
  const std::string py = RECHUB_PYTHON;
  if (py.empty() || py.find("NOTFOUND") != std::string::npos || !fs::exists(py)) return f;
  const std::string cmd = py +
                          " -c \"import gzip,sys\n"
                          "n=i=m=0\n"
                          "for line in gzip.open(sys.argv[1],'rt'):\n"
                          "    f=[x.strip() for x in line.rstrip('\\n').split(', ')]\n"
                          "    if len(f)<42: continue\n"
                          "    n+=1; i+=f[41]=='50000+.'; m+=f[7]=='Never married'\n"
                          "print(n,i,m)\" '" +
                          path + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return f;
  long n = 0, i = 0, m = 0;
  if (std::fscanf(p, "%ld %ld %ld", &n, &i, &m) == 3 && n > 0) {
    f.rows = n;
    f.income = i;
    f.never_married = m;
    f.from_python = true;
  }
  ::pclose(p);
  return f;
}

TEST(RealData, RawCensusIncomeKddLoadsWithLabelMapping) {
  const DataConfig cfg = load_data_config(data_dir() + "/census-income-kdd/census_income_kdd.json");
  ASSERT_FALSE(cfg.options.csv.header);
  ASSERT_EQ(cfg.options.csv.separator, ", ");
  TempDir dir;
  CacheOptions cache = cfg.options.cache;
  cache.dir = dir.path.string();
  const ColumnTable t = load_csv(cfg.files.train, cfg.schema, cfg.options.csv, cache);
  const CensusFacts ref = census_reference(cfg.files.train);
  EXPECT_EQ(t.rows(), 99762);
  EXPECT_EQ(t.rows(), ref.rows);

  Preprocessor prep(cfg.schema, cfg.options.preprocess, cfg.options.csv);
  prep.fit(t);
  const Dataset d = prep.transform(t);
  double income = 0, never = 0;
  for (float y : d.label_column(0)) income += y;
  for (float y : d.label_column(1)) never += y;
  EXPECT_EQ(income, ref.income) << (ref.from_python ? "python reference" : "recorded reference");
  EXPECT_EQ(never, ref.never_married);
  EXPECT_NEAR(income / 99762, 0.062, 0.001);
  EXPECT_NEAR(never / 99762, 0.432, 0.001);
  // Raw text categories became ids; '?' is a category of its own; min-max dense in [0, 1].
  EXPECT_EQ(prep.schema().sparse.size(), 32u);
  EXPECT_GT(prep.vocabulary("migration code-change in msa").id("?"), 0);
  EXPECT_GT(prep.vocabulary("education").size(), 10);
  for (int64_t j = 0; j < d.num_dense(); ++j) {
    const auto col = d.dense_column(j);
    EXPECT_EQ(*std::min_element(col.begin(), col.end()), 0.0f);
    EXPECT_EQ(*std::max_element(col.begin(), col.end()), 1.0f);
  }
  // The second run maps the cache.
  EXPECT_EQ(load_csv(cfg.files.train, cfg.schema, cfg.options.csv, cache).report().cache, CacheStatus::loaded);
}

TEST(RealData, CensusKddConfigSplitsBySeededFraction) {
  DataConfig cfg = load_data_config(data_dir() + "/census-income-kdd/census_income_kdd.json");
  cfg.options.cache.enabled = false;
  const LoadedData data = load_data(cfg.files, cfg.schema, cfg.options);
  ASSERT_TRUE(data.val && data.test);
  EXPECT_EQ(data.train->rows() + data.val->rows() + data.test->rows(), 99762);
  EXPECT_EQ(data.val->rows(), 24941);  // round(99762 * 0.25)
  EXPECT_EQ(data.test->rows(), 24941);
  // Ids of the held-out splits come from the training vocabulary: within range.
  for (int64_t j = 0; j < data.test->num_sparse(); ++j) {
    const int64_t v = data.preprocessor->schema().sparse[static_cast<size_t>(j)].vocab_size;
    for (int64_t id : data.test->sparse_column(j)) ASSERT_TRUE(id >= 0 && id < v);
  }
}

TEST(RealData, AliCcpSampleLoadsIntoADataLoader) {
  DataConfig cfg = load_data_config(data_dir() + "/ali-ccp/ali_ccp.json");
  TempDir dir;
  cfg.options.cache.dir = dir.path.string();
  const LoadedData data = load_data(cfg.files, cfg.schema, cfg.options);
  EXPECT_EQ(data.train->rows(), 100);
  EXPECT_EQ(data.val->rows(), 50);
  EXPECT_EQ(data.test->rows(), 50);
  EXPECT_EQ(data.train->num_sparse(), 23);
  EXPECT_EQ(data.train->num_dense(), 8);
  // README facts: train click 7/100, purchase 1/100; val 3/50, 1/50; test 2/50, 1/50.
  auto sum = [](const std::vector<float>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
  EXPECT_EQ(sum(data.train->label_column(0)), 7);
  EXPECT_EQ(sum(data.train->label_column(1)), 1);
  EXPECT_EQ(sum(data.val->label_column(0)), 3);
  EXPECT_EQ(sum(data.val->label_column(1)), 1);
  EXPECT_EQ(sum(data.test->label_column(0)), 2);
  EXPECT_EQ(sum(data.test->label_column(1)), 1);
  // '101' is the same user in every row; '205' has 65 distinct items in train.
  EXPECT_EQ(data.preprocessor->schema().sparse[0].vocab_size, 2);
  EXPECT_EQ(data.preprocessor->vocabulary("205").size(), 66);
  DataLoader loader(data.train, {.batch_size = 32, .seed = 1});
  int64_t rows = 0, batches = 0;
  while (auto b = loader.next()) {
    EXPECT_EQ(b->sparse.size(1), 23);
    EXPECT_EQ(b->dense.size(1), 8);
    EXPECT_EQ(b->labels.size(1), 2);
    rows += b->size();
    ++batches;
  }
  EXPECT_EQ(rows, 100);
  EXPECT_EQ(batches, 4);
}

TEST(RealData, CensusIncomeSampleLoads) {
  DataConfig cfg = load_data_config(data_dir() + "/census-income/census_income.json");
  cfg.options.cache.enabled = false;
  const LoadedData data = load_data(cfg.files, cfg.schema, cfg.options);
  auto sum = [](const std::vector<float>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
  // README: income 5/80 train, 2/20 val, 2/20 test; never married 27/80, 3/20, 6/20.
  EXPECT_EQ(data.train->rows(), 80);
  EXPECT_EQ(sum(data.train->label_column(0)), 5);
  EXPECT_EQ(sum(data.train->label_column(1)), 27);
  EXPECT_EQ(sum(data.val->label_column(0)), 2);
  EXPECT_EQ(sum(data.val->label_column(1)), 3);
  EXPECT_EQ(sum(data.test->label_column(0)), 2);
  EXPECT_EQ(sum(data.test->label_column(1)), 6);
  EXPECT_EQ(data.train->num_dense(), 7);
  EXPECT_EQ(data.train->num_sparse(), 32);
}

TEST(RealData, AliExpressSampleLoads) {
  DataConfig cfg = load_data_config(data_dir() + "/aliexpress/aliexpress.json");
  cfg.options.cache.enabled = false;
  const LoadedData data = load_data(cfg.files, cfg.schema, cfg.options);
  auto sum = [](const std::vector<float>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
  // README: train click 60/100, conversion 2/100; test click 10/20, conversion 2/20.
  EXPECT_EQ(data.train->rows(), 100);
  EXPECT_EQ(data.test->rows(), 20);
  EXPECT_EQ(data.val, nullptr);
  EXPECT_EQ(sum(data.train->label_column(0)), 2);  // conversion first, as the examples order it
  EXPECT_EQ(sum(data.train->label_column(1)), 60);
  EXPECT_EQ(sum(data.test->label_column(1)), 10);
  EXPECT_EQ(data.train->num_sparse(), 16);
  EXPECT_EQ(data.train->num_dense(), 63);
}

}  // namespace
}  // namespace rechub::data
