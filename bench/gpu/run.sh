#!/usr/bin/env bash
# The CUDA backend's GPU checks and benchmarks in one go, for a machine with an NVIDIA GPU
# (written for an H200, sm_90). Builds Release with -arch=sm_90, runs the parity tests
# (rechub_cuda_tests), the GPU benchmark and the PyTorch comparison, and prints a short table
# last. Budget: ~8 minutes (the build is most of it).
#   usage: bench/gpu/run.sh [build-dir]      (default: build-gpu next to the repository root)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build-gpu}"
JOBS="$(nproc 2>/dev/null || echo 4)"
PY="${RECHUB_PYTHON:-/usr/bin/python3}"
LOG="$BUILD/gpu_run"
mkdir -p "$LOG"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not available"

echo "== configure + build (Release, sm_90) =="
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRECHUB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DRECHUB_BUILD_EXAMPLES=OFF -DRECHUB_BUILD_BENCH=OFF -DCMAKE_INSTALL_PREFIX="$BUILD/prefix" >"$LOG/configure.log"
cmake --build "$BUILD" -j "$JOBS" --target rechub rechub_cuda rechub_cuda_tests >"$LOG/build.log" 2>&1 ||
  { tail -50 "$LOG/build.log"; exit 1; }
cmake --install "$BUILD" >"$LOG/install.log"

echo "== parity tests (rechub_cuda_tests) =="
set +e
"$BUILD/tests/rechub_cuda_tests" --gtest_brief=1 >"$LOG/tests.log" 2>&1
TEST_RC=$?
set -e
tail -5 "$LOG/tests.log"
# gtest's closing counts ("[  PASSED  ] 4 tests.", "[  SKIPPED ] 256 tests, listed below:", ...).
count() {
  local n
  n=$(grep -oE "^\[  $1 *\] [0-9]+" "$LOG/tests.log" | tail -1 | grep -oE '[0-9]+$' || true)
  echo "${n:-0}"
}
PASSED=$(count PASSED)
FAILED=$(count FAILED)
SKIPPED=$(count SKIPPED)

echo "== GPU benchmark =="
cmake -S "$ROOT/bench/gpu" -B "$BUILD/bench_gpu" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$BUILD/prefix" \
  >"$LOG/bench_configure.log"
cmake --build "$BUILD/bench_gpu" -j "$JOBS" >"$LOG/bench_build.log" 2>&1 || { tail -30 "$LOG/bench_build.log"; exit 1; }
timeout 180 "$BUILD/bench_gpu/bench_gpu" | tee "$LOG/bench_gpu.txt" || echo "bench_gpu failed or timed out"

echo "== PyTorch on GPU =="
timeout 180 "$PY" "$ROOT/bench/gpu/torch_mmoe_gpu.py" | tee "$LOG/torch.txt" || echo "PyTorch comparison failed or timed out"

echo
echo "================ summary ================"
printf "parity tests: rc=%s passed=%s failed=%s skipped=%s (log: %s)\n" "$TEST_RC" "$PASSED" "$FAILED" "$SKIPPED" "$LOG/tests.log"
printf "%-46s %12s  %s\n" "measurement" "value" "unit"
grep -hE '^(torch_)?[a-z0-9_]+ +[0-9.]+ ' "$LOG/bench_gpu.txt" "$LOG/torch.txt" 2>/dev/null |
  awk '{printf "%-46s %12s  %s\n", $1, $2, $3}' || true
exit $TEST_RC
