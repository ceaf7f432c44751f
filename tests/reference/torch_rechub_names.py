#!/usr/bin/env python3
"""rechub's model tensor names against torch-rechub's state_dict() keys (docs/STATE_DICT.md).

torch-rechub has no Debian package, so its multi-task models are rebuilt here from its source
(torch_rechub/basic/layers.py: MLP, EmbeddingLayer; torch_rechub/models/multi_task/*.py:
SharedBottom, ESMM, MMOE, PLE with CGC, AITM with AttentionLayer), module for module: only the
constructors matter, since only the state_dict keys and shapes are compared. Unlike
tests/reference/models_torch.py (rechub's own numerics, with rechub's gates), these are
torch-rechub's modules as they are: every gate is an MLP (Linear -> BatchNorm1d -> Softmax), PLE's
towers have no output layer, ESMM has no shared bottom, and there is no OMoE.

Each argument is a JSON file written by tests/mtl/models_state_dict_test.cpp:
  {"kind", "config" (the model's config_json()), "num_tasks", "layout" (the embedding's
   layout_json()), "tensors": {rechub name: shape} (parameters and buffers)}
The mapping below (rechub_to_torch_rechub, rechub_only, other_shape, torch_rechub_only) is the one
docs/STATE_DICT.md writes down. Every rechub tensor must map to a torch-rechub key of the same
shape or be listed as rechub-only; every torch-rechub key must be mapped to or be listed as
torch-rechub-only. Prints one line per case; exits 1 on any difference.

Usage: torch_rechub_names.py CASE.json [CASE.json ...]
"""
import json
import re
import sys

import torch.nn as nn

# ---- torch-rechub's modules (constructors only) ------------------------------------------------


def activation_layer(name):
    return nn.Softmax(dim=1) if name == "softmax" else nn.ReLU()  # no parameters either way


class MLP(nn.Module):  # torch_rechub.basic.layers.MLP
    def __init__(self, input_dim, output_layer=True, dims=None, dropout=0, activation="relu"):
        super().__init__()
        layers = []
        for i_dim in dims or []:
            layers.append(nn.Linear(input_dim, i_dim))
            layers.append(nn.BatchNorm1d(i_dim))
            layers.append(activation_layer(activation))
            layers.append(nn.Dropout(p=dropout))
            input_dim = i_dim
        if output_layer:
            layers.append(nn.Linear(input_dim, 1))
        self.mlp = nn.Sequential(*layers)


class EmbeddingLayer(nn.Module):  # torch_rechub.basic.layers.EmbeddingLayer
    def __init__(self, layout):
        super().__init__()
        self.embed_dict = nn.ModuleDict()
        for f in layout["features"]:
            if f["owner"] == f["name"]:  # shared_with is None
                self.embed_dict[f["name"]] = nn.Embedding(f["rows"], f["dim"])


def dims_in(layout, c):
    return sum(f["dim"] for f in layout["features"]) + len(c["features"]["dense"])


def n_tasks(c):
    return c["num_tasks"]


def towers_of(c, key="tower_units", per_task="tower_units_per_task"):
    return c[per_task] if c.get(per_task) else [c[key]] * n_tasks(c)


