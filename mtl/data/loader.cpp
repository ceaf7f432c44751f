#include "rechub/mtl/data/loader.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>

#include "rechub/core/error.h"
#include "rechub/core/rng.h"

namespace rechub::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

nlohmann::json LoaderState::to_json() const { return {{"epoch", epoch}, {"batch", batch}}; }

LoaderState LoaderState::from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("epoch") || !j.contains("batch") || !j["epoch"].is_number_integer() ||
      !j["batch"].is_number_integer())
    throw Error("loader state: expected {\"epoch\": int, \"batch\": int}");
  return {j["epoch"].get<int64_t>(), j["batch"].get<int64_t>()};
}

DataLoader::DataLoader(std::shared_ptr<const BatchSource> source, LoaderOptions options)
    : source_(std::move(source)), opts_(options) {
  if (!source_) throw Error("DataLoader: no data source");
  if (opts_.batch_size < 0)
    throw Error("DataLoader: batch_size must be positive (or 0: chosen from the rows), got " +
                std::to_string(opts_.batch_size));
  if (opts_.batch_size == 0) opts_.batch_size = defaults::batch_size_for(source_->rows());
  if (opts_.prefetch < 0) throw Error("DataLoader: prefetch must be >= 0");
  if (opts_.shuffle_block < 0)
    throw Error("DataLoader: shuffle_block must be >= 0 (0: full shuffle), got " + std::to_string(opts_.shuffle_block));
  if (opts_.shuffle_window < 1)
    throw Error("DataLoader: shuffle_window must be at least 1 block, got " + std::to_string(opts_.shuffle_window));
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = source_->rows(), b = opts_.batch_size;
  return opts_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::begin_shuffle(Shuffle& s, int64_t epoch) const {
  if (block_mode()) return begin_blocks(s, epoch);
  s.epoch = epoch;
  s.perm.resize(static_cast<size_t>(source_->rows()));
  std::iota(s.perm.begin(), s.perm.end(), int64_t(0));
  s.fixed = s.perm.size();
  s.gen = Generator(splitmix64(opts_.seed ^ splitmix64(static_cast<uint64_t>(epoch) + 0x51ed270b7c1a3f09ULL)));
}

namespace {

// Fisher-Yates steps until every position >= lo holds its final row.
void advance(BigVector<int64_t>& perm, size_t& fixed, Generator& gen, size_t lo) {
  while (fixed > lo) {
    const size_t i = --fixed;
    if (i > 0) std::swap(perm[i], perm[gen.randint(i + 1)]);
  }
}

}  // namespace

void DataLoader::begin_blocks(Shuffle& s, int64_t epoch) const {
  const int64_t n = source_->rows(), K = opts_.shuffle_block;
  const int64_t nb = (n + K - 1) / K;
  s.epoch = epoch;
  s.window = -1;  // the window buffer (s.rows) is kept for reuse
  s.blocks.resize(static_cast<size_t>(nb));
  std::iota(s.blocks.begin(), s.blocks.end(), int64_t(0));
  // Its own stream (not the full shuffle's): the block order of (seed, epoch).
  Generator gen(splitmix64(opts_.seed ^ splitmix64(static_cast<uint64_t>(epoch) + 0x3c6ef372fe94f82bULL)));
  for (size_t i = s.blocks.size(); i > 1; --i) std::swap(s.blocks[i - 1], s.blocks[gen.randint(i)]);
  s.window_start.assign(1, 0);
  for (int64_t b = 0; b < nb; b += opts_.shuffle_window) {
    int64_t rows = 0;
    for (int64_t k = b; k < std::min(nb, b + opts_.shuffle_window); ++k) {
      const int64_t blk = s.blocks[static_cast<size_t>(k)];
      rows += std::min(n, (blk + 1) * K) - blk * K;
    }
    s.window_start.push_back(s.window_start.back() + rows);
  }
}

std::vector<int64_t> DataLoader::window_rows(const Shuffle& s, int64_t w) const {
  const int64_t n = source_->rows(), K = opts_.shuffle_block, nb = static_cast<int64_t>(s.blocks.size());
  std::vector<int64_t> rows;
  for (int64_t k = w * opts_.shuffle_window; k < std::min(nb, (w + 1) * opts_.shuffle_window); ++k) {
    const int64_t blk = s.blocks[static_cast<size_t>(k)];
    for (int64_t r = blk * K; r < std::min(n, (blk + 1) * K); ++r) rows.push_back(r);
  }
  return rows;
}

void DataLoader::window_order(int64_t epoch, int64_t w, int64_t n, std::vector<int64_t>& p) const {
  p.resize(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t(0));
  Generator gen(splitmix64(opts_.seed ^ splitmix64(static_cast<uint64_t>(epoch) + 0x3c6ef372fe94f82bULL) ^
                           splitmix64(static_cast<uint64_t>(w) + 0x1f83d9abfb41bd6bULL)));
  for (size_t i = p.size(); i > 1; --i) std::swap(p[i - 1], p[gen.randint(i)]);
}

void DataLoader::load_window(Shuffle& s, int64_t w) const {
  const int64_t n = source_->rows(), K = opts_.shuffle_block, nb = static_cast<int64_t>(s.blocks.size());
  const int64_t count = s.window_start[static_cast<size_t>(w) + 1] - s.window_start[static_cast<size_t>(w)];
  // Windows of one size reuse one buffer (every row is overwritten): memory stays flat over an
  // epoch instead of depending on how the allocator reuses freed blocks. Otherwise the old window
  // goes before the new one comes: one window in memory.
  std::shared_ptr<Dataset> ds = std::move(s.rows);
  s.window = -1;
  if (!ds || ds->rows() != count) {
    ds.reset();
    ds = std::make_shared<Dataset>(source_->schema(), count);
  }
  const auto ns = static_cast<size_t>(source_->num_sparse()), nd = static_cast<size_t>(source_->num_dense()),
             nt = static_cast<size_t>(source_->num_tasks());
  // The next window's blocks are asked for ahead, so a file-backed source reads them meanwhile.
  for (int64_t k = (w + 1) * opts_.shuffle_window; k < std::min(nb, (w + 2) * opts_.shuffle_window); ++k) {
    const int64_t blk = s.blocks[static_cast<size_t>(k)];
    source_->will_need(blk * K, std::min(n, (blk + 1) * K) - blk * K);
  }
  size_t at = 0;
  for (int64_t k = w * opts_.shuffle_window; k < std::min(nb, (w + 1) * opts_.shuffle_window); ++k) {
    const int64_t blk = s.blocks[static_cast<size_t>(k)];
    const int64_t len = std::min(n, (blk + 1) * K) - blk * K;
    source_->copy_range(blk * K, len, ds->sparse_data() + at * ns, ds->dense_data() + at * nd,
                        ds->label_data() + at * nt);
    at += static_cast<size_t>(len);
  }
  window_order(s.epoch, w, count, s.serve);
  s.rows = std::move(ds);
  s.window = w;
}

Batch DataLoader::build_blocks(int64_t begin, int64_t end, Shuffle& s) const {
  const int64_t n = end - begin;
  Batch b;
  b.sparse = empty({n, source_->num_sparse()}, {.dtype = DType::i64});
  b.dense = empty({n, source_->num_dense()}, {.dtype = DType::f32});
  b.labels = empty({n, source_->num_tasks()}, {.dtype = DType::f32});
  b.first_row = begin;
  const auto ns = static_cast<size_t>(source_->num_sparse()), nd = static_cast<size_t>(source_->num_dense()),
             nt = static_cast<size_t>(source_->num_tasks());
  auto* S = static_cast<int64_t*>(b.sparse.raw_data());
  auto* D = static_cast<float*>(b.dense.raw_data());
  auto* L = static_cast<float*>(b.labels.raw_data());
  for (int64_t p = begin; p < end;) {
    // The window holding position p (windows are few: a linear search is fine).
    const auto it = std::upper_bound(s.window_start.begin(), s.window_start.end(), p);
    const int64_t w = static_cast<int64_t>(it - s.window_start.begin()) - 1;
    if (s.window != w) load_window(s, w);
    const int64_t w0 = s.window_start[static_cast<size_t>(w)], w1 = s.window_start[static_cast<size_t>(w) + 1];
    const int64_t upto = std::min(end, w1);
    std::vector<int64_t> rows(static_cast<size_t>(upto - p));
    for (int64_t q = p; q < upto; ++q) rows[static_cast<size_t>(q - p)] = s.serve[static_cast<size_t>(q - w0)];
    const auto o = static_cast<size_t>(p - begin);
    s.rows->gather(rows.data(), upto - p, S + o * ns, D + o * nd, L + o * nt);
    p = upto;
  }
  return b;
}

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  const auto n = static_cast<size_t>(source_->rows());
  std::vector<int64_t> o(n);
  if (!opts_.shuffle) {
    std::iota(o.begin(), o.end(), int64_t(0));
    return o;
  }
  if (block_mode()) {
    Shuffle s;
    begin_blocks(s, epoch);
    o.clear();
    for (size_t w = 0; w + 1 < s.window_start.size(); ++w) {
      const std::vector<int64_t> rows = window_rows(s, static_cast<int64_t>(w));
      std::vector<int64_t> serve;
      window_order(epoch, static_cast<int64_t>(w), static_cast<int64_t>(rows.size()), serve);
      for (const int64_t k : serve) o.push_back(rows[static_cast<size_t>(k)]);
    }
    return o;
  }
  Shuffle s;
  begin_shuffle(s, epoch);
  advance(s.perm, s.fixed, s.gen, 0);
  for (size_t k = 0; k < n; ++k) o[k] = s.perm[n - 1 - k];  // served from the last position down
  return o;
}

