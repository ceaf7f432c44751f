#pragma once
// The rechub command's subcommands (examples/rechub): each registers its flags on a CLI11 app and
// returns the function that runs it.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/device.h"
#include "rechub/core/dist/communicator.h"
#include "rechub/mtl/metrics/evaluate.h"

namespace rechub::cli {

using Runner = std::function<int()>;

Runner add_train(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_predict(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_export(CLI::App& app);  // examples/rechub/export.cpp

// ---- guards (guard.cpp) ----
// --threads above this many per core are refused; OMP_NUM_THREADS above it is replaced.
constexpr int kThreadsPerCore = 4;
int max_threads();
// Refuses a --threads value above max_threads(); applies a positive one.
void apply_threads_flag(int threads);
// A bad or huge OMP_NUM_THREADS (libgomp would abort or spin up thousands of threads) is replaced
// by the core count, with a warning. Called before any parallel region runs.
void cap_env_threads();
// Physical memory, or the cgroup's limit when lower.
uint64_t usable_memory_bytes();
std::string gib(double bytes);
// Refuses two flags naming one file (compared by inode when both exist, else by resolved path).
void refuse_same_file(const std::string& flag_a, const std::string& a, const std::string& flag_b, const std::string& b);
// An exclusive flock on DIR/.rechub.lock for the life of the object, holding this process's PID;
// a second holder is refused with a message naming the first one's PID.
class OutDirLock {
 public:
  explicit OutDirLock(const std::string& dir);
  ~OutDirLock();
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;

 private:
  int fd_ = -1;
};

// Under mpirun: this process's rank in the job, created on first use (MPI initialised then);
// otherwise a world of one (examples/rechub/world.cpp).
std::shared_ptr<dist::Communicator> cli_world();
// On an error: with more than one rank, prints `message` and ends every rank of the job
// (MPI_Abort), so none waits forever for this one; otherwise returns.
void end_world_on_error(const std::string& message);
// Ends MPI (when it was started) before the process exits.
void leave_world();

// Flag checks with short messages ("--lr: must be a positive number, got 'abc'").
CLI::Validator positive();
CLI::Validator non_negative();

// "256,128" -> {256, 128}; "click=1e-3,purchase=5e-4" -> pairs. Throw rechub::Error naming the flag.
std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& s);
std::vector<double> parse_double_list(const std::string& flag, const std::string& s);
std::vector<std::string> parse_name_list(const std::string& flag, const std::string& s);

// --device: "cpu", "cuda" or "cuda:N". Throws rechub::Error with a clear message for an unknown
// name, a build without the CUDA backend, or a device that is not visible.
Device parse_device_flag(const std::string& s);

}  // namespace rechub::cli
