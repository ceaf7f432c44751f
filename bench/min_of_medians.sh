#!/bin/bash
# Runs a Google Benchmark binary ROUNDS times (5 repetitions each) and prints, per benchmark, the
# minimum over the rounds of the median wall time: on a host shared with other tenants, single
# runs of memory-bound benchmarks move by tens of percent from one minute to the next.
#   bench/min_of_medians.sh ROUNDS BINARY [FILTER]
#   e.g. bench/min_of_medians.sh 3 build/bench/bench_embedding
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 ROUNDS BINARY [FILTER]" >&2
  exit 2
fi
rounds=$1 bin=$2 filter=${3:-.}
for _ in $(seq "$rounds"); do
  "$bin" --benchmark_filter="$filter" --benchmark_min_time=0.3 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null | grep '_median"'
done | awk -F, '{ t = $3 + 0; if (!($1 in m) || t < m[$1]) m[$1] = t; u[$1] = $5 }
  END { for (k in m) printf "%-60s %10.4f %s\n", k, m[k], u[k] }' | sort
