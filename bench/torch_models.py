#!/usr/bin/env python3
"""Training-step throughput of MMoE, PLE and SharedBottom: PyTorch (built the way torch-rechub
builds them, see tests/reference/models_torch.py) next to rechub's bench_models, in one run.

For every model, batch size and thread count it runs, each in its own process (so peak RSS is that
configuration's): PyTorch as installed, PyTorch with OPENBLAS_CORETYPE=SkylakeX, rechub fused and
rechub unfused; then prints a table with samples/s, the ratios rechub / PyTorch, the fraction of
the FMA peak and peak memory.

    /usr/bin/python3 bench/torch_models.py --bench build/bench/bench_models \
        [--models mmoe,ple,shared_bottom] [--batches 1024,4096] [--threads 1,2] [--steps 20]

Data: Ali-CCP-shaped (8 sparse fields, vocabularies 100000, 50000, 20000, 5000, 1000, 100, 10, 4;
dim 16; two binary tasks), ids drawn Zipf-like; PyTorch trains with nn.Embedding (dense
gradients, as torch-rechub does) and torch.optim.Adam, BCE on the sigmoid outputs.
The worker mode (--worker) measures one PyTorch configuration and prints one JSON line.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VOCABS = [100000, 50000, 20000, 5000, 1000, 100, 10, 4]
# One core's AVX-512 FMA peak as bench_gemm measures it (peak/fma_avx512) on the development
# machine, 2026-11-29; pass --peak-gflops for another machine.
PEAK_GFLOPS_PER_THREAD = 215.0


def worker(args):
    import resource

    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
    import models_torch as mt

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    feats = [{"name": "f%d" % i, "rows": v, "dim": 16, "owner": "f%d" % i} for i, v in enumerate(VOCABS)]
    layout = {"features": feats}
    common = {"features": {"dense": []}, "task_types": ["binary", "binary"], "task_names": ["ctr", "ctcvr"],
              "dropout": 0.0}
    if args.model == "mmoe":
        cfg = dict(common, expert_units=[256, 128], num_experts=8, tower_units=[64, 32], expert_activation="relu",
                   tower_activation="relu")
        model = mt.MMOE(layout, cfg)
    elif args.model == "ple":
        cfg = dict(common, expert_units=[256, 128], num_experts=2, num_layers=2, num_shared_experts=2,
                   tower_units=[64, 32], expert_activation="relu", tower_activation="relu")
        model = mt.PLE(layout, cfg)
    else:
        cfg = dict(common, hidden_units=[256, 128], task_hidden_units=[64, 32], activation="relu")
        model = mt.SharedBottom(layout, cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(4):
        ids = np.stack([np.minimum(rng.zipf(1.1, args.batch) - 1, v - 1) for v in VOCABS], axis=1)
        labels = (rng.random((args.batch, 2)) < 0.05).astype(np.float32)
        batches.append((torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(labels)))

    def step(i):
        ids, labels = batches[i % len(batches)]
        opt.zero_grad()
        preds, _ = model(ids, None)
        loss = sum(torch.nn.functional.binary_cross_entropy(p, labels[:, t:t + 1]) for t, p in enumerate(preds))
        loss.backward()
        opt.step()

    for i in range(args.warmup):
        step(i)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.steps):
        step(args.warmup + i)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    sps = args.batch * args.steps / sec
    print(json.dumps({"impl": "torch", "model": args.model, "batch": args.batch, "threads": args.threads,
                      "coretype": os.environ.get("OPENBLAS_CORETYPE", "installed"),
                      "samples_per_s": round(sps, 1), "ms_per_step": round(1e3 * sec / args.steps, 2),
                      "cpu_ms_per_step": round(1e3 * cpu / args.steps, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (" ".join(cmd), out.stdout, out.stderr))
    return json.loads(out.stdout.strip().splitlines()[-1])


def driver(args):
    rows = []
    # "installed": the environment as it is (this workplace sets OPENBLAS_CORETYPE=Haswell, the AVX2
    # kernels Debian's OpenBLAS runs by default here); the second PyTorch run forces SkylakeX.
    base = dict(os.environ)
    for model in args.models.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            for threads in [int(t) for t in args.threads_list.split(",")]:
                env = dict(base, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
                common = ["--model", model, "--batch", str(batch), "--steps", str(args.steps), "--warmup",
                          str(args.warmup)]
                r = {"model": model, "batch": batch, "threads": threads}
                for fused in ("1", "0"):
                    j = run_json([args.bench] + common + ["--fused", fused, "--peak-gflops", str(args.peak_gflops)], env)
                    key = "fused" if fused == "1" else "unfused"
                    r[key] = j
                w = [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads)] + common
                r["torch"] = run_json(w, env)
                r["torch_skx"] = run_json(w, dict(env, OPENBLAS_CORETYPE="SkylakeX"))
                rows.append(r)
                print(json.dumps(r), flush=True)
    print()
    print("| model | batch | threads | rechub fused | rechub unfused | PyTorch installed | PyTorch SkylakeX | "
          "fused / installed | fused / SkylakeX | fused % FMA peak | peak RSS MB: fused / unfused / PyTorch | "
          "allocator peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        f, u, t, s = r["fused"], r["unfused"], r["torch"], r["torch_skx"]
        print("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.2fx | %.2fx | %.1f%% | %.0f / %.0f / %.0f | %.0f |" % (
            r["model"], r["batch"], r["threads"], f["samples_per_s"], u["samples_per_s"], t["samples_per_s"],
            s["samples_per_s"], f["samples_per_s"] / t["samples_per_s"], f["samples_per_s"] / s["samples_per_s"],
            f["pct_peak"], f["peak_rss_mb"], u["peak_rss_mb"], max(t["peak_rss_mb"], s["peak_rss_mb"]),
            f["allocator_peak_mb"]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--peak-gflops", dest="peak_gflops", type=float, default=PEAK_GFLOPS_PER_THREAD)
    p.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bench", "bench_models"))
    p.add_argument("--model", default="mmoe")
    p.add_argument("--models", default="mmoe,ple,shared_bottom")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--batches", default="1024,4096")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--threads-list", dest="threads_list", default="1,2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
