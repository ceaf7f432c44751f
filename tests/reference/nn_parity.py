"""PyTorch references for tests/nn/parity_test.cpp.

Usage: nn_parity.py DIR. For every DIR/<case>.in.safetensors (written by the C++ test) computes the
PyTorch result of the case described by its "case" metadata (JSON) and writes
DIR/<case>.out.safetensors. Modules are built as torch / torch-rechub build them and loaded with
load_state_dict(strict=True) from rechub's parameter names, so a naming difference fails too.
"""
import glob
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_safetensors as st  # noqa: E402


def T(a):
    return torch.from_numpy(np.array(a))


def N(t):
    return t.detach().cpu().numpy().copy()


class Dice(nn.Module):
    """DIN's Dice (paper form): p = sigmoid(BN_noaffine(x)), f = p x + (1 - p) alpha x."""

    def __init__(self, c, eps=1e-8):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.eps = eps

    def forward(self, x):
        s = nn.functional.batch_norm(x, self.running_mean, self.running_var, None, None, self.training, 0.1, self.eps)
        p = torch.sigmoid(s)
        return p * x + (1 - p) * self.alpha * x


def activation(name, c):
    name = name.lower()
    return {"relu": lambda: nn.ReLU(), "sigmoid": lambda: nn.Sigmoid(), "tanh": lambda: nn.Tanh(),
            "prelu": lambda: nn.PReLU(), "dice": lambda: Dice(c), "softmax": lambda: nn.Softmax(dim=1),
            "leaky_relu": lambda: nn.LeakyReLU(), "identity": lambda: nn.Identity()}[name]()


class MLP(nn.Module):
    """torch-rechub's MLP (Linear -> BatchNorm1d -> activation -> Dropout per layer, Linear(., 1))."""

    def __init__(self, input_dim, dims, activation_name, dropout, batch_norm, output_layer):
        super().__init__()
        layers = []
        for d in dims:
            layers.append(nn.Linear(input_dim, d))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d))
            layers.append(activation(activation_name, d))
            layers.append(nn.Dropout(p=dropout))
            input_dim = d
        if output_layer:
            layers.append(nn.Linear(input_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x)


def case_linear(cfg, t):
    lin = nn.Linear(t["weight"].shape[1], t["weight"].shape[0])
    lin.load_state_dict({"weight": T(t["weight"]), "bias": T(t["bias"])})
    x = T(t["x"]).requires_grad_(True)
    y = lin(x)
    (y * T(t["gy"])).sum().backward()
    return {"y": N(y), "dx": N(x.grad), "dweight": N(lin.weight.grad), "dbias": N(lin.bias.grad)}


def case_mlp(cfg, t):
    m = MLP(cfg["input_dim"], cfg["dims"], cfg["activation"], cfg["dropout"], cfg["batch_norm"], cfg["output_layer"])
    state = {k[len("model."):]: T(v) for k, v in t.items() if k.startswith("model.")}
    m.load_state_dict(state, strict=True)
    m.train()
    out = {"y1": N(m(T(t["x1"])))}
    y2 = m(T(t["x2"]))
    (y2 * T(t["gy"])).sum().backward()
    out["y2"] = N(y2)
    for name, p in m.named_parameters():
        out["grad." + name] = N(p.grad)
    m.eval()
    with torch.no_grad():
        out["y3"] = N(m(T(t["x3"])))
    for name, b in m.named_buffers():
        out["buffer." + name] = N(b)
    return out


def owners(specs):
    """feature name -> owning feature (shared_with chains resolved)."""
    by = {s["name"]: s for s in specs}
    res = {}
    for s in specs:
        o = s
        while o["shared_with"]:
            o = by[o["shared_with"]]
        res[s["name"]] = o["name"]
    return res


def build_tables(specs, t, sparse):
    own = owners(specs)
    tables = {}
    for s in specs:
        if own[s["name"]] == s["name"]:
            w = T(t["table." + s["name"]])
            e = nn.Embedding(w.shape[0], w.shape[1], sparse=sparse)
            e.weight.data.copy_(w)
            tables[s["name"]] = e
    return own, tables


def lookup(specs, own, tables, ids):
    return torch.cat([tables[own[s["name"]]](ids[:, f]) for f, s in enumerate(specs)], dim=1)


def case_embedding(cfg, t):
    own, tables = build_tables(cfg["specs"], t, False)
    y = lookup(cfg["specs"], own, tables, T(t["ids"]).long())
    (y * T(t["gy"])).sum().backward()
    out = {"y": N(y)}
    for name, e in tables.items():
        out["grad." + name] = N(e.weight.grad)
    return out


def make_optimizer(kind, opts, groups):
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=opts["momentum"], dampening=opts["dampening"],
                               nesterov=opts["nesterov"])
    if kind == "adam":
        return torch.optim.Adam(groups, betas=(opts["beta1"], opts["beta2"]), eps=opts["eps"])
    if kind == "adamw":
        return torch.optim.AdamW(groups, betas=(opts["beta1"], opts["beta2"]), eps=opts["eps"])
    if kind == "adagrad":
        return torch.optim.Adagrad(groups, lr_decay=opts["lr_decay"],
                                   initial_accumulator_value=opts["initial_accumulator_value"], eps=opts["eps"])
    if kind == "sparse_adam":
        return torch.optim.SparseAdam([p for g in groups for p in g["params"]], lr=groups[0]["lr"],
                                      betas=(opts["beta1"], opts["beta2"]), eps=opts["eps"])
    raise ValueError(kind)


