#!/usr/bin/env bash
# Builds rechub and runs the whole test suite: a Release build with warnings as errors (CUDA code
# compiled where nvcc exists; GPU tests skip without a GPU), then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, a ThreadSanitizer run of Predictor from 8 threads,
# then a short fuzzing run of the parsers.
# Environment: JOBS (parallel jobs), SANITIZE=0 to skip the sanitizer pass, FUZZ_SECONDS (default 20).
# A test whose reference (PyTorch, scikit-learn under /usr/bin/python3) is missing fails here
# instead of skipping: the suite's guarantees rest on those comparisons.
set -euo pipefail
export RECHUB_REQUIRE_REFERENCES=1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cmake/install_deps.sh test
echo "== Formatting (.clang-format)"
bash tests/check_format.sh
# ONNX Runtime for the ONNX export test (into build/ort, git-ignored).
bash tests/onnx/install_ort.sh
jobs=${JOBS:-$(nproc)}
start=$(date +%s)

echo "== Release build (warnings are errors)"
# Tests, benchmarks and examples ON explicitly: the quickstart configures the same folder without them.
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DRECHUB_WERROR=ON -DRECHUB_BUILD_TESTS=ON \
      -DRECHUB_BUILD_BENCH=ON -DRECHUB_BUILD_EXAMPLES=ON >/dev/null
cmake --build build/release -j"$jobs"
echo "== Release tests"
(cd build/release && ctest -j"$jobs" --output-on-failure --timeout 900)

if [ "${SANITIZE:-1}" != 0 ]; then
  echo "== ASan + UBSan build (CPU backend)"
  # -O1 -g1 (ASan's advice: fast enough to run, line numbers in reports) and only the test binaries
  # (the Release pass already built the examples and benchmarks), to keep CI short.
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
        -DRECHUB_SANITIZE=address,undefined -DRECHUB_CUDA=OFF -DRECHUB_BUILD_BENCH=OFF -DRECHUB_WERROR=ON \
        -DCMAKE_CXX_FLAGS="-DRECHUB_NO_CACHING_ALLOCATOR" >/dev/null
  cmake --build build/asan -j"$jobs" --target rechub_tests
  echo "== ASan + UBSan tests"
  # Python references run outside the sanitized process; leak checks stay on for our code. The
  # install test runs here too: this build has no CUDA, so it is the consumer on a machine without CUDA.
  # The Python package's tests (label python) are not part of it: the sanitizer runtime would have to
  # be preloaded into the interpreter (tests/python/CMakeLists.txt does not register them there).
  (cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest -j"$jobs" --output-on-failure --timeout 1800 -LE python)
fi

if [ "${SANITIZE:-1}" != 0 ]; then
  echo "== ThreadSanitizer: one Predictor scored from 8 threads"
  # Only the library and that test (tests/CMakeLists.txt, Predictor.ThreadSanitizer), to keep CI short;
  # the test runs with OMP_NUM_THREADS=1 since libgomp is not instrumented.
  cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
        -DRECHUB_SANITIZE=thread -DRECHUB_CUDA=OFF -DRECHUB_BUILD_BENCH=OFF -DRECHUB_BUILD_EXAMPLES=OFF \
        -DRECHUB_ONNX=OFF -DRECHUB_WERROR=ON >/dev/null
  cmake --build build/tsan -j"$jobs" --target rechub_predictor_threads_test
  (cd build/tsan && ctest --output-on-failure --timeout 900 -L tsan)
fi

if [ -x tests/fuzz/run.sh ] || [ -f tests/fuzz/run.sh ]; then
  echo "== Fuzzing every reader of outside bytes (${FUZZ_SECONDS:-20} s each)"
  bash tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
