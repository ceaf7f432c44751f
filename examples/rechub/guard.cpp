// The checks that keep a run from harming itself or its inputs: thread counts, memory that cannot
// fit, two runs in one output folder, an output that is an input.
#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "examples/rechub/cli.h"
#include "rechub/core/error.h"

namespace rechub::cli {

namespace fs = std::filesystem;

namespace {
int cores() { return std::max(1, omp_get_num_procs()); }
}  // namespace

int max_threads() { return kThreadsPerCore * cores(); }

void apply_threads_flag(int threads) {
  RECHUB_CHECK(threads <= max_threads(), "--threads " << threads << ": more than " << kThreadsPerCore << " x the "
                                                      << cores() << " cores of this machine (at most " << max_threads()
                                                      << "; 0 uses every core)");
  if (threads > 0) omp_set_num_threads(threads);
}

void cap_env_threads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env == nullptr || *env == '\0') return;
  // libgomp has read the variable at start-up; the first parallel region would start that many
  // threads (and abort when it cannot), so a bad value is replaced before any region runs.
  const std::string s(env);
  const std::string first = s.substr(0, s.find(','));
  long v = 0;
  const auto r = std::from_chars(first.data(), first.data() + first.size(), v);
  const bool number = r.ec == std::errc() && r.ptr == first.data() + first.size();
  if (number && v >= 1 && v <= max_threads()) return;
  std::cerr << "rechub: warning: OMP_NUM_THREADS=" << s
            << (number && v >= 1 ? " is more than " + std::to_string(kThreadsPerCore) + " x the " +
                                       std::to_string(cores()) + " cores of this machine"
                                 : " is not a positive number")
            << "; using " << cores() << " threads\n";
  omp_set_num_threads(cores());
}

uint64_t usable_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  uint64_t m = pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : UINT64_MAX;
  // A container's limit (cgroup v2) is what the process can have, whatever the machine holds.
  std::ifstream cg("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (cg >> limit && limit != "max") {
    uint64_t v = 0;
    const auto r = std::from_chars(limit.data(), limit.data() + limit.size(), v);
    if (r.ec == std::errc() && v > 0) m = std::min(m, v);
  }
  return m;
}

std::string gib(double bytes) {
  std::ostringstream os;
  os.precision(bytes >= 1e10 ? 0 : 2);
  os << std::fixed << bytes / double(1 << 30) << " GiB";
  return os.str();
}

void refuse_same_file(const std::string& flag_a, const std::string& a, const std::string& flag_b,
                      const std::string& b) {
  if (a.empty() || b.empty()) return;
  std::error_code ec;
  // Same inode (hard links, symlinks, ./x against x) or, for a file not yet there, the same path.
  const bool same = fs::exists(a, ec) && fs::exists(b, ec) ? fs::equivalent(a, b, ec)
                                                           : fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
  RECHUB_CHECK(!same, flag_a << " '" << a << "' and " << flag_b << " '" << b << "' are the same file");
}

OutDirLock::OutDirLock(const std::string& dir) {
  fs::create_directories(dir);
  const std::string path = (fs::path(dir) / ".rechub.lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  RECHUB_CHECK(fd_ >= 0, "--out '" << dir << "': cannot open the lock file " << path);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    RECHUB_FAIL("--out '" << dir << "' is in use by another rechub train (PID " << (pid.empty() ? "unknown" : pid)
                          << "): wait for it to finish, or give another --out");
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    // The lock holds without the PID; a second run then says "PID unknown".
  }
}

OutDirLock::~OutDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock; the file stays for the next run
}

}  // namespace rechub::cli
