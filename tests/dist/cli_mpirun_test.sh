#!/usr/bin/env bash
# `rechub train` under mpirun with 2 ranks (ctest: dist.cli_*). Usage: cli_mpirun_test.sh CASE RECHUB MPIRUN...
#   outputs     rank 0 alone prints and writes; the checkpoint 2 ranks wrote, evaluated by one
#               process (`rechub eval`), gives the metrics the run wrote (test_metrics.json)
#   resume      1 epoch on 2 ranks, then --resume to 2 epochs in one process, then to 3 on 2 ranks
#   killed      a rank killed with SIGKILL mid-run ends the job: non-zero exit, a message, no hang
#   error       a bad input stops every rank with the error and a non-zero exit
#   sharded     --shard-embeddings: the same test metrics as the replicated 2-rank run, its checkpoint
#               evaluated by one process gives the run's metrics, resume 2 sharded ranks -> 1 process
#               -> 2 sharded ranks, and the flag's refusals (one process, --device cuda)
#   stream      --stream: rank 0 builds the cache, every rank reads its rows of it; the run's
#               checkpoint, evaluated by one process, gives the run's test metrics
set -u
case_name=$1
rechub=$2
shift 2
mpirun=("$@")
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OMP_NUM_THREADS=1

"$rechub" synth --kind ali-ccp --rows 6000 --seed 3 --out "$tmp/data" >/dev/null 2>&1 || fail "synth"
D="$tmp/data"
common=(--train "$D/ali_ccp_train.csv" --val "$D/ali_ccp_val.csv" --tasks click,purchase --model mmoe
        --expert-units 16,8 --num-experts 2 --tower-units 8 --embed-dim 4 --batch-size 128 --no-cache --threads 1)

case "$case_name" in
outputs)
  "${mpirun[@]}" "$rechub" train "${common[@]}" --test "$D/ali_ccp_test.csv" --epochs 2 --balance gradnorm \
      --out "$tmp/run" >"$tmp/out.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "mpirun train exited $?"; }
  [ "$(grep -c '^test metrics' "$tmp/out.txt")" = 1 ] || { cat "$tmp/out.txt"; fail "the test table was not printed exactly once"; }
  [ "$(grep -c '^epoch 2/2' "$tmp/err.txt")" = 1 ] || { cat "$tmp/err.txt"; fail "progress was not printed exactly once"; }
  grep -q 'data parallel: 2 ranks x batch 128 = global batch 256' "$tmp/err.txt" || fail "no data-parallel line"
  [ "$(wc -l <"$tmp/run/metrics.jsonl")" = 2 ] || fail "metrics.jsonl does not hold 2 epochs"
  for f in model.safetensors checkpoint.safetensors report.svg test_metrics.json; do
    [ -s "$tmp/run/$f" ] || fail "$f missing"
  done
  "$rechub" eval --model "$tmp/run/model.safetensors" --data "$D/ali_ccp_test.csv" --json \
      >"$tmp/eval.json" 2>"$tmp/eval.err" || { cat "$tmp/eval.err"; fail "eval"; }
  "$py" - "$tmp/run/test_metrics.json" "$tmp/eval.json" <<'PY' || fail "eval metrics differ from the run's"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["rows"] == b["rows"] and a["rows"] > 0, (a["rows"], b["rows"])
for t, m in a["tasks"].items():
    for k in ("auc", "logloss"):
        x, y = m[k], b["tasks"][t][k]
        assert abs(x - y) <= 1e-9 * max(1.0, abs(y)), (t, k, x, y)
print("eval of the 2-rank checkpoint in one process:", b["tasks"])
PY
  ;;
resume)
  "${mpirun[@]}" "$rechub" train "${common[@]}" --epochs 1 --out "$tmp/run" >/dev/null 2>"$tmp/err1.txt" ||
      { cat "$tmp/err1.txt"; fail "2-rank first epoch"; }
  "$rechub" train "${common[@]}" --epochs 2 --resume --out "$tmp/run" >/dev/null 2>"$tmp/err2.txt" ||
      { cat "$tmp/err2.txt"; fail "1-process resume of a 2-rank checkpoint"; }
  "${mpirun[@]}" "$rechub" train "${common[@]}" --epochs 3 --resume --out "$tmp/run" >/dev/null 2>"$tmp/err3.txt" ||
      { cat "$tmp/err3.txt"; fail "2-rank resume of a 1-process checkpoint"; }
  [ "$(wc -l <"$tmp/run/metrics.jsonl")" = 3 ] || { cat "$tmp/run/metrics.jsonl"; fail "metrics.jsonl does not hold 3 epochs"; }
  grep -q '^epoch 3/3' "$tmp/err3.txt" || { cat "$tmp/err3.txt"; fail "the third run did not train epoch 3"; }
  if grep -q '^epoch [12]/3' "$tmp/err3.txt"; then fail "the resumed run trained epochs 1-2 again"; fi
  ;;
