// The binary cache: CSV -> table -> cache -> table round trips, and stale or damaged caches found
// and rebuilt.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "rechub/core/error.h"
#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/checksum.h"
#include "rechub/mtl/data/csv.h"
#include "support/test_util.h"

namespace rechub::data {
namespace {

using testing::TempDir;

namespace fs = std::filesystem;

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Schema schema() {
  return {.sparse = {{.name = "a"}, {.name = "c"}},
          .dense = {{.name = "b"}},
          .labels = {{.task = "y", .column = "y"}, {.task = "m", .column = "m", .positive_values = {"yes"}}}};
}

std::string sample_csv(int rows, uint64_t seed = 5) {
  std::mt19937_64 rng(seed);
  std::string s = "a,b,c,y,m\n";
  for (int r = 0; r < rows; ++r)
    s += std::string("u") + std::to_string(rng() % 1000) + "," +
         std::to_string(static_cast<double>(rng() % 10000) / 64) + "," + std::to_string(rng() % 7) + "," +
         std::to_string(rng() % 2) + "," + (rng() % 3 ? "no" : "yes") + "\n";
  return s;
}

// Cell by cell, value by value (dictionary codes resolved to the raw strings).
void expect_same_table(const ColumnTable& x, const ColumnTable& y) {
  ASSERT_EQ(x.rows(), y.rows());
  ASSERT_EQ(x.num_columns(), y.num_columns());
  for (int c = 0; c < x.num_columns(); ++c) {
    ASSERT_EQ(x.spec(c).name, y.spec(c).name);
    ASSERT_EQ(x.spec(c).role, y.spec(c).role);
    const bool cat = is_categorical(x.spec(c).role);
    if (cat) {
      ASSERT_EQ(x.dictionary(c).values(), y.dictionary(c).values());
      ASSERT_EQ(x.dictionary(c).counts(), y.dictionary(c).counts());
    }
    for (int64_t r = 0; r < x.rows(); ++r) ASSERT_EQ(x.code(r, c), y.code(r, c)) << "row " << r << " column " << c;
  }
}

TEST(Cache, CsvToArraysToCacheToArraysIsIdentical) {
  TempDir dir;
  const std::string csv = dir.write("t.csv", sample_csv(150000));
  const ColumnTable parsed = read_csv(csv, schema());
  ASSERT_EQ(parsed.rows(), 150000);
  ASSERT_EQ(parsed.num_groups(), 3);
  for (bool compress : {false, true}) {
    const std::string cpath = (dir.path / (compress ? "t.zst.rhcache" : "t.rhcache")).string();
    write_cache(parsed, cpath, compress);
    expect_same_table(parsed, read_cache(cpath));
  }
}

TEST(Cache, LoadCsvBuildsThenMapsTheCache) {
  TempDir dir;
  const std::string csv = dir.write("t.csv", sample_csv(3000));
  std::vector<std::string> log;
  const CacheOptions co{.dir = (dir.path / "cache").string(), .log = [&](const std::string& m) { log.push_back(m); }};
  const ColumnTable first = load_csv(csv, schema(), {}, co);
  EXPECT_EQ(first.report().cache, CacheStatus::built);
  EXPECT_TRUE(fs::exists(first.report().cache_path));
  EXPECT_EQ(first.report().cache_path, cache_path_for(csv, schema(), {}, co));
  const ColumnTable second = load_csv(csv, schema(), {}, co);
  EXPECT_EQ(second.report().cache, CacheStatus::loaded);
  expect_same_table(first, second);
  expect_same_table(read_csv(csv, schema()), second);
  EXPECT_TRUE(log.empty());
  // No temporary files left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path / "cache")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Cache, CacheKeyFollowsOptionsAndColumns) {
  const CacheOptions co{.dir = "/tmp/x"};
  const std::string p = cache_path_for("/data/t.csv", schema(), {}, co);
  EXPECT_NE(p, cache_path_for("/data/t.csv", schema(), {.separator = ";"}, co));
  Schema other = schema();
  other.dense.clear();
  EXPECT_NE(p, cache_path_for("/data/t.csv", other, {}, co));
  EXPECT_EQ(p, cache_path_for("/data/t.csv", schema(), {.threads = 1}, co));  // threads do not change cells
}

TEST(Cache, StaleCacheIsDetectedAndRebuilt) {
  TempDir dir;
  const std::string csv = dir.write("t.csv", sample_csv(2000, 1));
  std::vector<std::string> log;
  const CacheOptions co{.dir = dir.path.string(), .log = [&](const std::string& m) { log.push_back(m); }};
  EXPECT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::built);
  // New content, new size and mtime.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  dir.write("t.csv", sample_csv(2500, 2));
  const ColumnTable t = load_csv(csv, schema(), {}, co);
  EXPECT_EQ(t.report().cache, CacheStatus::rebuilt_stale);
  EXPECT_EQ(t.rows(), 2500);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("stale"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("size"), std::string::npos) << log[0];
  expect_same_table(read_csv(csv, schema()), t);
  EXPECT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::loaded);
  // Touched, same bytes: the cache still holds.
  fs::last_write_time(csv, fs::last_write_time(csv) + std::chrono::seconds(5));
  EXPECT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::loaded);
}

