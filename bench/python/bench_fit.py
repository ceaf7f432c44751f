"""Python fit speed against the `rechub` command on the same run (bench/RESULTS.md, "Python").

Both train the same model on the same rows with the same seed and settings (the weights they end
with are checked equal, so it is the same run); the runs alternate CLI, Python, CLI, ... and the
medians are compared. Timed: the trainer's own per-epoch seconds (training batches only, both
sides record them in metrics.jsonl / trainer.history) and the whole fit() call against the CLI's
process wall time minus its data loading (the CLI's epochs + validation + checkpoints).

    flock /work/notes/bench.lock /usr/bin/python3 bench/python/bench_fit.py \
        --cli build/release/examples/rechub/rechub --rows 120000 --epochs 2 --reps 3 --threads 2
(PYTHONPATH=<build>/python)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
from test_cli_parity import encode_like_cli, read_safetensors  # noqa: E402  (the parity test's helpers)

import rechub  # noqa: E402
from rechub.basic.features import DenseFeature, SparseFeature  # noqa: E402
from rechub.models.multi_task import MMOE  # noqa: E402
from rechub.trainers import MTLTrainer  # noqa: E402
from rechub.utils.data import DataGenerator  # noqa: E402

LABELS = ["click", "purchase"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--rows", type=int, default=120000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1024)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rechub-bench-py-")
    subprocess.run([a.cli, "synth", "--kind", "ali-ccp", "--rows", str(a.rows), "--val-fraction", "0.1",
                    "--test-fraction", "0.1", "--seed", "5", "--out", work], check=True, stdout=subprocess.DEVNULL)
    tr = pd.read_csv(os.path.join(work, "ali_ccp_train.csv"))
    va = pd.read_csv(os.path.join(work, "ali_ccp_val.csv"))
    sparse = [c for c in tr.columns if c not in LABELS and not c.startswith("D")]
    dense = [c for c in tr.columns if c.startswith("D")]
    xt = {c: tr[c].to_numpy() for c in sparse + dense}
    xv = {c: va[c].to_numpy() for c in sparse + dense}
    enc_t, (enc_v,), vocab = encode_like_cli(xt, [xv], sparse)
    rechub.set_num_threads(a.threads)
    common = ["--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--lr", "0.001", "--seed", "1",
              "--embed-dim", "16", "--model", "mmoe", "--expert-units", "128,64", "--num-experts", "4",
              "--tower-units", "64,32", "--threads", str(a.threads), "--quiet",
              "--normalize", "none"]  # Python feeds the dense columns as given
    cli_epoch, cli_wall, py_epoch, py_fit = [], [], [], []
    for rep in range(a.reps):
        out = os.path.join(work, f"cli{rep}")
        t0 = time.perf_counter()
        subprocess.run([a.cli, "train", "--train", os.path.join(work, "ali_ccp_train.csv"), "--val",
                        os.path.join(work, "ali_ccp_val.csv"), "--tasks", "click,purchase", "--out", out] + common,
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
        cli_epoch.append(sum(r["seconds"] for r in recs))
        cli_wall.append(wall)

        features = [SparseFeature(c, vocab_size=vocab[c], embed_dim=16) for c in sparse] + \
                   [DenseFeature(c) for c in dense]
        model = MMOE(features, ["classification"] * 2, n_expert=4, expert_params={"dims": [128, 64]},
                     tower_params_list=[{"dims": [64, 32]}] * 2, task_names=LABELS, seed=1)
        ydf = lambda d: pd.DataFrame({n: d[n].to_numpy() for n in LABELS})
        train_dl, val_dl, _ = DataGenerator(enc_t, ydf(tr)).generate_dataloader(
            x_val=enc_v, y_val=ydf(va), batch_size=a.batch_size, seed=1)
        pout = os.path.join(work, f"py{rep}")
        trainer = MTLTrainer(model, ["classification"] * 2, optimizer_params={"lr": 0.001, "weight_decay": 0.0},
                             n_epoch=a.epochs, earlystop_patience=0, model_path=pout, seed=1)
        t0 = time.perf_counter()
        trainer.fit(train_dl, val_dl)
        py_fit.append(time.perf_counter() - t0)
        py_epoch.append(sum(r["seconds"] for r in trainer.history))
        wc, wp = read_safetensors(os.path.join(out, "model.safetensors")), \
            read_safetensors(os.path.join(pout, "model.safetensors"))
        same = sorted(wc) == sorted(wp) and all(np.array_equal(wc[k], wp[k]) for k in wc)
        print(f"rep {rep}: CLI epochs {cli_epoch[-1]:.2f} s (process {wall:.2f} s), Python epochs "
              f"{py_epoch[-1]:.2f} s (fit {py_fit[-1]:.2f} s), same weights: {same}", flush=True)
        if not same:
            sys.exit("the two runs ended with different weights: not the same run")
    mc, mp = statistics.median(cli_epoch), statistics.median(py_epoch)
    rows = len(tr) * a.epochs
    print(f"median training time over {a.reps} runs, {len(tr)} rows x {a.epochs} epochs, {a.threads} threads: "
          f"CLI {mc:.2f} s ({rows / mc:.0f} rows/s), Python {mp:.2f} s ({rows / mp:.0f} rows/s), "
          f"Python/CLI {mp / mc:.3f}")
    print(f"fastest run: CLI {min(cli_epoch):.2f} s, Python {min(py_epoch):.2f} s, Python/CLI "
          f"{min(py_epoch) / min(cli_epoch):.3f}")
    print(f"median Python fit() {statistics.median(py_fit):.2f} s; CLI process {statistics.median(cli_wall):.2f} s "
          "(includes reading and encoding the CSV files)")


if __name__ == "__main__":
    main()
