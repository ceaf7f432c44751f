#pragma once
#include <ostream>
#include <string>

namespace rechub {

// Where a tensor's storage lives: the host or CUDA device N.
struct Device {
  enum class Kind : uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {Kind::cuda, i}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_cuda() const { return kind == Kind::cuda; }
  bool operator==(const Device& o) const { return kind == o.kind && (kind == Kind::cpu || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
  // "cpu", "cuda", "cuda:1"; throws rechub::Error otherwise.
  static Device parse(const std::string& s);
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

// True when this build has the CUDA backend and at least one device is visible.
bool cuda_available();
int cuda_device_count();

}  // namespace rechub
