#pragma once
// The mapping that holds an address, read from /proc/self/smaps: the huge-page tests check that a
// block is a mapping of its own (not inside malloc's heap) and advised for transparent huge pages.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace rechub::testing {

struct Vma {
  uintptr_t start = 0, end = 0;
  std::string path;   // "[heap]", a file, or empty for anonymous memory
  std::string flags;  // smaps' VmFlags: "hg" = advised for huge pages
};

// The mapping of this process that contains address a, from /proc/self/smaps.
inline std::optional<Vma> vma_of(uintptr_t a) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  std::optional<Vma> found;
  while (std::getline(in, line)) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      if (found) return found;  // the previous mapping was the one, and its lines are done
      if (a >= lo && a < hi) {
        found = Vma{lo, hi, {}, {}};
        std::string perms, offset, dev, inode;
        head >> perms >> offset >> dev >> inode;
        std::getline(head >> std::ws, found->path);
      }
    } else if (found && line.rfind("VmFlags:", 0) == 0) {
      found->flags = line.substr(8);
    }
  }
  return found;
}

inline bool kernel_has_thp() { return std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled"); }

}  // namespace rechub::testing
