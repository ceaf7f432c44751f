#pragma once
// Shared by the fuzz targets whose readers take a path: the input goes to one file per process
// (rewritten for every input), in $TMPDIR or /tmp.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace rechub::fuzz {

inline std::string input_path(const char* suffix) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/rechub_fuzz_" + std::to_string(::getpid()) + suffix;
}

inline const std::string& write_input(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Stops the process with a message when an invariant breaks (libFuzzer reports it as a crash).
#define RECHUB_FUZZ_ASSERT(cond, msg)                                      \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "fuzz invariant broken: %s: %s\n", #cond, msg); \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

}  // namespace rechub::fuzz