Batch DataLoader::build(int64_t b, Shuffle& s) const {
  const int64_t n = source_->rows();
  const int64_t begin = b * opts_.batch_size;
  const int64_t end = std::min(begin + opts_.batch_size, n);
  if (!opts_.shuffle) return source_->range_batch(begin, end);
  if (block_mode()) return build_blocks(begin, end, s);
  advance(s.perm, s.fixed, s.gen, static_cast<size_t>(n - end));
  std::vector<int64_t> rows(static_cast<size_t>(end - begin));
  for (int64_t k = begin; k < end; ++k) rows[static_cast<size_t>(k - begin)] = s.perm[static_cast<size_t>(n - 1 - k)];
  return source_->make_batch(rows.data(), end - begin, begin);
}

void DataLoader::start_worker() {
  stop_ = false;
  running_ = true;
  const int64_t epoch = epoch_, from = pos_, n = num_batches();
  worker_ = std::thread([this, epoch, from, n] {
    Shuffle& shuffle = worker_shuffle_;
    try {
      if (opts_.shuffle) begin_shuffle(shuffle, epoch);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back({std::nullopt, std::current_exception()});
      cv_.notify_all();
      return;
    }
    for (int64_t b = from; b < n; ++b) {
      Item item;
      try {
        item.batch = build(b, shuffle);
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool failed = static_cast<bool>(item.error);
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < opts_.prefetch; });
      if (stop_) return;
      queue_.push_back(std::move(item));
      cv_.notify_all();
      if (failed) return;
    }
  });
}

