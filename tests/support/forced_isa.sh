#!/bin/sh
# Runs a test binary with RECHUB_CPU forcing one instruction set (kernels/cpu/isa.h), so every CPU
# kernel path this machine can run is tested, not only the one it would pick; where the CPU lacks the
# set the test is reported as skipped (ctest's SKIP_REGULAR_EXPRESSION), visibly.
#   forced_isa.sh avx2|avx512|generic <test binary> [gtest arguments]
isa=$1
shift
case $isa in
  avx512) need="avx512f avx512vl avx512dq fma" ;;
  avx2) need="avx2 fma" ;;
  generic) need="" ;;
  *) echo "forced_isa.sh: unknown set '$isa' (avx512, avx2, generic)" >&2; exit 2 ;;
esac
for flag in $need; do
  if ! grep -qw "$flag" /proc/cpuinfo; then
    echo "[  SKIPPED ] this CPU has no $flag, so RECHUB_CPU=$isa cannot run here"
    exit 0
  fi
done
RECHUB_CPU=$isa exec "$@"
