#!/usr/bin/env python3
"""Test MSE per task on the MMoE paper's synthetic data, rechub against PyTorch running the same models.

The data: `rechub synth --kind mmoe` (Ma et al., KDD 2018, section 3.3): two regression tasks on
100 dense inputs whose correlation is set by --correlation p. For every p, one data set (fixed
data seed) is split train/val/test; every model is trained from 3 seeds by

- rechub: `rechub train` with its defaults (standard normalisation, the default batch, Adam 1e-3 halved
  after every epoch whose validation MSE does not improve, the
  default sizes: experts 128-64 x 4, towers 64-32, SharedBottom 128-64) for a fixed number of
  epochs, no early stopping;
- PyTorch: the same model structure (tests/reference/models_torch.py, torch-rechub's layers: Linear,
  BatchNorm1d, ReLU), the same sizes, standardisation of the inputs on the training rows, batch,
  optimiser, learning rate and schedule (ReduceLROnPlateau on the mean validation MSE, x0.5,
  patience 0) and epochs, its own
  initialisation and shuffle.

Both report the test MSE of each task; the table gives mean and (min-max) over the seeds and
whether rechub is within PyTorch's seed spread: its mean MSE at most PyTorch's mean, or inside PyTorch's
min-max range widened by half its width, on both tasks; and the p-value of a two-sided Welch t-test
of equal means per task (below 0.05: a difference larger than the seed noise).

usage: synthetic_mmoe.py --rechub build/release/examples/rechub/rechub [--models shared_bottom,mmoe,omoe,ple]
                         [--correlations 0.5,0.9] [--seeds 1,2,3] [--rows 30000] [--epochs 20] [--work DIR]
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pandas as pd
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/reference"))
import models_torch  # noqa: E402  (the reference models of the parity tests)

# rechub's defaults (rechub/mtl/defaults.h), written out for the PyTorch side.
SIZES = {"hidden_units": [128, 64], "expert_units": [128, 64], "num_experts": 4, "num_shared_experts": 2,
         "num_layers": 2, "tower_units": [64, 32], "task_hidden_units": [64, 32]}
LR = 1e-3
GAMMA = 0.5  # defaults::lr_gamma


def batch_size_for(rows):
    """rechub's default batch (defaults::batch_size_for), passed to both sides explicitly."""
    b = 1024
    while b > 256 and rows // b < 200:
        b //= 2
    return b


def make_data(args, work, p):
    d = work / f"p{p}"
    if not (d / "mmoe_test.csv").exists():
        subprocess.run([args.rechub, "synth", "--kind", "mmoe", "--rows", str(args.rows), "--correlation", str(p),
                        "--seed", "7", "--out", str(d)], check=True, stdout=subprocess.DEVNULL)
    files = {s: d / f"mmoe_{s}.csv" for s in ("train", "val", "test")}
    files["batch"] = batch_size_for(sum(1 for _ in open(files["train"])) - 1)
    return files


