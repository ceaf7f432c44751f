#!/usr/bin/env bash
# Mutation check of the core math: applies each one-line mutation of tests/mutation/mutations.tsv
# in turn (losses, softmax and the gate, BatchNorm, the expert block, the embedding backward,
# every optimizer dense and row-sparse, AUC and log loss, the task balancers), rebuilds the test
# binaries incrementally in their own build directory, runs the tests listed for the mutation and
# restores the file (always: a trap restores it on failure, Ctrl-C or kill). A mutation is
# caught when its tests fail. Prints a table and, on its last line, "N caught of M".
#
#   tests/mutation/run.sh                 # every mutation
#   tests/mutation/run.sh adam_ sgd_      # those whose name contains one of the words
#
# Environment: RECHUB_MUTATION_DIR (build directory, default build/mutation), JOBS (default 2),
# RECHUB_MUTATION_TIMEOUT (seconds per test binary run, default 900), RECHUB_MUTATION_LIST (another
# list in the same format). Slow (about a minute per
# mutation on 2 cores): run it before closing an issue that touches math, not in CI.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${RECHUB_MUTATION_DIR:-$root/build/mutation}
jobs=${JOBS:-2}
limit=${RECHUB_MUTATION_TIMEOUT:-900}
list=${RECHUB_MUTATION_LIST:-$root/tests/mutation/mutations.tsv}
py=/usr/bin/python3
mkdir -p "$build"
backup=$build/original.backup
active=""

restore() {
  if [[ -n "$active" && -f "$backup" ]]; then
    cp "$backup" "$root/$active" && echo "mutation: restored $active" >&2
    active=""
  fi
}
trap 'restore' EXIT
trap 'restore; exit 130' INT
trap 'restore; exit 143' TERM

launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# The flags of a Release iteration build (tests/run_all.sh, docs), so that ccache serves the
# unmutated objects.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRECHUB_WERROR=ON -DRECHUB_CUDA=OFF \
      -DRECHUB_BUILD_BENCH=OFF "${launcher[@]}" > "$build/configure.log" 2>&1 ||
  { echo "mutation: cmake failed (see $build/configure.log)" >&2; exit 2; }

binary() { echo "$build/tests/rechub_$1_tests"; }
build_targets() {  # binaries...
  local t=()
  for b in "$@"; do t+=(--target "rechub_${b}_tests"); done
  cmake --build "$build" -j"$jobs" "${t[@]}" > "$build/build.log" 2>&1
}
run_tests() {  # "bin:filter;bin:filter" -> 0 when every run passes
  local spec=$1 status=0
  IFS=';' read -ra parts <<< "$spec"
  for p in "${parts[@]}"; do
    local bin=${p%%:*} filter=${p#*:}
    timeout --foreground "$limit" "$(binary "$bin")" --gtest_filter="$filter" --gtest_brief=1 > "$build/test_$bin.log" 2>&1 || status=1
  done
  return $status
}
binaries_of() { tr ';' '\n' <<< "$1" | cut -d: -f1 | sort -u | tr '\n' ' '; }

# Baseline: every binary builds and every listed test passes on the unmutated code.
all_specs=$(grep -v '^#' "$list" | cut -f6 | tr '\n' ';')
echo "mutation: building the baseline in $build"
# shellcheck disable=SC2046
build_targets $(binaries_of "$all_specs") || { echo "mutation: the baseline does not build (see $build/build.log)" >&2; exit 2; }
while read -r spec; do
  run_tests "$spec" || { echo "mutation: the baseline fails '$spec' (see $build/test_*.log)" >&2; exit 2; }
done < <(grep -v '^#' "$list" | cut -f6 | sort -u)

caught=0 total=0
rows=()
while IFS=$'\t' read -r name file occ from to tests; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  if (( $# > 0 )); then
    keep=0
    for w in "$@"; do [[ "$name" == *"$w"* ]] && keep=1; done
    (( keep )) || continue
  fi
  total=$((total + 1))
  cp "$root/$file" "$backup"
  active=$file
  if ! "$py" - "$root/$file" "$occ" "$from" "$to" <<'EOF'
import sys
path, occ, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lines = open(path).read().split("\n")
hits = [i for i, l in enumerate(lines) if old in l]
if len(hits) < occ:
    sys.exit(f"{path}: line {occ} holding the text is not there ({len(hits)} found): the mutation list is stale")
i = hits[occ - 1]
lines[i] = lines[i].replace(old, new, 1)
open(path, "w").write("\n".join(lines))
EOF
  then
    restore
    rows+=("| $name | $file | STALE (text not found) | |")
    continue
  fi
  start=$(date +%s)
  # shellcheck disable=SC2046
  if ! build_targets $(binaries_of "$tests"); then
    cp "$build/build.log" "$build/build_$name.log"
    result="DOES NOT BUILD (see build_$name.log)"
  elif run_tests "$tests"; then
    result="NOT CAUGHT"
  else
    result="caught"
    caught=$((caught + 1))
  fi
  restore
  secs=$(( $(date +%s) - start ))
  echo "mutation: $name: $result (${secs} s)"
  rows+=("| $name | \`$file\` | $result | \`$tests\` |")
done < "$list"

# Rebuild the restored sources so the directory is left at the unmutated code.
# shellcheck disable=SC2046
build_targets $(binaries_of "$all_specs") || echo "mutation: warning: the restored sources did not rebuild" >&2
echo
echo "| mutation | file | result | tests run |"
echo "|---|---|---|---|"
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "$caught caught of $total"
