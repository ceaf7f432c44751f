#!/usr/bin/env python3
"""PyTorch side of bench/serving/run.sh: inference latency and throughput of MMoE and PLE at the
sizes of bench_serving, in eval mode under torch.inference_mode(), with the models of
../shared/bench/pytorch-anchor/bench_mtl.py ("trh": torch-rechub's structure; "fused": the tuned
PyTorch version, all experts of a level as one GEMM). Run it through run.sh, which sets the tuned
environment of pytorch-anchor/run.sh (OpenBLAS's OpenMP build, its best kernels, malloc tunables).

  torch_serving.py --anchor DIR --model mmoe --impl fused --mode latency --batches 1,16,256,4096 --threads 2
  torch_serving.py --anchor DIR --model mmoe --impl fused --mode throughput --batch 256 --threads 1 --seconds 3

Prints one JSON line per configuration: latency p50/p99 (microseconds per call, every call timed on
its own) or rows per second of one caller process.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchor", required=True, help="folder of bench_mtl.py")
    ap.add_argument("--model", required=True, choices=["mmoe", "ple"])
    ap.add_argument("--impl", default="fused", choices=["trh", "fused"])
    ap.add_argument("--mode", required=True, choices=["latency", "throughput"])
    ap.add_argument("--batches", default="1,16,256,4096")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per configuration")
    a = ap.parse_args()

    sys.path.insert(0, a.anchor)
    import bench_mtl  # noqa: E402  (the anchor's model definitions)
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = argparse.Namespace(vocab=bench_mtl.DEFAULT_VOCAB, dim=16, dense=0, expert="256,128", tower="64,32",
                             n_expert=8, ple_levels=2, ple_specific=2, ple_shared=2, tasks=2, dropout=0.0)
    model = bench_mtl.build(cfg, a.model, a.impl, False).eval()
    vocab = [int(v) for v in cfg.vocab.split(",")]
    rng = np.random.default_rng(0)

    def batch(n):
        return torch.tensor(np.stack([rng.integers(0, v, n) for v in vocab], axis=1), dtype=torch.long)

    def score(ids):
        return torch.sigmoid(model(ids, None))  # [B, tasks] probabilities, as Predictor returns

    with torch.inference_mode():
        if a.mode == "latency":
            for n in [int(b) for b in a.batches.split(",")]:
                ids = batch(n)
                for _ in range(3):
                    score(ids)
                us = []
                end = time.perf_counter() + a.seconds
                while time.perf_counter() < end or len(us) < 20:
                    t0 = time.perf_counter()
                    score(ids)
                    us.append((time.perf_counter() - t0) * 1e6)
                us.sort()
                p = lambda q: us[min(len(us) - 1, int(q * (len(us) - 1) + 0.5))]
                print(json.dumps({"impl": "pytorch-" + a.impl, "model": a.model, "mode": "latency", "batch": n,
                                  "threads": a.threads, "calls": len(us), "p50_us": round(p(0.5), 1),
                                  "p99_us": round(p(0.99), 1),
                                  "rows_per_s": round(n * len(us) / (sum(us) / 1e6))}), flush=True)
        else:
            ids = batch(a.batch)
            for _ in range(3):
                score(ids)
            calls, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                score(ids)
                calls += 1
            sec = time.perf_counter() - t0
            print(json.dumps({"impl": "pytorch-" + a.impl, "model": a.model, "mode": "throughput", "batch": a.batch,
                              "threads": a.threads, "calls": calls, "rows_per_s": round(a.batch * calls / sec)}),
                  flush=True)


if __name__ == "__main__":
    main()
