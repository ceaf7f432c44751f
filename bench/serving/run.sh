#!/bin/bash
# Serving comparison on one run: rechub's Predictor (bench_serving), ONNX Runtime on the same
# models exported with `rechub export` (onnxruntime-node, CPU), and PyTorch under
# torch.inference_mode() with the anchor's models (pytorch-anchor/bench_mtl.py) in the anchor's
# tuned environment (copied from ../shared/bench/pytorch-anchor/run.sh). MMoE and PLE at
# bench_serving's sizes; latency p50/p99 at batch 1, 16, 256, 4096 with THREADS threads per call;
# throughput at batch 256 with 1 caller (THREADS threads) and 2 callers (one thread each).
#
#   bash bench/serving/run.sh [build dir, default build/release] [seconds per configuration, default 1]
#
# Needs the build dir configured with -DRECHUB_BUILD_BENCH=ON and the ONNX exporter, and
# onnxruntime-node (tests/onnx/install_ort.sh). Waits while /work/BENCH_LOCK exists (another
# benchmark) and holds /work/BENCH_LOCK2 while it runs. Output: JSON lines in $OUT (default
# /tmp/rechub_serving/results.jsonl), then a table.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/release}
secs=${2:-1}
dir=${OUT_DIR:-/tmp/rechub_serving}
out=$dir/results.jsonl
anchor=${ANCHOR:-$root/../shared/bench/pytorch-anchor}
modules=$root/build/ort/node_modules
# Threads per call (OpenMP, ONNX Runtime intra-op, torch.set_num_threads); default all cores.
# THREADS=1 where other work shares the cores: a 2-thread team descheduled in a barrier turns a
# 0.2 ms call into 20 ms.
threads=${THREADS:-$(nproc)}
impls=${IMPLS:-fused trh}  # the anchor's PyTorch implementations to time
mkdir -p "$dir"
cmake --build "$build" -j2 --target bench_serving rechub_cli >/dev/null

while [ -e /work/BENCH_LOCK ]; do sleep 15; done
touch /work/BENCH_LOCK2
trap 'rm -f /work/BENCH_LOCK2' EXIT

# The anchor's tuned PyTorch environment (pytorch-anchor/run.sh).
OB=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ ! -f "$OB/libblas.so.3" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenblas0-openmp >&2
fi
if grep -qw avx512f /proc/cpuinfo; then CORE=SkylakeX; else CORE=Haswell; fi
torch_env=(env LD_LIBRARY_PATH=$OB OPENBLAS_CORETYPE=$CORE
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295)

{
  echo "{\"date\": \"$(date -u +%FT%TZ)\", \"cpu\": \"$(lscpu | sed -n 's/^Model name: *//p' | head -1)\", \"cores\": $(nproc), \"threads_per_call\": $threads, \"loadavg_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} > "$out"

echo "== rechub Predictor (bench_serving)" >&2
OMP_NUM_THREADS=$threads "$build/bench/bench_serving" --dir "$dir" --benchmark_min_time="$secs" \
  --benchmark_format=json --benchmark_out="$dir/bench_serving.json" --benchmark_out_format=json >/dev/null
/usr/bin/python3 - "$dir/bench_serving.json" >> "$out" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    kind, model = b["name"].split("/")[:2]
    batch = int(b["name"].split("/")[2])
    r = {"impl": "rechub", "model": model, "mode": kind, "batch": batch}
    if kind == "latency":
        r.update(p50_us=round(b["p50_us"], 1), p99_us=round(b["p99_us"], 1), rows_per_s=round(b["rows_per_s"]),
                 threads=int(b["omp_threads"]), calls=b["iterations"])
    else:
        r.update(callers=b.get("threads", 1), rows_per_s=round(b["items_per_second"]))
    print(json.dumps(r))
PY
for m in mmoe ple; do
  OMP_NUM_THREADS=$threads "$build/bench/bench_serving" --dir "$dir" --rss $m >> "$out"
done

echo "== ONNX Runtime" >&2
for m in mmoe ple; do
  "$build/examples/rechub/rechub" export --model "$dir/$m.safetensors" --onnx "$dir/$m.onnx" 2>/dev/null
  node "$root/bench/serving/ort_serving.js" "$modules" "$dir/$m.onnx" latency 1,16,256,4096 "$threads" "$secs" >> "$out"
  node "$root/bench/serving/ort_serving.js" "$modules" "$dir/$m.onnx" throughput 256 "$threads" "$secs" |
    sed 's/}$/, "callers": 1}/' >> "$out"
  # Two callers: two processes of one intra-op thread each, at the same time; their rows/s add up.
  for k in 1 2; do node "$root/bench/serving/ort_serving.js" "$modules" "$dir/$m.onnx" throughput 256 1 "$secs" > "$dir/ort2_$k" & done
  wait
  /usr/bin/python3 -c "import json,sys; r=[json.loads(open(f).read()) for f in sys.argv[1:]]; r[0].update(callers=2, rows_per_s=sum(x['rows_per_s'] for x in r)); print(json.dumps(r[0]))" "$dir/ort2_1" "$dir/ort2_2" >> "$out"
done

echo "== PyTorch (inference_mode, tuned environment)" >&2
for m in mmoe ple; do
  for impl in $impls; do
    "${torch_env[@]}" /usr/bin/python3 "$root/bench/serving/torch_serving.py" --anchor "$anchor" --model $m --impl $impl \
      --mode latency --threads "$threads" --seconds "$secs" >> "$out"
    "${torch_env[@]}" /usr/bin/python3 "$root/bench/serving/torch_serving.py" --anchor "$anchor" --model $m --impl $impl \
      --mode throughput --batch 256 --threads "$threads" --seconds "$secs" | sed 's/}$/, "callers": 1}/' >> "$out"
    for k in 1 2; do "${torch_env[@]}" /usr/bin/python3 "$root/bench/serving/torch_serving.py" --anchor "$anchor" \
      --model $m --impl $impl --mode throughput --batch 256 --threads 1 --seconds "$secs" > "$dir/pt2_$k" & done
    wait
    /usr/bin/python3 -c "import json,sys; r=[json.loads(open(f).read()) for f in sys.argv[1:]]; r[0].update(callers=2, rows_per_s=sum(x['rows_per_s'] for x in r)); print(json.dumps(r[0]))" "$dir/pt2_1" "$dir/pt2_2" >> "$out"
  done
done
echo "{\"loadavg_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$out"
/usr/bin/python3 "$root/bench/serving/table.py" "$out"
