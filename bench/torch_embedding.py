#!/usr/bin/env python3
"""PyTorch's side of bench_embedding: the embedding training step of 8 tables (vocabularies
100000 ... 4, dim 16) at batch 4096 with Zipf ids, as torch-rechub trains it.

A step is zero_grad (set to None), the lookup of every feature (one nn.Embedding per feature,
outputs concatenated into [4096, 128]), backward with a fixed upstream gradient, optimizer step:

- dense:  nn.Embedding(sparse=False) + torch.optim.Adam (what torch-rechub does);
- sparse: nn.Embedding(sparse=True) + torch.optim.SparseAdam (lazy Adam on the touched rows).

    /usr/bin/python3 bench/torch_embedding.py [--threads 1,2] [--steps 200] [--repeats 5]

Prints, per mode and thread count, the median over repeats of the mean step time (ms), and
the rows touched per step. Ids: P(k) ~ 1/(k+1), k = floor((V+1)^u) - 1, u uniform (as
bench_embedding.cpp draws them); 8 batches in turn.
"""
import argparse
import statistics
import time

import numpy as np
import torch

VOCABS = [100000, 50000, 20000, 5000, 1000, 100, 10, 4]
BATCH, DIM, BATCHES = 4096, 16, 8


def zipf_batches(rng):
    out = []
    for _ in range(BATCHES):
        cols = []
        for v in VOCABS:
            k = np.floor(np.exp(rng.random(BATCH) * np.log(v + 1.0))).astype(np.int64) - 1
            cols.append(np.minimum(k, v - 1))
        out.append(torch.from_numpy(np.stack(cols, axis=1)))
    return out


def run(mode, steps, repeats):
    torch.manual_seed(1)
    sparse = mode == "sparse"
    tables = torch.nn.ModuleList([torch.nn.Embedding(v, DIM, sparse=sparse) for v in VOCABS])
    for t in tables:
        torch.nn.init.normal_(t.weight, std=1e-2)
    opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(tables.parameters(), lr=1e-3)
    batches = zipf_batches(np.random.default_rng(2))
    gy = torch.randn(BATCH, DIM * len(VOCABS))

    def step(ids):
        opt.zero_grad(set_to_none=True)
        out = torch.cat([t(ids[:, f]) for f, t in enumerate(tables)], dim=1)
        out.backward(gy)
        opt.step()

    for i in range(20):  # warm-up: optimizer state, allocator
        step(batches[i % BATCHES])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            step(batches[i % BATCHES])
        times.append((time.perf_counter() - t0) / steps * 1e3)
    rows = sum(int(torch.unique(batches[0][:, f]).numel()) for f in range(len(VOCABS)))
    return statistics.median(times), rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(f"torch {torch.__version__}")
    for th in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(th)
        res = {m: run(m, a.steps, a.repeats) for m in ("sparse", "dense")}
        for m, (ms, rows) in res.items():
            print(f"threads {th}  {m:6s}  {ms:.3f} ms/step  ({rows} rows touched in batch 0)")
        print(f"threads {th}  dense / sparse = {res['dense'][0] / res['sparse'][0]:.1f}x")


if __name__ == "__main__":
    main()
