#!/usr/bin/env python3
"""PyTorch-on-GPU side of the CUDA comparison (bench/gpu/run.sh runs it after bench_gpu).

Measures what bench_gpu measures (copy / elementwise bandwidth, embedding lookup, expert GEMMs)
with PyTorch, plus end-to-end MMoE training samples/s (26 sparse features of dim 16, 13 dense,
8 experts [256, 128], 2 binary tasks, towers [64], Adam) at batches 4096..65536. Exact fp32
(TF32 off), like rechub's default. Prints "name value unit note" lines.
"""
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("torch is not installed: skipping the PyTorch comparison")
    sys.exit(0)

if not torch.cuda.is_available():
    print("no CUDA device visible to PyTorch: skipping the PyTorch comparison")
    sys.exit(0)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")


def time_it(f, reps=20):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = time.perf_counter()
        f()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - a)
    ts.sort()
    return ts[len(ts) // 2]


def line(name, value, unit, note=""):
    print(f"torch_{name:<38} {value:12.2f}  {unit:<8} {note}")


n = 1 << 28
a = torch.randn(n // 1024, 1024, device=dev)
b = torch.randn(n // 1024, 1024, device=dev)
c = torch.empty_like(a)
line("d2d_copy_1GiB", 2 * n * 4 / time_it(lambda: c.copy_(a)) / 1e9, "GB/s")
line("add_same_shape_1GiB", 3 * n * 4 / time_it(lambda: a + b) / 1e9, "GB/s")
line("relu_1GiB", 2 * n * 4 / time_it(lambda: torch.relu(a)) / 1e9, "GB/s")
del a, b, c

B, F, D, V = 65536, 26, 16, 10_000_000
table = torch.randn(V, D, device=dev)
ids = torch.randint(0, V, (B, F), device=dev)
line("embedding_lookup_B65536_F26_D16", (2 * B * F * D * 4 + B * F * 8) / time_it(lambda: table[ids]) / 1e9, "GB/s")
del table

x = torch.randn(8192, 8192, device=dev)
w = torch.randn(8192, 8192, device=dev)
peak = 2 * 8192 ** 3 / time_it(lambda: x @ w, 10) / 1e12
line("sgemm_8192_fp32", peak, "TFLOP/s")
del x, w
for Bt in (4096, 65536):
    xb = torch.randn(Bt, 512, device=dev)
    w1 = torch.randn(8 * 256, 512, device=dev)
    b1 = torch.randn(8 * 256, device=dev)
    t = time_it(lambda: torch.nn.functional.linear(xb, w1, b1))
    line(f"experts_layer1_linear_B{Bt}_512x2048", 2 * Bt * 2048 * 512 / t / 1e12 / peak * 100, "% peak")


class MMoE(nn.Module):
    def __init__(self, n_sparse=26, vocab=100_000, dim=16, n_dense=13, n_experts=8, units=(256, 128), tasks=2):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(vocab, dim) for _ in range(n_sparse))
        d_in = n_sparse * dim + n_dense

        def mlp(sizes):
            layers = []
            for i, o in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(i, o), nn.ReLU()]
            return nn.Sequential(*layers)

        self.experts = nn.ModuleList(mlp([d_in, *units]) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(d_in, n_experts) for _ in range(tasks))
        self.towers = nn.ModuleList(nn.Sequential(mlp([units[-1], 64]), nn.Linear(64, 1)) for _ in range(tasks))

    def forward(self, sparse, dense):
        x = torch.cat([e(sparse[:, i]) for i, e in enumerate(self.emb)] + [dense], dim=1)
        ex = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, h]
        outs = []
        for g, t in zip(self.gates, self.towers):
            w = torch.softmax(g(x), dim=1).unsqueeze(2)
            outs.append(t((w * ex).sum(1)).squeeze(1))
        return outs


model = MMoE().to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
lossf = nn.BCEWithLogitsLoss()
for Bt in (4096, 16384, 65536):
    sparse = torch.randint(0, 100_000, (Bt, 26), device=dev)
    dense = torch.randn(Bt, 13, device=dev)
    labels = [torch.randint(0, 2, (Bt,), device=dev).float() for _ in range(2)]

    def step():
        opt.zero_grad(set_to_none=True)
        outs = model(sparse, dense)
        loss = sum(lossf(o, y) for o, y in zip(outs, labels))
        loss.backward()
        opt.step()

    line(f"mmoe_train_B{Bt}", Bt / time_it(step, 10), "samples/s", "fp32, Adam")
