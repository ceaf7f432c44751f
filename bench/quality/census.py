#!/usr/bin/env python3
"""Test AUC per task on the real census-income rows, rechub against simple baselines.

The MMoE paper's task group 1 (income > 50K; never married) on the 99,762 UCI rows bundled in
examples/data/census-income-kdd/: labels removed from the inputs, the 7 numeric columns dense, the
other 32 columns categorical (missing '?' as its own value), split 50/25/25 with a fixed seed.
Every rechub run is `rechub train` with its defaults and early stopping on the validation split
(--epochs 30 --early-stop 3); the test split is only scored. Beside it, on the same split:
scikit-learn's one-hot logistic regression (log1p + standard scaling of the numeric columns) and
HistGradientBoostingClassifier (categorical columns native).

usage: census.py --rechub build/release/examples/rechub/rechub [--models shared_bottom,mmoe,omoe,ple]
                 [--balances fixed] [--seeds 1,2,3] [--work DIR] [--extra "--flag value"] [--no-baselines]
Prints a markdown table: mean and (min-max) over the seeds of the test AUCs, the mean validation AUCs
of the epochs early stopping kept (compare choices of flags on these, not on the test columns), and
the epochs run.
"""
import argparse
import gzip
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[2]
RAW = ROOT / "examples/data/census-income-kdd/census-income.test.gz"
DENSE = ["age", "wage per hour", "capital gains", "capital losses", "dividends from stocks",
         "num persons worked for employer", "weeks worked in year"]


def columns():
    cfg = json.load(open(ROOT / "examples/data/census-income-kdd/census_income_kdd.json"))
    return cfg["schema"]["columns"]


def prepare(work: pathlib.Path):
    """Writes train/val/test CSVs (header, labels income and marital, D0..D6, C0..C31)."""
    work.mkdir(parents=True, exist_ok=True)
    if (work / "test.csv").exists():
        return
    cols = columns()
    with gzip.open(RAW, "rt") as f:
        d = pd.read_csv(f, header=None, names=cols, sep=", ", engine="python", na_values=["?"])
    sparse = [c for c in cols if c not in DENSE + ["instance weight", "income", "marital stat"]]
    df = pd.DataFrame({
        "income": d["income"].str.strip().str.startswith("50000+").astype(int),
        "marital": (d["marital stat"].str.strip() == "Never married").astype(int)})
    for i, c in enumerate(DENSE):
        df[f"D{i}"] = d[c].astype(float)
    for i, c in enumerate(sparse):
        df[f"C{i}"] = d[c].fillna("NA").astype(str).str.replace(",", ";")
    idx = np.random.default_rng(2018).permutation(len(df))
    n = len(df)
    for name, ix in (("train", idx[: n // 2]), ("val", idx[n // 2: 3 * n // 4]), ("test", idx[3 * n // 4:])):
        df.iloc[ix].to_csv(work / f"{name}.csv", index=False)


def baselines(work):
    from scipy import sparse as sp
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    tr, te = (pd.read_csv(work / f"{s}.csv", dtype={c: str for c in [f"C{i}" for i in range(32)]}) for s in ("train", "test"))
    cat = [c for c in tr.columns if c.startswith("C")]
    num = [c for c in tr.columns if c.startswith("D")]
    oh = OneHotEncoder(handle_unknown="ignore").fit(tr[cat])
    sc = StandardScaler().fit(np.log1p(tr[num].clip(lower=0)))
    X = lambda z: sp.hstack([oh.transform(z[cat]), sp.csr_matrix(sc.transform(np.log1p(z[num].clip(lower=0))))]).tocsr()
    oe = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan).fit(tr[cat])
    H = lambda z: np.hstack([oe.transform(z[cat]), z[num].to_numpy()])
    out = {}
    for t in ("income", "marital"):
        lr = LogisticRegression(max_iter=3000).fit(X(tr), tr[t])
        out.setdefault("logistic regression (one-hot)", {})[t] = [roc_auc_score(te[t], lr.predict_proba(X(te))[:, 1])]
        hgb = HistGradientBoostingClassifier(categorical_features=list(range(len(cat))), random_state=0,
                                             max_iter=300, early_stopping=True).fit(H(tr), tr[t])
        out.setdefault("gradient-boosted trees (HistGB)", {})[t] = [roc_auc_score(te[t], hgb.predict_proba(H(te))[:, 1])]
    return out


def run_rechub(args, work, model, balance, seed):
    out = work / "runs" / f"{model}_{balance}_{seed}"
    cmd = [args.rechub, "train", "--train", str(work / "train.csv"), "--val", str(work / "val.csv"),
           "--test", str(work / "test.csv"), "--tasks", "income,marital",
           "--dense", ",".join(f"D{i}" for i in range(7)), "--sparse", ",".join(f"C{i}" for i in range(32)),
           "--model", model, "--balance", balance, "--seed", str(seed), "--epochs", "30", "--early-stop", "3",
           "--quiet", "--out", str(out)] + shlex.split(args.extra)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    r = json.load(open(out / "test_metrics.json"))["tasks"]
    log = [json.loads(line) for line in open(out / "metrics.jsonl")]
    # The validation AUCs of the epoch early stopping keeps (the best mean over the tasks): what a
    # choice of defaults may look at; the test AUCs are only reported.
    kept = max(log, key=lambda e: statistics.mean(e["val"]["tasks"][t]["auc"] for t in ("income", "marital")))
    val = {t: kept["val"]["tasks"][t]["auc"] for t in ("income", "marital")}
    return {t: r[t]["auc"] for t in ("income", "marital")}, val, len(log)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rechub", required=True)
    ap.add_argument("--models", default="shared_bottom,mmoe,omoe,ple")
    ap.add_argument("--balances", default="fixed")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--work", default=str(ROOT / "build/quality/census"))
    ap.add_argument("--extra", default="", help="more rechub train flags, e.g. \"--lr 2e-3\"")
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    prepare(work)
    rows = {}
    if not args.no_baselines:
        rows.update(baselines(work))
    for model in args.models.split(","):
        for balance in args.balances.split(","):
            key = f"rechub {model}, {balance}"
            for seed in args.seeds.split(","):
                auc, val, epochs = run_rechub(args, work, model, balance, int(seed))
                for t, v in auc.items():
                    rows.setdefault(key, {}).setdefault(t, []).append(v)
                    rows[key].setdefault("val " + t, []).append(val[t])
                rows[key].setdefault("epochs", []).append(epochs)
                print(f"{key} seed {seed}: income {auc['income']:.4f} marital {auc['marital']:.4f} ({epochs} epochs; "
                      f"validation {val['income']:.4f} {val['marital']:.4f})", file=sys.stderr, flush=True)
    print("| run | test AUC income | test AUC never married | validation AUC income / never married | epochs |")
    print("| --- | --- | --- | --- | --- |")
    fmt = lambda v: f"{statistics.mean(v):.4f}" + (f" ({min(v):.4f}-{max(v):.4f})" if len(v) > 1 else "")
    for k, r in rows.items():
        ep = r.get("epochs")
        val = f"{statistics.mean(r['val income']):.4f} / {statistics.mean(r['val marital']):.4f}" if ep else "-"
        epochs = f"{statistics.mean(ep):.1f} ({min(ep)}-{max(ep)})" if ep else "-"
        print(f"| {k} | {fmt(r['income'])} | {fmt(r['marital'])} | {val} | {epochs} |")


if __name__ == "__main__":
    main()