void DataLoader::stop_worker() {
  if (!running_) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  queue_.clear();
  running_ = false;
}

void DataLoader::set_epoch(int64_t epoch) {
  if (epoch < 0) throw Error("DataLoader: negative epoch " + std::to_string(epoch));
  stop_worker();
  epoch_ = epoch;
  pos_ = 0;
}

void DataLoader::restore(const LoaderState& s) {
  if (s.epoch < 0 || s.batch < 0 || s.batch > num_batches())
    throw Error("DataLoader::restore: position (epoch " + std::to_string(s.epoch) + ", batch " +
                std::to_string(s.batch) + ") is outside this loader's " + std::to_string(num_batches()) +
                " batches per epoch");
  stop_worker();
  epoch_ = s.epoch;
  pos_ = s.batch;
}

std::optional<Batch> DataLoader::next() {
  if (pos_ >= num_batches()) {
    stop_worker();
    return std::nullopt;
  }
  if (opts_.prefetch == 0) {
    if (opts_.shuffle && sync_shuffle_.epoch != epoch_) begin_shuffle(sync_shuffle_, epoch_);
    Batch b = build(pos_, sync_shuffle_);
    ++pos_;
    return b;
  }
  if (!running_) start_worker();
  Item item;
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
  }
  cv_.notify_all();
  if (item.error) {
    stop_worker();
    std::rethrow_exception(item.error);
  }
  ++pos_;
  return std::move(item.batch);
}

}  // namespace rechub::data
