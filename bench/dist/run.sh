#!/usr/bin/env bash
# Data-parallel scaling on one machine: one process with 2 OpenMP threads against 2 MPI ranks with
# 1 thread each (mpirun), the same global batch and data; rows/s of each epoch and, for the ranks,
# the communication time per step (gradient allreduces, BatchNorm statistics, loss allreduce;
# waiting for the slower rank counts as communication). Figures: bench/RESULTS.md.
#
#   flock /work/notes/bench.lock bash bench/dist/run.sh [path/to/rechub]
#   ROWS=400000 EPOCHS=2 BATCH=2048 REPEATS=2 MODEL=mmoe  (defaults below)
#   SHARD=1: the ranks shard the embedding tables (--shard-embeddings)
set -euo pipefail
rechub=${1:-build/release/examples/rechub/rechub}
ROWS=${ROWS:-200000}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-2048}
REPEATS=${REPEATS:-2}
MODEL=${MODEL:-mmoe}
shard=()
[ "${SHARD:-0}" = 1 ] && shard=(--shard-embeddings)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$rechub" synth --kind ali-ccp --rows "$ROWS" --seed 7 --out "$tmp/data" >/dev/null 2>&1
flags=(--train "$tmp/data/ali_ccp_train.csv" --tasks click,purchase --model "$MODEL"
       --expert-units 128,64 --num-experts 4 --tower-units 64,32 --embed-dim 16 --seed 7)
# The binary cache is written once, before timing.
"$rechub" train "${flags[@]}" --epochs 1 --batch-size "$BATCH" --out "$tmp/warm" >/dev/null 2>"$tmp/warm.txt" ||
  { cat "$tmp/warm.txt" >&2; exit 1; }
mpirun=(mpirun --oversubscribe --allow-run-as-root -np 2 --bind-to none)
echo "rows $ROWS ${shard[*]} (train $(($(wc -l <"$tmp/data/ali_ccp_train.csv") - 1))), $MODEL, global batch $BATCH, $EPOCHS epochs, $(nproc) cores"
for rep in $(seq 1 "$REPEATS"); do
  rm -rf "$tmp/one" "$tmp/two"
  # CPU seconds too (user + system, the ranks included: mpirun waits for them): on a shared machine
  # the wall clock also measures the other users. MPI's waiting ranks spin, which counts as CPU.
  OMP_NUM_THREADS=2 /usr/bin/time -f "cpu %U + %S s, wall %e s" -o "$tmp/one.time" \
      "$rechub" train "${flags[@]}" --epochs "$EPOCHS" --batch-size "$BATCH" --threads 2 --out "$tmp/one" \
      2>"$tmp/one.txt" >/dev/null
  OMP_NUM_THREADS=1 /usr/bin/time -f "cpu %U + %S s, wall %e s" -o "$tmp/two.time" \
      "${mpirun[@]}" "$rechub" train "${flags[@]}" --epochs "$EPOCHS" --batch-size $((BATCH / 2)) --threads 1 \
      "${shard[@]}" --out "$tmp/two" 2>"$tmp/two.txt" >/dev/null
  echo "-- repeat $rep: 1 process x 2 threads ($(cat "$tmp/one.time"))"
  grep '^epoch' "$tmp/one.txt" | sed -E 's/  loss.*//'
  echo "-- repeat $rep: 2 ranks x 1 thread ($(cat "$tmp/two.time"))"
  grep '^epoch' "$tmp/two.txt" | sed -E 's/  loss.*//'
  grep 'ms/step' "$tmp/two.txt"
done
