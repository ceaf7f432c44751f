#!/usr/bin/env bash
# Builds the fuzz targets (clang++ -fsanitize=fuzzer,address,undefined) and runs each for
# SECONDS seconds (default 20). Exits non-zero when a target crashes or fails to build.
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
mkdir -p "$out/obj" "$out/corpus/csv" "$out/corpus/cache" "$out/crashes"

srcs=(big_buffer checksum column_table csv_reader csv_records dictionary input_stream schema cache infer)
common=(-std=c++20 -O1 -g -fno-omit-frame-pointer -I"$root")
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)

compile() {  # src obj extra-flags...
  local src=$1 obj=$2
  shift 2
  if [[ ! -f "$obj" || "$src" -nt "$obj" || -n "$(find "$root/mtl/data" "$root/core" -name '*.h' -newer "$obj" -print -quit)" ]]; then
    "$cxx" "${common[@]}" "${san[@]}" "$@" -c "$src" -o "$obj" || return 1
  fi
}

echo "fuzz: building with $cxx into $out"
pids=()
fail=0
for s in "${srcs[@]}"; do
  compile "$root/mtl/data/$s.cpp" "$out/obj/$s.o" -fsanitize=fuzzer-no-link &
  pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if (( fail )); then echo "fuzz: build failed" >&2; exit 1; fi
objs=()
for s in "${srcs[@]}"; do objs+=("$out/obj/$s.o"); done
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

status=0
for t in csv_fuzz cache_fuzz; do
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
