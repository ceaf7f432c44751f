#pragma once
// Small helpers shared by the test suites.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "rechub/core/error.h"

namespace rechub::testing {

// Whether a missing reference implementation (PyTorch, scikit-learn run by Debian's python3) fails
// the test instead of skipping it: in CI (CI=true, as CI services set it) and wherever
// RECHUB_REQUIRE_REFERENCES=1 (tests/run_all.sh sets it). A developer's machine without torch
// still gets skips with the reason.
inline bool references_required() {
  const auto is_on = [](const char* name) {
    const char* v = std::getenv(name);
    if (!v) return false;
    const std::string s(v);
    return s == "1" || s == "true" || s == "TRUE" || s == "True" || s == "yes";
  };
  return is_on("RECHUB_REQUIRE_REFERENCES") || is_on("CI");
}

// Ends the current test (or fixture SetUp) because a reference is missing: a skip, or with
// references_required() a failure naming the Debian package(s) to install.
#define RECHUB_REFERENCE_MISSING(reason, packages)                                                         \
  do {                                                                                                     \
    if (::rechub::testing::references_required())                                                          \
      GTEST_FAIL() << "reference missing: " << reason << ". Install it with: apt-get install " << packages \
                   << " (a missing reference fails when CI or RECHUB_REQUIRE_REFERENCES=1 is set)";        \
    else                                                                                                   \
      GTEST_SKIP() << reason << " (apt-get install " << packages << ")";                                   \
  } while (0)

// The message of the rechub::Error that f throws, or "<no error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A TrainerOptions::on_batch hook that stops training once `n` batches of the run are done, by
// throwing an Error from fit as if the process were killed there (the checkpoint of the last
// finished epoch stays): the resume tests use it.
inline std::function<void(int64_t, int64_t, int64_t)> stop_after_batches(int64_t n) {
  auto done = std::make_shared<int64_t>(0);
  return [done, n](int64_t, int64_t, int64_t) {
    if (++*done >= n) RECHUB_FAIL("training stopped after " << *done << " batches (testing::stop_after_batches)");
  };
}

// A fresh directory per test (named after the process and the test), removed with its contents.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = std::filesystem::temp_directory_path() /
           ("rechub_test_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes `text` to a file in the directory; returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    const std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
};

}  // namespace rechub::testing
