"""scikit-learn reference for tests/mtl/metrics_sklearn_test.cpp.

Reads a JSON file {"cases": [{"labels": [...], "scores": [...], "groups": [...]}, ...]} and writes
{"results": [{"auc": x, "logloss": y, "gauc": z, "mse": m, "mae": a}, ...]} computed by
scikit-learn on float64 arrays (GAUC: per-group roc_auc_score weighted by the group's row count,
groups with a single class skipped).
"""
import json
import sys

import numpy as np
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error, roc_auc_score


def gauc(y, s, g):
    num = den = 0.0
    for k in np.unique(g):
        m = g == k
        if len(np.unique(y[m])) < 2:
            continue
        num += roc_auc_score(y[m], s[m]) * m.sum()
        den += m.sum()
    return num / den if den > 0 else float("nan")


def main(inp, out):
    cases = json.load(open(inp))["cases"]
    results = []
    for c in cases:
        y = np.asarray(c["labels"], dtype=np.float64)
        s = np.asarray(c["scores"], dtype=np.float64)
        g = np.asarray(c["groups"], dtype=np.int64)
        p = np.clip(s, 0.0, 1.0)
        results.append({
            "auc": float(roc_auc_score(y, s)),
            "logloss": float(log_loss(y, p, labels=[0, 1])),
            "gauc": float(gauc(y, s, g)),
            "mse": float(mean_squared_error(y, s)),
            "mae": float(mean_absolute_error(y, s)),
        })
    json.dump({"results": results}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