class SharedBottom(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        self.bottom_mlp = MLP(dims_in(layout, c), output_layer=False, dims=c["hidden_units"])
        self.towers = nn.ModuleList(
            MLP(c["hidden_units"][-1], dims=d) for d in towers_of(c, "task_hidden_units", "task_hidden_units_per_task"))


class ESMM(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        d = dims_in(layout, c)
        cvr, ctr = towers_of(c)[1], towers_of(c)[0]
        self.tower_cvr = MLP(d, dims=cvr)
        self.tower_ctr = MLP(d, dims=ctr)


class MMOE(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        d = dims_in(layout, c)
        E = c["num_experts"]
        self.experts = nn.ModuleList(MLP(d, output_layer=False, dims=c["expert_units"]) for _ in range(E))
        self.gates = nn.ModuleList(
            MLP(d, output_layer=False, dims=[E], activation="softmax") for _ in range(n_tasks(c)))
        self.towers = nn.ModuleList(MLP(c["expert_units"][-1], dims=t) for t in towers_of(c))


class CGC(nn.Module):
    def __init__(self, cur_level, n_level, n_task, n_specific, n_shared, input_dims, c):
        super().__init__()
        d = input_dims if cur_level == 1 else c["expert_units"][-1]
        mk = lambda: MLP(d, output_layer=False, dims=c["expert_units"])
        self.experts_specific = nn.ModuleList(mk() for _ in range(n_task * n_specific))
        self.experts_shared = nn.ModuleList(mk() for _ in range(n_shared))
        self.gates_specific = nn.ModuleList(
            MLP(d, output_layer=False, dims=[n_specific + n_shared], activation="softmax") for _ in range(n_task))
        if cur_level < n_level:
            self.gate_shared = MLP(d, output_layer=False, dims=[n_specific * n_task + n_shared], activation="softmax")


class PLE(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        T, L = n_tasks(c), c["num_layers"]
        self.cgc_layers = nn.ModuleList(
            CGC(i + 1, L, T, c["num_experts"], c["num_shared_experts"], dims_in(layout, c), c) for i in range(L))
        self.towers = nn.ModuleList(MLP(c["expert_units"][-1], output_layer=False, dims=t) for t in towers_of(c))


class AttentionLayer(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.q_layer = nn.Linear(dim, dim, bias=False)
        self.k_layer = nn.Linear(dim, dim, bias=False)
        self.v_layer = nn.Linear(dim, dim, bias=False)
        self.softmax = nn.Softmax(dim=1)


class AITM(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        T, d = n_tasks(c), c["hidden_units"][-1]
        self.bottoms = nn.ModuleList(
            MLP(dims_in(layout, c), output_layer=False, dims=c["hidden_units"]) for _ in range(T))
        self.towers = nn.ModuleList(MLP(d, dims=t) for t in towers_of(c))
        self.info_gates = nn.ModuleList(MLP(d, output_layer=False, dims=[d]) for _ in range(T - 1))
        self.aits = nn.ModuleList(AttentionLayer(d) for _ in range(T - 1))


TORCH_RECHUB = {"shared_bottom": SharedBottom, "esmm": ESMM, "mmoe": MMOE, "omoe": MMOE, "ple": PLE, "aitm": AITM}

# ---- the mapping (docs/STATE_DICT.md) ------------------------------------------------------------

# rechub's gates are Linear layers ("gates.<t>.weight"); torch-rechub's are MLPs whose Linear is
# "mlp.0" (then BatchNorm1d "mlp.1", Softmax, Dropout).
GATE = re.compile(r"^(gates\.\d+|cgc_layers\.\d+\.gates_specific\.\d+|cgc_layers\.\d+\.gate_shared)\.(weight|bias)$")


def rechub_to_torch_rechub(name):
    """The torch-rechub key of a rechub tensor (not an embedding arena), or None."""
    m = GATE.match(name)
    return "%s.mlp.0.%s" % (m.group(1), m.group(2)) if m else name


def rechub_only(kind, name, config):
    """rechub tensors torch-rechub's model has no key for."""
    if kind == "omoe" and name.startswith("gate."):
        return True  # OMoE's one gate: torch-rechub has no OMoE (its MMOE has one gate per task)
    if kind == "esmm" and name.startswith("bottom_mlp."):
        return True  # ESMM's optional shared bottom (hidden_units): torch-rechub's ESMM has none
    if kind == "ple":
        # PLE's towers end with Linear(., 1); torch-rechub builds them with output_layer=False.
        m = re.match(r"^towers\.(\d+)\.mlp\.(\d+)\.(weight|bias)$", name)
        if m and int(m.group(2)) == 4 * len(towers_of(config)[int(m.group(1))]):
            return True
    return False


def other_shape(kind, name, config):
    """rechub tensors whose torch-rechub key has another shape: with ESMM's shared bottom, the
    towers' first Linear reads the bottom's last width, not the embeddings."""
    return kind == "esmm" and bool(config.get("hidden_units")) and name in ("tower_ctr.mlp.0.weight",
                                                                          "tower_cvr.mlp.0.weight")


def torch_rechub_only(kind, key):
    """torch-rechub keys with no rechub tensor: the BatchNorm inside every gate (rechub's gates are
    Linear + softmax), and for OMoE the per-task gates altogether."""
    if kind == "omoe" and key.startswith("gates."):
        return True
    return re.match(r"^(gates\.\d+|cgc_layers\.\d+\.gates_specific\.\d+|cgc_layers\.\d+\.gate_shared)\.mlp\.1\.", key)


def check(case):
    kind, layout, tensors = case["kind"], case["layout"], case["tensors"]
    config = dict(case["config"], num_tasks=case["num_tasks"])
    torch_keys = {k: list(v.shape) for k, v in TORCH_RECHUB[kind](layout, config).state_dict().items()}
    problems, hit = [], set()
    for name, shape in tensors.items():
        if name.startswith("embedding."):  # an arena: its owners' rows are the embed_dict tables
            arena = name[len("embedding."):]
            rows = sorted((f["offset"], f["rows"], f["name"]) for f in layout["features"]
                          if f["arena"] == arena and f["owner"] == f["name"])
            at = 0
            for off, n, feat in rows:
                key = "embedding.embed_dict.%s.weight" % feat
                if off != at:
                    problems.append("%s: rows %d..%d belong to no feature" % (name, at, off))
                if torch_keys.get(key) != [n, shape[1]]:
                    problems.append("%s rows [%d, %d) -> %s: torch-rechub has %s" % (name, off, off + n, key,
                                                                                      torch_keys.get(key)))
                hit.add(key)
                at = off + n
            if at != shape[0]:
                problems.append("%s has %d rows, its features %d" % (name, shape[0], at))
            continue
        if rechub_only(kind, name, config):
            if rechub_to_torch_rechub(name) in torch_keys:
                problems.append("%s is listed as rechub-only but torch-rechub has it" % name)
            continue
        key = rechub_to_torch_rechub(name)
        if key not in torch_keys:
            problems.append("%s -> %s: no such torch-rechub key" % (name, key))
        elif torch_keys[key] != shape and not other_shape(kind, name, config):
            problems.append("%s -> %s: shape %s vs torch-rechub's %s" % (name, key, shape, torch_keys[key]))
        hit.add(key)
    for key in torch_keys:
        if key not in hit and not torch_rechub_only(kind, key):
            problems.append("torch-rechub's %s has no rechub tensor" % key)
    return problems, len(tensors), len(torch_keys)


def main():
    failed = False
    for path in sys.argv[1:]:
        with open(path) as f:
            case = json.load(f)
        problems, n_rechub, n_torch = check(case)
        print("%s: %d rechub tensors, %d torch-rechub keys: %s" % (path, n_rechub, n_torch,
                                                                  "ok" if not problems else "DIFFERENT"))
        for p in problems:
            print("  " + p)
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
