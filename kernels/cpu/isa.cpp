#include "rechub/kernels/cpu/isa.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace rechub::kernels::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::generic:
      break;
  }
  return "generic";
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's cpu model checks XCR0 too: a feature whose register state the OS does not save is absent.
  switch (isa) {
    case Isa::avx512: {
      static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
      return ok;
    }
    case Isa::avx2: {
      static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
      return ok;
    }
    case Isa::generic:
      return true;
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

Isa best_isa() {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  if (isa_supported(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

namespace {
Isa isa_from_environment() {
  const char* env = std::getenv("RECHUB_CPU");
  if (env == nullptr || *env == '\0') return best_isa();
  const std::string v(env);
  Isa isa;
  if (v == "avx512") {
    isa = Isa::avx512;
  } else if (v == "avx2") {
    isa = Isa::avx2;
  } else if (v == "generic") {
    isa = Isa::generic;
  } else {
    throw std::invalid_argument("RECHUB_CPU='" + v + "': expected avx512, avx2 or generic (or unset for the best, " +
                                isa_name(best_isa()) + " on this CPU)");
  }
  if (!isa_supported(isa)) {
    throw std::invalid_argument("RECHUB_CPU=" + v + ": this CPU does not support it; the best it supports is " +
                                isa_name(best_isa()) + " (unset RECHUB_CPU to use that)");
  }
  return isa;
}
}  // namespace

Isa active_isa() {
  static const Isa isa = isa_from_environment();  // a throw leaves it unset, so the next call throws again
  return isa;
}

}  // namespace rechub::kernels::cpu
