#pragma once
// The x86 instruction set the CPU kernels dispatch to, chosen once per process at run time.
//
// The best set the CPU and OS support is used (AVX-512F/VL/DQ + FMA, else AVX2 + FMA, else the
// portable Eigen/scalar code). The environment variable RECHUB_CPU=avx512|avx2|generic forces a set,
// so tests can run every path the machine supports (an AVX-512 machine checks the AVX2 path too) and
// benchmarks can compare them. Forcing a set the CPU lacks is an error, not a silent fallback.
namespace rechub::kernels::cpu {

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

// "generic", "avx2" or "avx512".
const char* isa_name(Isa isa);
// Whether this CPU (and OS: saved ymm/zmm state) can run kernels written for `isa`.
bool isa_supported(Isa isa);
// The best supported set.
Isa best_isa();
// The set the kernels use: RECHUB_CPU when set, else best_isa(). Read once; throws
// std::invalid_argument (on every call) if RECHUB_CPU names an unknown or unsupported set.
Isa active_isa();

}  // namespace rechub::kernels::cpu