// A rewrite with the same size whose mtime is put back (cp -p, rsync -t, touch -r) is stale: the
// labels flipped here must come back flipped, not from the old cache.
TEST(Cache, SameSizeAndRestoredMtimeIsStillStale) {
  TempDir dir;
  const std::string text = sample_csv(1000, 3);
  const std::string csv = dir.write("t.csv", text);
  std::vector<std::string> log;
  const CacheOptions co{.dir = dir.path.string(), .log = [&](const std::string& m) { log.push_back(m); }};
  ASSERT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::built);
  const auto mtime = fs::last_write_time(csv);
  std::string flipped;
  std::stringstream in(text);
  std::string line;
  std::getline(in, line);
  flipped = line + "\n";
  while (std::getline(in, line)) {  // a,b,c,y,m: y is the 4th field, one character
    size_t at = 0;
    for (int k = 0; k < 3; ++k) at = line.find(',', at) + 1;
    line[at] = line[at] == '0' ? '1' : '0';
    flipped += line + "\n";
  }
  ASSERT_EQ(flipped.size(), text.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  dir.write("t.csv", flipped);
  fs::last_write_time(csv, mtime);
  ASSERT_EQ(fs::last_write_time(csv), mtime);
  const ColumnTable t = load_csv(csv, schema(), {}, co);
  EXPECT_EQ(t.report().cache, CacheStatus::rebuilt_stale);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("content"), std::string::npos) << log[0];
  expect_same_table(read_csv(csv, schema()), t);
  const ColumnTable old = read_csv_bytes(text, "old.csv", schema());
  const int y = t.require("y");
  int64_t differ = 0;
  for (int64_t r = 0; r < t.rows(); ++r) differ += t.value(r, y) != old.value(r, y);
  EXPECT_EQ(differ, t.rows());
}

TEST(Cache, CorruptedCacheIsDetectedAndRebuilt) {
  TempDir dir;
  const std::string csv = dir.write("t.csv", sample_csv(5000));
  std::vector<std::string> log;
  const CacheOptions co{.dir = dir.path.string(), .log = [&](const std::string& m) { log.push_back(m); }};
  const std::string cpath = load_csv(csv, schema(), {}, co).report().cache_path;
  std::string bytes = slurp(cpath);
  bytes[bytes.size() / 2] ^= 0x40;  // one flipped bit in the cells
  dir.write(fs::path(cpath).filename().string(), bytes);
  const ColumnTable t = load_csv(csv, schema(), {}, co);
  EXPECT_EQ(t.report().cache, CacheStatus::rebuilt_corrupt);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("checksum mismatch"), std::string::npos) << log[0];
  expect_same_table(read_csv(csv, schema()), t);
  // Truncated.
  bytes = slurp(cpath);
  dir.write(fs::path(cpath).filename().string(), bytes.substr(0, bytes.size() - 100));
  EXPECT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::rebuilt_corrupt);
  EXPECT_NE(log.back().find("truncated"), std::string::npos) << log.back();
  // Not a cache at all.
  dir.write(fs::path(cpath).filename().string(), "hello");
  EXPECT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::rebuilt_corrupt);
  EXPECT_EQ(load_csv(csv, schema(), {}, co).report().cache, CacheStatus::loaded);
}

