#pragma once
// DataLoader: batches from a BatchSource, in a seeded random order per epoch, prepared ahead by a
// background thread.
//
//   DataLoader loader(train, {.batch_size = 4096, .shuffle = true, .seed = 42});
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.set_epoch(epoch);
//     while (auto batch = loader.next()) train_step(*batch);
//   }
//
// The order of epoch e depends only on (seed, e): a run resumed with restore(state) sees the same
// remaining batches as the run that saved the state. The producer thread keeps up to `prefetch`
// batches in a bounded queue; an exception it meets is rethrown by next() on the consumer.
//
// The shuffle is a Fisher-Yates pass run lazily: step i fixes position i (from the last down), so
// the epoch is served from the last position down and a batch only waits for its own
// batch_size swaps. A new epoch starts without an O(rows) pause.
//
// Block shuffle (shuffle_block > 0), for sources larger than memory (Preprocessor::stream): the
// rows are cut into blocks of shuffle_block consecutive rows (the last may be shorter). Epoch e
// puts the blocks in a random order (seeded from (seed, e)), takes them shuffle_window blocks at a
// time as windows, reads a window's rows into memory (copy_range, block by block) and serves them
// in a random order (seeded from (seed, e, window)); batches run on across window boundaries. The
// loader then holds one window (shuffle_block x shuffle_window rows, encoded) and the batches in
// its queue, never the whole source, and reads the source block by block. The randomness is
// weaker than a full shuffle: two rows share a batch only when their blocks share a window, and
// rows of one block always travel together into the same window (with blocks of 65,536 rows and
// windows of 16 blocks, a batch draws from about 1M rows; a source sorted by time or user mixes
// only across the blocks of a window). Every row is served exactly once per epoch, and the order
// depends only on (seed, epoch, shuffle_block, shuffle_window), so resume stays exact.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "rechub/core/rng.h"
#include "rechub/mtl/data/big_buffer.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/defaults.h"

namespace rechub::data {

struct LoaderOptions {
  int64_t batch_size = defaults::batch_size;  // 0: defaults::batch_size_for(the source's rows)
  bool shuffle = true;
  uint64_t seed = defaults::seed;
  bool drop_last = false;  // drop the last, smaller batch of an epoch
  int prefetch = 2;        // batches prepared ahead by the background thread; 0: no thread
  // Block shuffle (see above): rows per block (0: a full shuffle over all rows) and blocks per
  // window. Ignored without shuffle (the rows are then read in order, a batch at a time).
  int64_t shuffle_block = 0;
  int64_t shuffle_window = 16;
};

// Where a loader stands: the next batch it hands out is batch `batch` of epoch `epoch`.
struct LoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;
  nlohmann::json to_json() const;
  static LoaderState from_json(const nlohmann::json& j);
  bool operator==(const LoaderState&) const = default;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const BatchSource> source, LoaderOptions options = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t rows() const { return source_->rows(); }
  int64_t num_batches() const;
  const LoaderOptions& options() const { return opts_; }
  const BatchSource& source() const { return *source_; }
  const Schema& schema() const { return source_->schema(); }

  // Starts epoch `epoch` from its first batch.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  // The next batch of the current epoch; nullopt once the epoch is over (until set_epoch/restore).
  std::optional<Batch> next();

  LoaderState state() const { return {epoch_, pos_}; }
  void restore(const LoaderState& state);

  // The row order of an epoch (identity when not shuffling): batch b is order[b*B, (b+1)*B).
  std::vector<int64_t> order(int64_t epoch) const;

  // Range-for over the rest of the current epoch.
  class iterator {
   public:
    iterator() = default;
    explicit iterator(DataLoader* l) : loader_(l) { advance(); }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    bool operator==(const iterator& o) const { return done() == o.done(); }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    void advance() { current_ = loader_ ? loader_->next() : std::nullopt; }
    bool done() const { return !current_.has_value(); }
    DataLoader* loader_ = nullptr;
    std::optional<Batch> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  struct Item {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  // An epoch's Fisher-Yates shuffle, advanced only as far as the batches asked for need.
  struct Shuffle {
    int64_t epoch = -1;
    BigVector<int64_t> perm;  // positions >= fixed hold their final rows
    size_t fixed = 0;
    Generator gen{0};
    // Block shuffle: the epoch's block order, where each window starts (positions; one more entry
    // than windows), the window held and its rows in serving order.
    std::vector<int64_t> blocks;
    std::vector<int64_t> window_start;
    int64_t window = -1;
    std::shared_ptr<Dataset> rows;
    std::vector<int64_t> serve;  // window position -> row of `rows`
  };
  void begin_shuffle(Shuffle& s, int64_t epoch) const;
  Batch build(int64_t batch_index, Shuffle& s) const;
  bool block_mode() const { return opts_.shuffle && opts_.shuffle_block > 0; }
  void begin_blocks(Shuffle& s, int64_t epoch) const;
  // The source rows of window w in buffer order, and the serving permutation of its positions.
  std::vector<int64_t> window_rows(const Shuffle& s, int64_t w) const;
  void window_order(int64_t epoch, int64_t w, int64_t n, std::vector<int64_t>& out) const;
  void load_window(Shuffle& s, int64_t w) const;
  Batch build_blocks(int64_t begin, int64_t end, Shuffle& s) const;
  void start_worker();
  void stop_worker();

  std::shared_ptr<const BatchSource> source_;
  LoaderOptions opts_;
  int64_t epoch_ = 0;
  int64_t pos_ = 0;
  Shuffle sync_shuffle_;    // prefetch == 0: the current epoch's shuffle
  Shuffle worker_shuffle_;  // the worker's, only touched by the worker while it runs (memory reused)

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  bool running_ = false;
  std::thread worker_;
};

}  // namespace rechub::data
