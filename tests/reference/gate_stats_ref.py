"""numpy/scipy reference of the gate diagnostics, for tests/mtl/gate_diagnostics_test.cpp.

Input JSON: {gate name: [[w_0, ..., w_E-1] per row]}. Output per gate: the mean weight of each
expert, the mean over rows of the entropy -sum w log w (scipy.stats.entropy, natural log), and the
share of rows whose largest weight is each expert's (numpy.argmax: the first on ties).
"""
import json
import sys

import numpy as np
from scipy.stats import entropy


def main(inp, out):
    res = {}
    for name, rows in json.load(open(inp)).items():
        w = np.array(rows, dtype=np.float64)
        top = np.bincount(np.argmax(w, axis=1), minlength=w.shape[1]) / w.shape[0]
        res[name] = {"mean_weight": w.mean(axis=0).tolist(), "entropy": float(np.mean(entropy(w, axis=1))),
                     "top_share": top.tolist()}
    json.dump(res, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
