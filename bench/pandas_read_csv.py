#!/usr/bin/python3
"""pandas.read_csv on a file, timed without the interpreter's start-up: the reference that
bench_data compares rechub's CSV reader with. Prints one JSON line:
{"seconds": ..., "rows": ..., "cpu_seconds": ..., "columns": ..., "bytes": ..., "pandas": "1.5.3"}

usage: /usr/bin/python3 bench/pandas_read_csv.py FILE [REPEATS]
(the best of REPEATS runs, default 1)
"""
import json
import os
import sys
import time

import pandas as pd


def main():
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    best = best_cpu = None
    rows = cols = 0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        df = pd.read_csv(path)  # default C engine, dtypes inferred: what a training script does
        t1, c1 = time.perf_counter(), time.process_time()
        rows, cols = df.shape
        del df
        best = t1 - t0 if best is None else min(best, t1 - t0)
        best_cpu = c1 - c0 if best_cpu is None else min(best_cpu, c1 - c0)
    print(json.dumps({"seconds": best, "rows": rows, "cpu_seconds": best_cpu, "columns": cols,
                      "bytes": os.path.getsize(path), "pandas": pd.__version__}))


if __name__ == "__main__":
    main()
