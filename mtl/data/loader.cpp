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
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = source_->rows(), b = opts_.batch_size;
  return opts_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::begin_shuffle(Shuffle& s, int64_t epoch) const {
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

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  const auto n = static_cast<size_t>(source_->rows());
  std::vector<int64_t> o(n);
  if (!opts_.shuffle) {
    std::iota(o.begin(), o.end(), int64_t(0));
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
