// `rechub train --stream` as a program: it trains under an address-space limit (ulimit -v) that
// the in-memory path cannot fit, and refuses the flags it cannot honour.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "support/cli_run.h"

namespace rechub {
namespace {

namespace fs = std::filesystem;

using Shell = testing::CliResult;

// `rechub args` under `ulimit -v kib` (0: no limit), one thread, one malloc arena and a fixed
// mmap threshold (so that the address space is the data's, not per-thread reservations or freed
// blocks kept in the heap).
[[maybe_unused]] Shell run_limited([[maybe_unused]] int64_t kib, [[maybe_unused]] const std::string& args) {
#ifdef RECHUB_CLI
  const std::string limit = kib > 0 ? "ulimit -v " + std::to_string(kib) + "; " : "";
  return testing::run_shell("sh -c '" + limit +
                            "OMP_NUM_THREADS=1 MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=131072 exec " + RECHUB_CLI +
                            " " + args + "' 2>&1");
#else
  return {};
#endif
}

class RechubStream : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef RECHUB_CLI
    GTEST_SKIP() << "the rechub command is not built (RECHUB_BUILD_EXAMPLES=OFF)";
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "address-space limits do not apply under a sanitizer (its shadow memory is reserved)";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
    GTEST_SKIP() << "address-space limits do not apply under a sanitizer (its shadow memory is reserved)";
#endif
#endif
    dir_ = fs::temp_directory_path() / ("rechub_stream_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(RechubStream, RefusesFlagsItCannotHonour) {
  const std::string t = "train --train " + (dir_ / "x.csv").string() + " --tasks click --out " + (dir_ / "o").string();
  Shell r = run_limited(0, t + " --stream --no-cache");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--stream reads the training rows from the binary cache"), std::string::npos) << r.out;
  r = run_limited(0, t + " --stream --val-fraction 0.1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--val-fraction"), std::string::npos) << r.out;
  r = run_limited(0, "train --help");
  EXPECT_NE(r.out.find("--stream"), std::string::npos);
  EXPECT_NE(r.out.find("--shuffle-window"), std::string::npos);
}

// The address-space limit is found on a small training file (10k rows): the smallest multiple of
// 16 MiB under which the streaming run trains, plus 64 MiB. On a file about 30 times larger (294k
// rows of 100 dense features, the same validation file; the in-memory path needs about 820 bytes
// a row more: the mapped cache, the encoded rows, the shuffle permutation) the streaming run
// trains under that limit and the in-memory run does not (it does without the limit).
TEST_F(RechubStream, TrainsUnderAnAddressSpaceLimitTheInMemoryPathCannotFit) {
  const std::string big = (dir_ / "big").string();
  ASSERT_EQ(
      run_limited(0, "synth --kind mmoe --rows 300000 --val-fraction 0.01 --test-fraction 0.01 --seed 3 --out " + big)
          .code,
      0);
  {
    std::ifstream in(big + "/mmoe_train.csv");
    std::ofstream out((dir_ / "small.csv").string());
    std::string line;
    for (int i = 0; i <= 10000 && std::getline(in, line); ++i) out << line << "\n";
  }
  auto train = [&](const std::string& file, const std::string& extra, const std::string& out) {
    return "train --train " + file + " --val " + big +
           "/mmoe_val.csv --tasks y1,y2 --model mmoe --expert-units 16 --num-experts 2 --tower-units 8 "
           "--batch-size 1024 --epochs 1 --threads 1 --quiet --out " +
           (dir_ / out).string() + " " + extra;
  };
  const std::string small = (dir_ / "small.csv").string(), large = big + "/mmoe_train.csv";
  const std::string stream = "--stream --shuffle-window 16384";
  // Build the caches without a limit (parsing is bounded too, but not what this test measures).
  ASSERT_EQ(run_limited(0, train(small, stream, "warm_small")).code, 0);
  const Shell warm = run_limited(0, train(large, stream, "warm_big"));
  ASSERT_EQ(warm.code, 0) << warm.out;
  int64_t fits = 0;
  for (int64_t mib = 32; mib <= 4096 && fits == 0; mib += 16)
    if (run_limited(mib * 1024, train(small, stream, "probe_" + std::to_string(mib))).code == 0) fits = mib;
  ASSERT_GT(fits, 0) << "the streaming run on 10k rows did not fit in 4 GiB of address space";
  const int64_t limit = (fits + 64) * 1024;
  const Shell s = run_limited(limit, train(large, stream, "stream_big"));
  EXPECT_EQ(s.code, 0) << "streaming 294k rows under ulimit -v " << limit << " KiB (10k rows fit in " << fits
                       << " MiB):\n"
                       << s.out;
  const Shell m = run_limited(limit, train(large, "", "mem_big"));
  EXPECT_NE(m.code, 0) << "the in-memory path fit in ulimit -v " << limit << " KiB: the limit proves nothing";
  const Shell free_run = run_limited(0, train(large, "", "mem_big_free"));
  EXPECT_EQ(free_run.code, 0) << free_run.out;
}

}  // namespace
}  // namespace rechub