killed)
  "$rechub" synth --kind ali-ccp --rows 60000 --seed 4 --out "$tmp/big" >/dev/null 2>&1 || fail "synth big"
  "${mpirun[@]}" "$rechub" train --train "$tmp/big/ali_ccp_train.csv" --tasks click,purchase --model mmoe \
      --expert-units 64,32 --num-experts 4 --epochs 1000 --batch-size 64 --no-cache --threads 1 \
      --out "$tmp/run" >"$tmp/out.txt" 2>"$tmp/err.txt" &
  launcher=$!
  # Wait until both ranks train (rank 0 printed its first progress), then kill rank 1.
  for _ in $(seq 1 200); do
    grep -q 'data parallel' "$tmp/err.txt" 2>/dev/null && break
    sleep 0.1
  done
  sleep 1
  ranks=($(pgrep -P "$launcher" -f "rechub train" || true))
  [ "${#ranks[@]}" = 2 ] || { kill -9 "$launcher"; fail "expected 2 rank processes under mpirun, found ${#ranks[@]}"; }
  victim=""
  for p in "${ranks[@]}"; do
    if tr '\0' '\n' <"/proc/$p/environ" | grep -q '^OMPI_COMM_WORLD_RANK=1$'; then victim=$p; fi
  done
  [ -n "$victim" ] || victim=${ranks[1]}
  kill -9 "$victim"
  # The job must end by itself; 60 s is far more than mpirun needs to notice.
  for _ in $(seq 1 600); do
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$launcher" 2>/dev/null; then
    kill -9 "$launcher"
    fail "the job still runs 60 s after rank 1 was killed (a rank hangs)"
  fi
  wait "$launcher"
  rc=$?
  [ "$rc" != 0 ] || fail "mpirun exited 0 after a rank was killed"
  grep -qiE 'signal 9|killed' "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "no message names the killed rank"; }
  echo "mpirun exited $rc after rank 1 (pid $victim) was killed"
  ;;
error)
  # rank 0 and rank 1 both meet the bad flag value; each stops with the error.
  "${mpirun[@]}" "$rechub" train "${common[@]}" --epochs 1 --task-lr nosuchtask=1e-3 --out "$tmp/run" \
      >/dev/null 2>"$tmp/err.txt" && fail "a bad --task-lr was accepted"
  grep -q "nosuchtask" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "the error does not name the bad task"; }
  ;;
sharded)
  "${mpirun[@]}" "$rechub" train "${common[@]}" --test "$D/ali_ccp_test.csv" --epochs 2 --balance metabalance \
      --out "$tmp/rep" >/dev/null 2>"$tmp/err_rep.txt" || { cat "$tmp/err_rep.txt"; fail "replicated run"; }
  "${mpirun[@]}" "$rechub" train "${common[@]}" --test "$D/ali_ccp_test.csv" --epochs 2 --balance metabalance \
      --shard-embeddings --out "$tmp/run" >"$tmp/out.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "sharded run"; }
  grep -q '^sharded embeddings: .* over 2 ranks' "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "no sharded-embeddings line"; }
  [ "$(grep -c '^test metrics' "$tmp/out.txt")" = 1 ] || { cat "$tmp/out.txt"; fail "the test table was not printed exactly once"; }
  "$rechub" eval --model "$tmp/run/model.safetensors" --data "$D/ali_ccp_test.csv" --json \
      >"$tmp/eval.json" 2>"$tmp/eval.err" || { cat "$tmp/eval.err"; fail "eval"; }
  "$py" - "$tmp/run/test_metrics.json" "$tmp/eval.json" "$tmp/rep/test_metrics.json" <<'PY' || fail "metrics differ"