TEST(Cache, ReadCacheNamesWhatIsWrong) {
  TempDir dir;
  const ColumnTable t = read_csv_bytes(sample_csv(100), "m.csv", schema());
  const std::string p = (dir.path / "m.rhcache").string();
  write_cache(t, p);
  std::string bytes = slurp(p);
  auto msg_of = [&](const std::string& b, bool verify) {
    try {
      read_cache_bytes(b, "m.rhcache", verify);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  EXPECT_NE(msg_of(bytes.substr(0, 10), true).find("shorter than the 64-byte header"), std::string::npos);
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_NE(msg_of(bad_magic, true).find("wrong magic"), std::string::npos);
  std::string bad_version = bytes;
  bad_version[8] = 9;
  EXPECT_NE(msg_of(bad_version, true).find("format version 9"), std::string::npos);
  std::string flipped = bytes;
  flipped[100] ^= 1;
  EXPECT_NE(msg_of(flipped, true).find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(msg_of(bytes, true), "<no error>");
}

TEST(Cache, RandomCorruptionNeverCrashesTheReader) {
  const ColumnTable t = read_csv_bytes(sample_csv(300), "m.csv", schema());
  TempDir dir;
  for (bool compress : {false, true}) {
    const std::string p = (dir.path / "m.rhcache").string();
    write_cache(t, p, compress);
    const std::string bytes = slurp(p);
    std::mt19937_64 rng(compress ? 9 : 8);
    for (int it = 0; it < 2000; ++it) {
      std::string b = bytes;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<char>(rng());
      if (rng() % 5 == 0) b.resize(rng() % b.size());
      try {
        const ColumnTable u = read_cache_bytes(b, "m.rhcache", /*verify_checksum=*/false);
        for (int c = 0; c < u.num_columns(); ++c)
          for (int64_t r = 0; r < u.rows(); ++r) (void)u.code(r, c);
      } catch (const Error&) {
      }
    }
  }
}

TEST(Cache, UnwritableCacheDirectoryFallsBackToMemory) {
  TempDir dir;
  const std::string csv = dir.write("t.csv", sample_csv(100));
  const std::string blocker = dir.write("file", "x");  // a file where the cache directory should be
  std::vector<std::string> log;
  const ColumnTable t =
      load_csv(csv, schema(), {}, {.dir = blocker + "/sub", .log = [&](const std::string& m) { log.push_back(m); }});
  EXPECT_EQ(t.report().cache, CacheStatus::unwritable);
  EXPECT_EQ(t.rows(), 100);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("cache not written"), std::string::npos);
}

TEST(Cache, ParseErrorsLeaveNoCacheBehind) {
  TempDir dir;
  const std::string csv = dir.write("bad.csv", "a,b,c,y,m\nx,1,2,3,no\n");
  const CacheOptions co{.dir = (dir.path / "c").string()};
  EXPECT_THROW(load_csv(csv, schema(), {}, co), Error);
  EXPECT_TRUE(fs::is_empty(dir.path / "c"));
}

TEST(Cache, SkippedRowsReportSurvivesTheCache) {
  TempDir dir;
  const std::string csv = dir.write("s.csv", "a,b,c,y,m\nx,1,2,1,no\nx,q,2,1,no\ny,1,2,0,yes\n");
  const CacheOptions co{.dir = dir.path.string()};
  const CsvOptions o{.skip_bad_rows = true};
  load_csv(csv, schema(), o, co);
  const ColumnTable t = load_csv(csv, schema(), o, co);
  EXPECT_EQ(t.report().cache, CacheStatus::loaded);
  EXPECT_EQ(t.rows(), 2);
  EXPECT_EQ(t.report().skipped_rows, 1);
  ASSERT_EQ(t.report().skipped_examples.size(), 1u);
  EXPECT_NE(t.report().skipped_examples[0].find(":3: column 'b'"), std::string::npos);
}

TEST(Checksum, Xxh64KnownVectorsAndStreaming) {
  EXPECT_EQ(xxh64(std::string_view("")), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(xxh64(std::string_view("abc")), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL);
  std::string big(1000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  for (size_t step : {1, 7, 32, 33, 999}) {
    Xxh64 h(5);
    for (size_t i = 0; i < big.size(); i += step) h.update(big.data() + i, std::min(step, big.size() - i));
    EXPECT_EQ(h.digest(), xxh64(big, 5)) << step;
  }
}

}  // namespace
}  // namespace rechub::data
