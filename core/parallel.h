#pragma once
// Splitting a loop over threads, for core and the layers above it (nn's optimizers): the CPU
// kernels' own helper (kernels/cpu/parallel.h), so that every layer splits work the same way and
// no layer above core includes a kernel header.
#include "rechub/kernels/cpu/parallel.h"

namespace rechub {

using kernels::cpu::kParallelGrain;
using kernels::cpu::parallel_for;

}  // namespace rechub
