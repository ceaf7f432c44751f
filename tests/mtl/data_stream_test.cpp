// The streaming training path (data larger than memory): a cache file read in pieces
// (CacheFile, Preprocessor::stream) gives exactly the rows the in-memory Dataset holds; the
// DataLoader's block shuffle serves every row once per epoch in an order fixed by (seed, epoch)
// and equal over both sources; a row range (one rank's share) reads only its rows of the file; a
// run on the stream, killed and resumed, ends bit-identical to an uninterrupted one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "rechub/core/error.h"
#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/row_range.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
#include "support/test_util.h"

namespace rechub::data {
namespace {

namespace fs = std::filesystem;

struct Files {
  fs::path dir;
  std::vector<std::string> paths;  // train, val
  Schema schema;
};

// 150k training rows: three row groups of the cache (65,536 rows each, the last one partial).
const Files& files() {
  static Files f = [] {
    Files s;
    s.dir = fs::temp_directory_path() / ("rechub_stream_" + std::to_string(::getpid()));
    fs::create_directories(s.dir);
    const AliCcpSynthConfig cfg{.seed = 11, .vocab_sizes = {3000, 400, 50, 7}, .num_dense = 3};
    s.paths = write_ali_ccp_synthetic((s.dir / "ali").string(), cfg, 150000, 3000, 0);
    s.schema = AliCcpSynth(cfg).schema(4);
    return s;
  }();
  return f;
}

DataOptions options(bool stream, bool compress = false) {
  DataOptions o;
  o.preprocess.normalization = Normalization::standard;
  o.cache.compress = compress;
  o.cache.log = [](const std::string&) {};
  o.stream = stream;
  return o;
}

// Every row of a source, row-major, as one byte string per row.
std::vector<std::string> row_bytes(const Batch& b) {
  std::vector<std::string> out;
  const int64_t S = b.sparse.size(1), D = b.dense.size(1), T = b.labels.size(1);
  for (int64_t i = 0; i < b.size(); ++i) {
    std::string r(reinterpret_cast<const char*>(b.sparse.data<int64_t>() + i * S), static_cast<size_t>(S) * 8);
    r.append(reinterpret_cast<const char*>(b.dense.data<float>() + i * D), static_cast<size_t>(D) * 4);
    r.append(reinterpret_cast<const char*>(b.labels.data<float>() + i * T), static_cast<size_t>(T) * 4);
    out.push_back(std::move(r));
  }
  return out;
}

TEST(Stream, CacheSourceHoldsTheInMemoryRows) {
  for (const bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "zstd cache" : "plain cache");
    const Files& f = files();
    const LoadedData mem = load_data({.train = f.paths[0], .val = f.paths[1]}, f.schema, options(false, compress));
    const LoadedData str = load_data({.train = f.paths[0], .val = f.paths[1]}, f.schema, options(true, compress));
    ASSERT_EQ(str.train, nullptr);
    ASSERT_NE(str.train_source, nullptr);
    ASSERT_NE(str.train_cache, nullptr);
    // The fit from the cache file (dictionaries, one pass over the dense columns) is the fit from
    // the mapped table, to the bit.
    EXPECT_EQ(str.preprocessor->to_json().dump(), mem.preprocessor->to_json().dump());
    ASSERT_EQ(str.train_source->rows(), 150000);
    ASSERT_EQ(mem.train->rows(), 150000);
    // In order, across row-group boundaries.
    EXPECT_EQ(row_bytes(str.train_source->range_batch(0, 150000)), row_bytes(mem.train->range_batch(0, 150000)));
    EXPECT_EQ(row_bytes(str.train_source->range_batch(65530, 131080)),
              row_bytes(mem.train->range_batch(65530, 131080)));
    // Rows in any order, repeats included.
    std::vector<int64_t> rows = {149999, 0, 65536, 65535, 7, 7, 131072, 99999, 1};
    EXPECT_EQ(row_bytes(str.train_source->make_batch(rows.data(), static_cast<int64_t>(rows.size()))),
              row_bytes(mem.train->make_batch(rows.data(), static_cast<int64_t>(rows.size()))));
    // Validation rows stay in memory and are encoded the same way.
    ASSERT_NE(str.val, nullptr);
    EXPECT_EQ(row_bytes(str.val->range_batch(0, str.val->rows())), row_bytes(mem.val->range_batch(0, mem.val->rows())));
    EXPECT_THROW(str.train_source->range_batch(149999, 150001), Error);
  }
}

TEST(Stream, RefusesWhatItCannotDo) {
  const Files& f = files();
  DataOptions o = options(true);
  o.val_fraction = 0.1;
  try {
    load_data({.train = f.paths[0]}, f.schema, o);
    ADD_FAILURE() << "val_fraction with streaming accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("val_fraction"), std::string::npos) << e.what();
  }
  o = options(true);
  o.cache.enabled = false;
  try {
    load_data({.train = f.paths[0]}, f.schema, o);
    ADD_FAILURE() << "streaming without a cache accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("caching is off"), std::string::npos) << e.what();
  }
  EXPECT_THROW(DataLoader(std::make_shared<Dataset>(), {.shuffle_block = -1}), Error);
  EXPECT_THROW(DataLoader(std::make_shared<Dataset>(), {.shuffle_block = 100, .shuffle_window = 0}), Error);
}

// The block shuffle's order, checked from its definition: a permutation of all rows; window by
// window, the rows of exactly `window` whole blocks (every block once per epoch); not the identity,
// not the block order itself, and another order in the next epoch.
TEST(Stream, BlockShuffleIsAPermutationOfWholeBlocks) {
  const int64_t R = 10007, K = 100, W = 7;
  auto src = std::make_shared<Dataset>(files().schema, R);
  DataLoader l(src, {.batch_size = 64, .seed = 5, .shuffle_block = K, .shuffle_window = W});
  std::vector<std::vector<int64_t>> orders;
  for (int64_t e = 0; e < 3; ++e) {
    const std::vector<int64_t> o = l.order(e);
    ASSERT_EQ(static_cast<int64_t>(o.size()), R);
    std::vector<int64_t> sorted = o;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < R; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i) << "epoch " << e;
    // Walk the windows: each holds whole blocks, W of them (the last window fewer).
    std::set<int64_t> seen_blocks;
    size_t at = 0;
    while (at < o.size()) {
      std::set<int64_t> blocks;
      int64_t rows = 0;
      // A window's rows are exactly its blocks' rows: take blocks until their row count is covered.
      std::set<int64_t> in_window;
      size_t end = at;
      while (end < o.size()) {
        const int64_t b = o[end] / K;
        if (!blocks.count(b)) {
          if (static_cast<int64_t>(blocks.size()) == W) break;
          blocks.insert(b);
          rows += std::min(R, (b + 1) * K) - b * K;
        }
        ++end;
        if (end - at == static_cast<size_t>(rows) && static_cast<int64_t>(blocks.size()) == W) break;
      }
      ASSERT_EQ(static_cast<int64_t>(end - at), rows) << "a window does not hold whole blocks";
      for (const int64_t b : blocks) ASSERT_TRUE(seen_blocks.insert(b).second) << "block " << b << " twice";
      at = end;
    }
    EXPECT_EQ(static_cast<int64_t>(seen_blocks.size()), (R + K - 1) / K);
    // Shuffled inside the window: consecutive positions rarely hold consecutive rows.
    int64_t runs = 0;
    for (size_t i = 1; i < o.size(); ++i) runs += o[i] == o[i - 1] + 1;
    EXPECT_LT(runs, R / 20) << "rows inside a window are not shuffled";
    orders.push_back(o);
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  // Same seed, same order; another seed, another one.
  DataLoader again(src, {.batch_size = 64, .seed = 5, .shuffle_block = K, .shuffle_window = W});
  EXPECT_EQ(again.order(1), orders[1]);
  DataLoader other(src, {.batch_size = 64, .seed = 6, .shuffle_block = K, .shuffle_window = W});
  EXPECT_NE(other.order(1), orders[1]);
}

// The loader over the streamed cache serves the same batches, in the same order, as over the
// in-memory rows (with and without the prefetch thread, across epochs and after restore), and
// each epoch's batches are the order() the loader states.
TEST(Stream, LoaderOverStreamEqualsInMemory) {
  const Files& f = files();
  const LoadedData mem = load_data({.train = f.paths[0]}, f.schema, options(false));
  const LoadedData str = load_data({.train = f.paths[0]}, f.schema, options(true));
  for (const int prefetch : {0, 2}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    const LoaderOptions lo{.batch_size = 5000,
                           .seed = 9,
                           .prefetch = prefetch,
                           .shuffle_block = ColumnTable::kGroupRows / 4,
                           .shuffle_window = 3};
    DataLoader a(mem.train_source, lo), b(str.train_source, lo);
    for (int64_t e = 0; e < 2; ++e) {
      a.set_epoch(e);
      b.set_epoch(e);
      const std::vector<int64_t> order = a.order(e);
      std::vector<int64_t> want(order.begin(), order.end());
      std::vector<std::string> got_a, got_b;
      while (auto x = a.next()) {
        const auto r = row_bytes(*x);
        got_a.insert(got_a.end(), r.begin(), r.end());
      }
      while (auto y = b.next()) {
        const auto r = row_bytes(*y);
        got_b.insert(got_b.end(), r.begin(), r.end());
      }
      ASSERT_EQ(got_a.size(), 150000u);
      EXPECT_TRUE(got_a == got_b) << "epoch " << e << ": the stream's batches differ from the in-memory ones";
      // What was served is order(e) of the in-memory rows.
      EXPECT_TRUE(got_a == row_bytes(mem.train->make_batch(want.data(), static_cast<int64_t>(want.size()))));
    }
    // Restored mid-epoch (a resume): the remaining batches are the ones an uninterrupted run sees.
    a.set_epoch(1);
    std::vector<std::string> tail;
    for (int k = 0; auto x = a.next(); ++k)
      if (k >= 17) {
        const auto r = row_bytes(*x);
        tail.insert(tail.end(), r.begin(), r.end());
      }
    b.restore({1, 17});
    std::vector<std::string> resumed;
    while (auto y = b.next()) {
      const auto r = row_bytes(*y);
      resumed.insert(resumed.end(), r.begin(), r.end());
    }
    EXPECT_TRUE(tail == resumed);
  }
}

// One rank of two reads only its half of the cache file: the bytes read for an epoch are its rows'
// cells of the columns the schema uses, once; rank 0's rows are never read.
TEST(Stream, ARankReadsOnlyItsRows) {
  const Files& f = files();
  const LoadedData str = load_data({.train = f.paths[0]}, f.schema, options(true));
  const LoadedData mem = load_data({.train = f.paths[0]}, f.schema, options(false));
  // A fresh handle on the same file, so that the fit's pass is not counted.
  const auto file = CacheFile::open(str.train_cache->path());
  const auto source = str.preprocessor->stream(file);
  ASSERT_EQ(file->bytes_read(), 0u);
  const auto mine = rank_rows(source, 1, 2);
  const int64_t begin = 75000, n = 75000;
  ASSERT_EQ(mine->rows(), n);
  DataLoader l(mine, {.batch_size = 4096, .seed = 3, .shuffle_block = 10000, .shuffle_window = 2});
  l.set_epoch(0);
  std::vector<std::string> got;
  while (auto b = l.next()) {
    const auto r = row_bytes(*b);
    got.insert(got.end(), r.begin(), r.end());
  }
  const auto& sc = f.schema;
  const uint64_t cols = sc.sparse.size() + sc.dense.size() + sc.labels.size();
  EXPECT_EQ(file->bytes_read(), static_cast<uint64_t>(n) * cols * 4) << "the rank read more than its rows";
  // And the rows are rank 1's: the multiset of rows [75000, 150000) of the in-memory set.
  std::vector<std::string> want = row_bytes(mem.train->range_batch(begin, begin + n));
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_TRUE(got == want);
}

// What `mpirun rechub train` does without --stream: each rank copies its share of the cache into
// memory (materialize over rank_rows), reading only those rows, which equal the same rows of the
// in-memory load, in order, to the bit (for 3 ranks, whose shares cross row-group boundaries).
TEST(Stream, ARankCopiesOnlyItsRowsIntoMemory) {
  const Files& f = files();
  const LoadedData str = load_data({.train = f.paths[0]}, f.schema, options(true));
  const LoadedData mem = load_data({.train = f.paths[0]}, f.schema, options(false));
  const auto& sc = f.schema;
  const uint64_t cols = sc.sparse.size() + sc.dense.size() + sc.labels.size();
  int64_t covered = 0;
  for (int r = 0; r < 3; ++r) {
    const auto file = CacheFile::open(str.train_cache->path());
    const auto mine = rank_rows(str.preprocessor->stream(file), r, 3);
    const Dataset d = materialize(*mine);
    ASSERT_EQ(d.rows(), mine->rows());
    EXPECT_EQ(file->bytes_read(), static_cast<uint64_t>(d.rows()) * cols * 4) << "rank " << r << " read more";
    EXPECT_EQ(row_bytes(d.range_batch(0, d.rows())),
              row_bytes(mem.train->range_batch(mine->begin(), mine->begin() + d.rows())))
        << "rank " << r;
    covered += d.rows();
  }
  EXPECT_EQ(covered, mem.train->rows());
}

std::vector<float> all_weights(models::MultiTaskModel& m) {
  std::vector<float> v;
  for (auto& [n, t] : m.named_parameters()) {
    const auto x = t.to_vector<float>();
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

// Trained on the stream with the block shuffle and dropout, killed in epoch 2 and resumed: the
// weights equal the uninterrupted run's bit for bit. A resume with another shuffle is refused.
TEST(Stream, ResumeIsExact) {
  const Files& f = files();
  const LoadedData str = load_data({.train = f.paths[0]}, f.schema, options(true));
  // 20k rows of the stream (a row range), 5 batches an epoch.
  const auto rows = std::make_shared<RowRange>(str.train_source, 10000, 20000);
  const auto& fitted = str.preprocessor->schema();
  auto model = [&] {
    trainer::ModelSizes sizes{
        .embed_dim = 4, .expert_units = {16}, .num_experts = 2, .tower_units = {8}, .dropout = 0.1, .seed = 5};
    return trainer::build_model("mmoe", models::features_from_schema(fitted), fitted.task_names(), {}, sizes);
  };
  const LoaderOptions lo{.batch_size = 4096, .seed = 4, .shuffle_block = 3000, .shuffle_window = 2};
  const fs::path a = f.dir / "resume_full", b = f.dir / "resume_split";
  trainer::TrainerOptions o{.optimizer_params = {.lr = 3e-3}, .n_epochs = 3, .progress = false};
  auto m1 = model();
  {
    o.out_dir = a.string();
    trainer::MTLTrainer t(m1, o);
    DataLoader train(rows, lo);
    t.fit(train);
  }
  {
    o.out_dir = b.string();
    o.on_batch = ::rechub::testing::stop_after_batches(5 + 2);  // 5 batches an epoch: stops in epoch 2
    trainer::MTLTrainer t(model(), o);
    DataLoader train(rows, lo);
    EXPECT_THROW(t.fit(train), Error);
  }
  o.on_batch = nullptr;
  o.resume = true;
  {
    // Another window: refused, naming the shuffle.
    trainer::MTLTrainer t(model(), o);
    LoaderOptions other = lo;
    other.shuffle_window = 3;
    DataLoader train(rows, other);
    try {
      t.fit(train);
      ADD_FAILURE() << "resume with another shuffle window accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("shuffle"), std::string::npos) << e.what();
    }
  }
  auto m3 = model();
  trainer::MTLTrainer t3(m3, o);
  DataLoader train(rows, lo);
  t3.fit(train);
  ASSERT_EQ(t3.history().size(), 3u);
  const auto w1 = all_weights(*m1), w3 = all_weights(*m3);
  ASSERT_EQ(w1.size(), w3.size());
  size_t diff = 0;
  for (size_t i = 0; i < w1.size(); ++i) diff += std::memcmp(&w1[i], &w3[i], sizeof(float)) != 0;
  EXPECT_EQ(diff, 0u) << "weights differ after a resume on the stream";
}

}  // namespace
}  // namespace rechub::data
