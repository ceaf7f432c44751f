#!/usr/bin/env python3
"""rechub's training step next to the fastest PyTorch on this machine, interleaved in one run.

For every (model, batch, threads) it runs, one after the other and each in its own process:
  1. rechub's bench_models (fused model, lazy row-sparse Adam on the embeddings), which also measures
     the FMA peak of the instruction set rechub dispatched to (RECHUB_CPU forces one) on as many
     threads, in the same process;
  2. the PyTorch baseline ../shared/bench/pytorch-anchor/run.sh (OpenMP OpenBLAS with the best
     kernels for this CPU, glibc malloc that keeps memory) for its four variants: trh/fused structure
     x dense/sparse embeddings;
and prints, per configuration, rechub's samples/s, PyTorch's best over the four variants (and which),
the ratio, rechub's % of the FMA peak, and both peak RSS. The CPU model, the dispatched instruction set
and the load average are printed first; JSON lines of every raw result go to --raw.

    /usr/bin/python3 bench/compare_torch.py --bench build/release/bench/bench_models \
        [--models mmoe,ple,shared_bottom] [--batches 1024,4096] [--threads 1,2] [--repeats 3]

The machine must be quiet: other processes' CPU time shows up as lower figures on both sides (the
anchor records "others_cpu_per_s" per run; this script prints the load average before and after).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ANCHOR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench", "pytorch-anchor", "run.sh"))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_rechub(bench, model, batch, threads, steps, repeats):
    runs = []
    for _ in range(repeats):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        r = subprocess.run([bench, "--model", model, "--batch", str(batch), "--steps", str(steps), "--fused", "1"],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"compare_torch.py: bench_models {model} {batch} {threads} failed: {r.stderr.strip()}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda x: x["samples_per_s"])
    return runs[len(runs) // 2], runs


def run_torch(anchor, model, batch, threads, runs, impls, embs, quiet_wait):
    # The anchor spells SharedBottom "sharedbottom".
    cmd = ["bash", anchor, "--models", model.replace("_", ""), "--batches", str(batch), "--threads", str(threads), "--runs", str(runs),
           "--impls", impls, "--embs", embs, "--quiet-wait", str(quiet_wait)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare_torch.py: the PyTorch anchor failed ({' '.join(cmd)}): {r.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path to rechub's bench_models")
    ap.add_argument("--anchor", default=ANCHOR, help="the PyTorch baseline's run.sh")
    ap.add_argument("--models", default="mmoe,ple,shared_bottom")
    ap.add_argument("--batches", default="1024,4096")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=0, help="rechub timed steps per run (0: about 80k samples)")
    ap.add_argument("--repeats", type=int, default=3, help="rechub runs per configuration (median reported)")
    ap.add_argument("--torch-runs", type=int, default=5, help="timed runs per PyTorch variant (median reported)")
    ap.add_argument("--impls", default="trh,fused")
    ap.add_argument("--embs", default="dense,sparse")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="the anchor waits up to this many seconds for an idle machine before each variant")
    ap.add_argument("--raw", default=None, help="append every raw JSON result to this file")
    args = ap.parse_args()
    if not os.path.exists(args.anchor):
        sys.exit(f"compare_torch.py: no PyTorch baseline at {args.anchor} (pass --anchor)")

    print(f"cpu: {cpu_model()}; avx512f: {'yes' if 'avx512f' in open('/proc/cpuinfo').read() else 'no'}; "
          f"RECHUB_CPU={os.environ.get('RECHUB_CPU', '(unset)')}; load average before: {loadavg()}", flush=True)
    raw = open(args.raw, "a") if args.raw else None
    rows = []
    for model in args.models.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            for threads in [int(t) for t in args.threads.split(",")]:
                steps = args.steps or max(10, 80000 // batch)
                med, runs = run_rechub(args.bench, model, batch, threads, steps, args.repeats)
                torch_res = run_torch(args.anchor, model, batch, threads, args.torch_runs, args.impls, args.embs,
                                      args.quiet_wait)
                best = max(torch_res, key=lambda x: x["samples_per_s_median"])
                if raw:
                    for x in runs + torch_res:
                        raw.write(json.dumps(x) + "\n")
                    raw.flush()
                row = dict(model=model, batch=batch, threads=threads, isa=med["isa"], rechub=med["samples_per_s"],
                           rechub_spread=[runs[0]["samples_per_s"], runs[-1]["samples_per_s"]],
                           torch=best["samples_per_s_median"], torch_variant=f"{best['impl']}/{best['emb']}",
                           ratio=med["samples_per_s"] / best["samples_per_s_median"], pct_peak=med["pct_peak"],
                           peak_gflops=med["peak_gflops"], rechub_rss=med["peak_rss_mb"],
                           torch_rss=best["peak_rss_mib"],
                           torch_others=max(max(x["others_cpu_per_s"]) for x in torch_res))
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"load average after: {loadavg()}")
    print()
    print("| model | batch | threads | isa | rechub samples/s | PyTorch best (variant) | ratio | % of FMA peak "
          "(peak GFLOP/s) | peak RSS rechub / PyTorch (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['isa']} | {r['rechub']:,.0f} | "
              f"{r['torch']:,.0f} ({r['torch_variant']}) | {r['ratio']:.2f}x | {r['pct_peak']:.1f} % "
              f"({r['peak_gflops']:.0f}) | {r['rechub_rss']:.0f} / {r['torch_rss']:.0f} |")


if __name__ == "__main__":
    main()