def case_optim(cfg, t):
    params = {}
    groups = []
    for g in cfg["groups"]:
        ps = []
        for n in g["params"]:
            params[n] = torch.nn.Parameter(T(t["param." + n]))
            ps.append(params[n])
        groups.append({"params": ps, "lr": g["lr"], "weight_decay": g["weight_decay"]})
    opt = make_optimizer(cfg["optimizer"], cfg["options"], groups)
    out = {}
    for s in range(cfg["steps"]):
        for n, p in params.items():
            if cfg.get("sparse"):
                key = "gidx.%d.%s" % (s, n)
                if key in t:
                    p.grad = torch.sparse_coo_tensor(T(t[key]).unsqueeze(0), T(t["gval.%d.%s" % (s, n)]), p.shape)
                else:
                    p.grad = None
            else:
                key = "grad.%d.%s" % (s, n)
                p.grad = T(t[key]) if key in t else None
        opt.step()
        for n, p in params.items():
            out["after.%d.%s" % (s, n)] = N(p)
    for n, p in params.items():
        for k, v in opt.state[p].items():
            if torch.is_tensor(v) and v.dim() > 0:
                out["state.%s.%s" % (n, k)] = N(v.to_dense() if v.is_sparse else v)
    return out


def case_emb_train(cfg, t):
    sparse = cfg["sparse"]
    own, tables = build_tables(cfg["specs"], t, sparse)
    params = list(tables.values())
    ps = [e.weight for e in params]
    opt = (torch.optim.SparseAdam(ps, lr=cfg["lr"]) if sparse else torch.optim.Adam(ps, lr=cfg["lr"]))
    out = {}
    for s in range(cfg["steps"]):
        opt.zero_grad()
        y = lookup(cfg["specs"], own, tables, T(t["ids.%d" % s]).long())
        (y * T(t["gy.%d" % s])).sum().backward()
        opt.step()
        for name, e in tables.items():
            out["after.%d.%s" % (s, name)] = N(e.weight)
    return out


def case_sched(cfg, t):
    out = {}
    for i, sc in enumerate(cfg["schedules"]):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=sc["base"])
        k = sc["kind"]
        if k == "step":
            s = torch.optim.lr_scheduler.StepLR(opt, sc["step_size"], sc["gamma"])
        elif k == "exp":
            s = torch.optim.lr_scheduler.ExponentialLR(opt, sc["gamma"])
        elif k == "cosine":
            s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, sc["t_max"], sc["eta_min"])
        elif k == "linear":
            s = torch.optim.lr_scheduler.LinearLR(opt, sc["start"], sc["end"], sc["total"])
        elif k == "warmup_cosine":
            w = torch.optim.lr_scheduler.LinearLR(opt, max(sc["start"], 1e-12), 1.0, sc["warmup"])
            c = torch.optim.lr_scheduler.CosineAnnealingLR(opt, sc["total"] - sc["warmup"], sc["eta_min"])
            s = torch.optim.lr_scheduler.SequentialLR(opt, [w, c], milestones=[sc["warmup"]])
        lrs = []
        for _ in range(sc["steps"]):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        out["lrs.%d" % i] = np.array(lrs, dtype=np.float64)
    return out


CASES = {"linear": case_linear, "mlp": case_mlp, "embedding": case_embedding, "optim": case_optim,
         "emb_train": case_emb_train, "sched": case_sched}


def main():
    torch.manual_seed(0)
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.in.safetensors"))):
        tensors, meta = st.load(path)
        cfg = json.loads(meta["case"])
        out = CASES[cfg["kind"]](cfg, tensors)
        st.save(path.replace(".in.safetensors", ".out.safetensors"), out)


if __name__ == "__main__":
    main()