import json, sys
run, ev, rep = (json.load(open(p)) for p in sys.argv[1:4])
assert run["rows"] == ev["rows"] == rep["rows"] and run["rows"] > 0
for t, m in run["tasks"].items():
    for k in ("auc", "logloss"):
        x, y, z = m[k], ev["tasks"][t][k], rep["tasks"][t][k]
        assert abs(x - y) <= 1e-9 * max(1.0, abs(y)), ("one-process eval", t, k, x, y)
        assert abs(x - z) <= 1e-4 * max(1.0, abs(z)), ("replicated run", t, k, x, z)
print("sharded", run["tasks"], "replicated", rep["tasks"])
PY
  "$rechub" train "${common[@]}" --epochs 3 --balance metabalance --resume --out "$tmp/run" >/dev/null 2>"$tmp/err2.txt" ||
      { cat "$tmp/err2.txt"; fail "1-process resume of a sharded 2-rank checkpoint"; }
  "${mpirun[@]}" "$rechub" train "${common[@]}" --epochs 4 --balance metabalance --resume --shard-embeddings \
      --out "$tmp/run" >/dev/null 2>"$tmp/err3.txt" || { cat "$tmp/err3.txt"; fail "sharded resume of a 1-process checkpoint"; }
  [ "$(wc -l <"$tmp/run/metrics.jsonl")" = 4 ] || { cat "$tmp/run/metrics.jsonl"; fail "metrics.jsonl does not hold 4 epochs"; }
  grep -q '^epoch 4/4' "$tmp/err3.txt" || { cat "$tmp/err3.txt"; fail "the sharded resume did not train epoch 4"; }
  # Refusals: a single process, and a device other than the CPU.
  "$rechub" train "${common[@]}" --epochs 1 --shard-embeddings --out "$tmp/alone" >/dev/null 2>"$tmp/err4.txt" &&
      fail "--shard-embeddings was accepted in a single process"
  grep -q -- '--shard-embeddings .*runs alone: start it with mpirun -np N' "$tmp/err4.txt" || { cat "$tmp/err4.txt"; fail "refusal (alone)"; }
  [ ! -e "$tmp/alone" ] || fail "the refused run created its --out"
  "${mpirun[@]}" "$rechub" train "${common[@]}" --epochs 1 --shard-embeddings --device cuda --out "$tmp/cuda" \
      >/dev/null 2>"$tmp/err5.txt" && fail "--shard-embeddings --device cuda was accepted"
  grep -q -- '--shard-embeddings trains on the CPU only' "$tmp/err5.txt" || { cat "$tmp/err5.txt"; fail "refusal (cuda)"; }
  ;;
stream)
  cp "$D"/ali_ccp_*.csv "$tmp/" || fail "copy"
  "${mpirun[@]}" "$rechub" train --train "$tmp/ali_ccp_train.csv" --val "$tmp/ali_ccp_val.csv" \
      --test "$tmp/ali_ccp_test.csv" --tasks click,purchase --model mmoe --expert-units 16,8 --num-experts 2 \
      --tower-units 8 --embed-dim 4 --batch-size 128 --threads 1 --epochs 2 --stream --shuffle-window 1000 \
      --out "$tmp/run" >"$tmp/out.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "mpirun train --stream exited $?"; }
  [ "$(grep -c '^epoch 2/2' "$tmp/err.txt")" = 1 ] || { cat "$tmp/err.txt"; fail "progress was not printed exactly once"; }
  ls "$tmp"/ali_ccp_train.csv.*.rhcache >/dev/null 2>&1 || fail "no cache of the training file was written"
  "$rechub" eval --model "$tmp/run/model.safetensors" --data "$D/ali_ccp_test.csv" --json \
      >"$tmp/eval.json" 2>"$tmp/eval.err" || { cat "$tmp/eval.err"; fail "eval"; }
  "$py" - "$tmp/run/test_metrics.json" "$tmp/eval.json" <<'PY' || fail "eval metrics differ from the run's"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["rows"] == b["rows"] and a["rows"] > 0, (a["rows"], b["rows"])
for t, m in a["tasks"].items():
    for k in ("auc", "logloss"):
        x, y = m[k], b["tasks"][t][k]
        assert abs(x - y) <= 1e-9 * max(1.0, abs(y)), (t, k, x, y)
print("eval of the 2-rank --stream checkpoint in one process:", b["tasks"])
PY
  ;;
*)
  fail "unknown case $case_name"
  ;;
esac
echo "ok: $case_name"
