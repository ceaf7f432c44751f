#!/usr/bin/env bash
# Builds the fuzz targets (clang++ -fsanitize=fuzzer,address,undefined) and runs each for
# SECONDS seconds (default 20). Exits non-zero when a target crashes or fails to build.
# Targets: the CSV reader and the cache reader (built from mtl/data sources alone), and the readers
# that need the whole library, built once with clang and the sanitizers in $out/lib: safetensors
# files, checkpoints, model configs, schema files, preprocessor and vocabulary files
# (RECHUB_FUZZ_LIBRARY_TARGETS=0 leaves those out). Each starts from a seed corpus of valid files written by the
# library.
#
#   tests/fuzz/run.sh 20
#
# Environment: CXX_FUZZ (default clang++), RECHUB_FUZZ_DIR (build + corpus dir, default
# build-fuzz/ at the repository root), RECHUB_FUZZ_JOBS (parallel compiles, default 2).
set -uo pipefail
secs=${1:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${RECHUB_FUZZ_DIR:-$root/build-fuzz}
cxx=${CXX_FUZZ:-clang++}
jobs=${RECHUB_FUZZ_JOBS:-2}
lib_targets=()
[[ "${RECHUB_FUZZ_LIBRARY_TARGETS:-1}" == 1 ]] && lib_targets=(safetensors_fuzz checkpoint_fuzz model_config_fuzz schema_fuzz vocabulary_fuzz)
mkdir -p "$out/obj" "$out/corpus/csv" "$out/corpus/cache" "$out/crashes"
for t in "${lib_targets[@]}"; do mkdir -p "$out/corpus/${t%_fuzz}"; done

# Source files under the repository root, without .cpp (big_buffer takes its huge-page blocks from
# core/huge_pages.cpp).
srcs=(mtl/data/big_buffer mtl/data/checksum mtl/data/column_table mtl/data/csv_reader mtl/data/csv_records
      mtl/data/dictionary mtl/data/input_stream mtl/data/schema mtl/data/cache mtl/data/infer core/huge_pages)
# The library is included as "rechub/<layer>/..." (see CMakeLists.txt): $out/include/rechub -> $root.
mkdir -p "$out/include"
[[ -e "$out/include/rechub" ]] || ln -s "$root" "$out/include/rechub"
common=(-std=c++20 -O1 -g -fno-omit-frame-pointer -I"$out/include" -I"$root")
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)

compile() {  # src obj extra-flags...
  local src=$1 obj=$2
  shift 2
  if [[ ! -f "$obj" || "$src" -nt "$obj" || -n "$(find "$root/mtl/data" "$root/core" "$root/kernels" -maxdepth 1 -name '*.h' -newer "$obj" -print -quit)" ]]; then
    "$cxx" "${common[@]}" "${san[@]}" "$@" -c "$src" -o "$obj" || return 1
  fi
}

echo "fuzz: building with $cxx into $out"
pids=()
fail=0
for s in "${srcs[@]}"; do
  compile "$root/$s.cpp" "$out/obj/${s##*/}.o" -fsanitize=fuzzer-no-link &
  pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if (( fail )); then echo "fuzz: build failed" >&2; exit 1; fi
objs=()
for s in "${srcs[@]}"; do objs+=("$out/obj/${s##*/}.o"); done
libs=(-lz -lzstd -lpthread)
for t in csv_fuzz cache_fuzz; do
  "$cxx" "${common[@]}" "${san[@]}" -fsanitize=fuzzer "$root/tests/fuzz/$t.cpp" "${objs[@]}" "${libs[@]}" -o "$out/$t" ||
    { echo "fuzz: cannot link $t" >&2; exit 1; }
done
"$cxx" "${common[@]}" "${san[@]}" "$root/tests/fuzz/make_seeds.cpp" "${objs[@]}" "${libs[@]}" -o "$out/make_seeds" ||
  { echo "fuzz: cannot link make_seeds" >&2; exit 1; }
"$out/make_seeds" "$out/corpus/csv" "$out/corpus/cache" || { echo "fuzz: seed writer failed" >&2; exit 1; }
for f in "$root"/examples/data/ali-ccp/*_sample.csv; do
  [[ -f "$f" ]] && { printf '\0'; cat "$f"; } > "$out/corpus/csv/sample_$(basename "$f")"
done

# The library, instrumented (no CUDA, examples, tests or benchmarks).
if (( ${#lib_targets[@]} > 0 )); then
echo "fuzz: building the rechub library with $cxx into $out/lib"
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$out/lib" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" "${launcher[@]}" \
      -DCMAKE_CXX_FLAGS="-fno-omit-frame-pointer ${san[*]} -fsanitize=fuzzer-no-link" \
      -DRECHUB_CUDA=OFF -DRECHUB_MPI=OFF -DRECHUB_ONNX=OFF -DRECHUB_PYTHON_PACKAGE=OFF -DRECHUB_BUILD_TESTS=OFF \
      -DRECHUB_BUILD_BENCH=OFF -DRECHUB_BUILD_EXAMPLES=OFF > "$out/lib.log" 2>&1 &&
  cmake --build "$out/lib" -j"$jobs" --target rechub >> "$out/lib.log" 2>&1 ||
  { echo "fuzz: cannot build the library (log: $out/lib.log)" >&2; tail -30 "$out/lib.log" >&2; exit 1; }
lib_link=("$out/lib/librechub.a" -fopenmp -lz -lzstd -lpthread)
lib_inc=(-I/usr/include/eigen3 -fopenmp -march=native)
for t in "${lib_targets[@]}" make_model_seeds; do
  extra=(-fsanitize=fuzzer)
  [[ $t == make_model_seeds ]] && extra=()
  "$cxx" "${common[@]}" "${san[@]}" "${lib_inc[@]}" "${extra[@]}" "$root/tests/fuzz/$t.cpp" "${lib_link[@]}" -o "$out/$t" ||
    { echo "fuzz: cannot link $t" >&2; exit 1; }
done
"$out/make_model_seeds" "$out/corpus" || { echo "fuzz: model seed writer failed" >&2; exit 1; }
fi
# Inputs that once crashed a target (tests/fuzz/regressions/<corpus>/) start every run again.
for d in "$root"/tests/fuzz/regressions/*/; do
  [[ -d $d ]] && mkdir -p "$out/corpus/$(basename "$d")" && cp "$d"* "$out/corpus/$(basename "$d")/"
done

status=0
for t in csv_fuzz cache_fuzz "${lib_targets[@]}"; do
  corpus=$out/corpus/${t%_fuzz}
  echo "fuzz: $t for ${secs}s"
  if ! "$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
      -artifact_prefix="$out/crashes/$t-" -print_final_stats=1 "$corpus" > "$out/$t.log" 2>&1; then
    echo "fuzz: $t FAILED (log: $out/$t.log, artifacts: $out/crashes/)" >&2
    tail -40 "$out/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$out/$t.log" | tail -2
  fi
done
exit $status
