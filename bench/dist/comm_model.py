#!/usr/bin/env python3
"""Communication volume and expected scaling of rechub's data-parallel + row-sharded training,
on paper (bench/RESULTS.md, "Training on several machines").

Per step and machine, with N machines, per-machine batch B, F sparse features of width D, P dense
parameters (float32), ids int64:
  dense gradients, ring allreduce:      2 (N-1)/N * 4 P            bytes sent
  sharded tables, forward ids:          (N-1)/N * 8 B F            (alltoallv; no de-duplication)
  sharded tables, forward vectors:      (N-1)/N * 4 B F D
  sharded tables, backward row grads:   (N-1)/N * 4 B F D
  BatchNorm statistics:                 per BN layer of C channels, an allgather of (1+2C) doubles
                                        forward and an allreduce of 2C doubles backward (small)
Time per step = compute + the sum over collectives of (latency + bytes / bandwidth); rechub does not
overlap communication with compute yet, so nothing is hidden. Latency per collective: 2 log2(N)
messages of alpha (recursive doubling, what MPI picks for small messages); alltoallv: N-1
messages. Compute per row is measured (bench/dist/run.sh, one rank, one thread) and scaled by the
model's dense FLOPs.
"""
import math
import sys

ALPHA = 20e-6  # seconds per message over TCP on 25/100 GbE (MPI over RDMA: ~2-5 us)


def step(N, B, F, D, P, bn_channels, gbit, compute_s):
    bw = gbit * 1e9 / 8
    f = (N - 1) / N
    dense = 2 * f * 4 * P
    ids = f * 8 * B * F
    vec = f * 4 * B * F * D
    grad_rows = f * 4 * B * F * D
    bn = sum((1 + 2 * c) * 8 * N + 2 * c * 8 * 2 * f for c in bn_channels)
    n_small = 2 * len(bn_channels) + 2  # BN forward+backward per layer, presence flags, losses
    n_buckets = max(1, math.ceil(P / (1 << 22)))
    lat = (n_small + n_buckets) * 2 * math.log2(N) * ALPHA + 3 * (N - 1) * ALPHA
    t_comm = lat + (dense + ids + vec + grad_rows + bn) / bw
    return dense, ids + vec + grad_rows, bn, t_comm, compute_s


def main():
    # Measured by bench/dist/run.sh on the development machine: one rank, one thread, MMoE of the
    # quickstart (8 sparse features x 16, 4 dense, experts 128,64 x 4, towers 64,32).
    rows_per_s_1thread = float(sys.argv[1]) if len(sys.argv) > 1 else 60000.0
    models = {
        # name: (F, D, dense params P, BN channels per layer, compute seconds per row)
        "quickstart MMoE (F=8, D=16, P=0.12M)": (8, 16, 116_266, [4 * 128, 4 * 64], 1 / rows_per_s_1thread),
        # A Criteo-sized MMoE: 26 features of width 128, experts 1024,512 x 8 on the 3341-wide input,
        # towers 256,128; compute scaled from the quickstart by the dense FLOPs per row (2 P).
        "Criteo-sized MMoE (F=26, D=128, P=31.7M)": (26, 128, 31_700_000, [8 * 1024, 8 * 512],
                                                     (31_700_000 / 116_266) / rows_per_s_1thread),
    }
    B = 4096
    print(f"per-machine batch B = {B}; one machine computes {rows_per_s_1thread:.0f} rows/s per core on the quickstart "
          f"MMoE (measured), times 16 cores per machine; alpha = {ALPHA * 1e6:.0f} us per message\n")
    print("| model | N | link | dense allreduce MB | alltoall MB | comm ms | compute ms | efficiency | speed-up vs 1 machine |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (F, D, P, bn, per_row) in models.items():
        compute = B * per_row / 16  # 16 cores per machine, ideal intra-machine scaling
        for N in (8, 64):
            for gbit in (25, 100):
                dense, a2a, bnb, t_comm, t_comp = step(N, B, F, D, P, bn, gbit, compute)
                eff = t_comp / (t_comp + t_comm)
                print(f"| {name} | {N} | {gbit} Gbit/s | {dense / 1e6:.2f} | {a2a / 1e6:.2f} | {t_comm * 1e3:.1f} | "
                      f"{t_comp * 1e3:.1f} | {eff:.2f} | {N * eff:.1f}x |")


if __name__ == "__main__":
    main()