def run_rechub(args, work, files, p, model, seed):
    out = work / "runs" / f"rechub_{model}_p{p}_s{seed}"
    cmd = [args.rechub, "train", "--train", str(files["train"]), "--val", str(files["val"]), "--test",
           str(files["test"]), "--tasks", "y1,y2", "--task-types", "regression,regression", "--model", model,
           "--seed", str(seed), "--epochs", str(args.epochs), "--batch-size", str(files["batch"]), "--threads", str(args.threads), "--quiet",
           "--no-cache", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    r = json.load(open(out / "test_metrics.json"))["tasks"]
    return [r["y1"]["mse"], r["y2"]["mse"]]


def run_torch(args, files, model, seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(args.threads)
    tr, te = pd.read_csv(files["train"]), pd.read_csv(files["test"])
    xs = [c for c in tr.columns if c.startswith("x")]
    mu, sd = tr[xs].mean().to_numpy(), tr[xs].std(ddof=0).to_numpy()
    sd[sd == 0] = 1
    X = torch.tensor(((tr[xs].to_numpy() - mu) / sd), dtype=torch.float32)
    Y = torch.tensor(tr[["y1", "y2"]].to_numpy(), dtype=torch.float32)
    Xt = torch.tensor(((te[xs].to_numpy() - mu) / sd), dtype=torch.float32)
    Yt = te[["y1", "y2"]].to_numpy()
    config = dict(SIZES, features={"sparse": [], "dense": xs}, task_types=["regression", "regression"],
                  task_names=["y1", "y2"], num_tasks=2, dropout=0.0, activation="relu", expert_activation="relu",
                  tower_activation="relu")
    if model == "ple":
        config["num_experts"] = SIZES["num_experts"]
    m = models_torch.build(model, {"features": []}, config)
    opt = torch.optim.Adam(m.parameters(), lr=LR)
    # rechub's default schedule (defaults::lr_schedule "plateau"): the rate halves after every epoch
    # whose validation metric (the mean of the tasks' MSE) is not below the best so far.
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=GAMMA, patience=0, threshold=0.0,
                                                       threshold_mode="abs")
    va = pd.read_csv(files["val"])
    Xv = torch.tensor(((va[xs].to_numpy() - mu) / sd), dtype=torch.float32)
    Yv = va[["y1", "y2"]].to_numpy()
    n, batch = X.shape[0], files["batch"]
    for _ in range(args.epochs):
        m.train()
        perm = torch.randperm(n)
        for b in range(0, n, batch):
            ix = perm[b:b + batch]
            if len(ix) < 2:  # BatchNorm needs two rows in training mode
                continue
            preds, _ = m(torch.zeros((len(ix), 0), dtype=torch.long), X[ix])
            loss = sum(torch.nn.functional.mse_loss(pr, Y[ix, t:t + 1]) for t, pr in enumerate(preds))
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            pv, _ = m(torch.zeros((Xv.shape[0], 0), dtype=torch.long), Xv)
        sched.step(float(np.mean([np.mean((p.numpy()[:, 0] - Yv[:, t]) ** 2) for t, p in enumerate(pv)])))
    m.eval()
    with torch.no_grad():
        preds, _ = m(torch.zeros((Xt.shape[0], 0), dtype=torch.long), Xt)
    return [float(np.mean((pr.numpy()[:, 0] - Yt[:, t]) ** 2)) for t, pr in enumerate(preds)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rechub", required=True)
    ap.add_argument("--models", default="shared_bottom,mmoe,omoe,ple")
    ap.add_argument("--correlations", default="0.5,0.9")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--rows", type=int, default=30000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=str(ROOT / "build/quality/synthetic_mmoe"))
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in args.correlations.split(","):
        files = make_data(args, work, p)
        for model in args.models.split(","):
            res = {"rechub": [], "pytorch": []}
            for seed in map(int, args.seeds.split(",")):
                res["rechub"].append(run_rechub(args, work, files, p, model, seed))
                res["pytorch"].append(run_torch(args, files, model, seed))
                print(f"p={p} {model} seed {seed}: rechub {res['rechub'][-1]} pytorch {res['pytorch'][-1]}",
                      file=sys.stderr, flush=True)
            rows.append((p, model, res))
    from scipy.stats import ttest_ind
    fmt = lambda v: f"{statistics.mean(v):.4f} ({min(v):.4f}-{max(v):.4f})"
    print("| correlation | model | rechub MSE y1 | PyTorch MSE y1 | rechub MSE y2 | PyTorch MSE y2 | within spread "
          "| Welch p y1 / y2 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p, model, res in rows:
        cells, within, pvals = [], [], []
        for t in range(2):
            r = [x[t] for x in res["rechub"]]
            q = [x[t] for x in res["pytorch"]]
            lo, hi = min(q), max(q)
            pad = (hi - lo) / 2
            within.append(lo - pad <= statistics.mean(r) <= hi + pad or statistics.mean(r) <= statistics.mean(q))
            cells += [fmt(r), fmt(q)]
            # Two-sided Welch t-test of equal mean MSE over the seeds: a small p says the two
            # trainings differ by more than their seed-to-seed noise.
            pvals.append(f"{ttest_ind(r, q, equal_var=False).pvalue:.2f}" if len(r) > 1 else "-")
        print(f"| {p} | {model} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | "
              f"{'yes' if all(within) else 'no'} | {' / '.join(pvals)} |")


if __name__ == "__main__":
    main()
