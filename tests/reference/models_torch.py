#!/usr/bin/env python3
"""PyTorch references of rechub's multi-task models, written the way torch-rechub writes them.

SharedBottom, ESMM, MMoE, OMoE, PLE and AITM with torch-rechub's building blocks: MLP =
Linear -> BatchNorm1d -> activation -> Dropout per hidden layer (+ Linear(., 1) as output layer),
an EmbeddingLayer of one nn.Embedding per feature (shared_with reads the owner's table) with the
dense values appended, sigmoid predictions for binary tasks. Deviations from torch-rechub, on
purpose and as the rechub models do:
  * MMoE/OMoE/PLE gates are Linear(input_dim, n_expert) + Softmax (torch-rechub also puts a
    BatchNorm1d between them);
  * PLE towers end with Linear(., 1) (torch-rechub builds them with output_layer=False);
  * an optional shared bottom MLP for ESMM (`hidden_units`, empty by default = the paper).

Exchange with the C++ tests: each case is a directory holding
  case.json          {"kind", "config" (the model's config_json()), "layout" (the embedding
                     layout_json()), "training": bool}
  weights.safetensors  every parameter and buffer under rechub's names
  inputs.safetensors   "sparse" i64 [B, F], optionally "dense" f32 [B, D], "labels" f32 [B, T]
and this script writes results.safetensors:
  "pred.<t>" [B, 1], "loss.<t>" [] (per task), "cvr" (ESMM), "grad.<name>" for every parameter
  (gradient of the sum of the task losses; embedding arenas as dense [rows, dim]) and
  "buffer.<name>" for every buffer after the forward pass (running statistics).

Usage: models_torch.py CASE_DIR [CASE_DIR ...]
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

# ---- safetensors, by hand (8-byte little-endian header length, JSON header, raw data) ----------

_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
_DT_NAME = {np.dtype(v): k for k, v in _DT.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        b, e = meta["data_offsets"]
        arr = np.frombuffer(data[base + b:base + e], dtype=_DT[meta["dtype"]]).reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        raw = a.tobytes()
        header[name] = {"dtype": _DT_NAME[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- torch-rechub's building blocks -----------------------------------------------------------

def activation_layer(name):
    name = name.lower()
    if name == "relu":
        return nn.ReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name in ("leaky_relu", "leakyrelu"):
        return nn.LeakyReLU(0.01)
    if name in ("linear", "identity", "none"):
        return nn.Identity()
    if name == "softmax":
        return nn.Softmax(dim=1)
    raise ValueError("activation " + name)


class MLP(nn.Module):
    def __init__(self, input_dim, output_layer=True, dims=None, dropout=0, activation="relu"):
        super().__init__()
        dims = dims or []
        layers = []
        for i_dim in dims:
            layers.append(nn.Linear(input_dim, i_dim))
            layers.append(nn.BatchNorm1d(i_dim))
            layers.append(activation_layer(activation))
            layers.append(nn.Dropout(p=dropout))
            input_dim = i_dim
        if output_layer:
            layers.append(nn.Linear(input_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x)


class EmbeddingLayer(nn.Module):
    """One nn.Embedding per feature that owns a table; shared_with features read the owner's."""

    def __init__(self, layout):
        super().__init__()
        self.features = layout["features"]
        self.embed_dict = nn.ModuleDict()
        for f in self.features:
            if f["owner"] == f["name"]:
                self.embed_dict[f["name"]] = nn.Embedding(f["rows"], f["dim"])

    def forward(self, sparse, dense):
        parts = [self.embed_dict[f["owner"]](sparse[:, i]) for i, f in enumerate(self.features)]
        if dense is not None and dense.shape[1] > 0:
            parts.append(dense)
        return torch.cat(parts, dim=1)


def input_dim(layout, config):
    return sum(f["dim"] for f in layout["features"]) + len(config["features"]["dense"])


def is_binary(config, n_task):
    types = config.get("task_types") or ["binary"] * n_task
    return [t == "binary" for t in types]


def n_tasks(config):
    return len(config["task_names"]) if config.get("task_names") else config["num_tasks"]


class SharedBottom(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        self.binary = is_binary(c, n_tasks(c))
        self.bottom_mlp = MLP(input_dim(layout, c), output_layer=False, dims=c["hidden_units"], dropout=c["dropout"],
                              activation=c["activation"])
        self.towers = nn.ModuleList(
            MLP(c["hidden_units"][-1], dims=c["task_hidden_units"], dropout=c["dropout"], activation=c["activation"])
            for _ in self.binary)

    def forward(self, sparse, dense):
        x = self.bottom_mlp(self.embedding(sparse, dense))
        return [torch.sigmoid(t(x)) if b else t(x) for t, b in zip(self.towers, self.binary)], {}


class ESMM(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        d = input_dim(layout, c)
        self.binary = [True, True]
        if c["hidden_units"]:
            self.bottom_mlp = MLP(d, output_layer=False, dims=c["hidden_units"], dropout=c["dropout"],
                                  activation=c["activation"])
            d = c["hidden_units"][-1]
        else:
            self.bottom_mlp = None
        self.tower_cvr = MLP(d, dims=c["tower_units"], dropout=c["dropout"], activation=c["activation"])
        self.tower_ctr = MLP(d, dims=c["tower_units"], dropout=c["dropout"], activation=c["activation"])

    def forward(self, sparse, dense):
        x = self.embedding(sparse, dense)
        if self.bottom_mlp is not None:
            x = self.bottom_mlp(x)
        cvr_pred = torch.sigmoid(self.tower_cvr(x))
        ctr_pred = torch.sigmoid(self.tower_ctr(x))
        return [ctr_pred, torch.mul(ctr_pred, cvr_pred)], {"cvr": cvr_pred}


class MMOE(nn.Module):
    def __init__(self, layout, c, one_gate=False):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        d = input_dim(layout, c)
        self.binary = is_binary(c, n_tasks(c))
        self.n_expert = c["num_experts"]
        self.experts = nn.ModuleList(
            MLP(d, output_layer=False, dims=c["expert_units"], dropout=c["dropout"], activation=c["expert_activation"])
            for _ in range(self.n_expert))
        self.one_gate = one_gate
        if one_gate:
            self.gate = nn.Linear(d, self.n_expert)
        else:
            self.gates = nn.ModuleList(nn.Linear(d, self.n_expert) for _ in self.binary)
        self.towers = nn.ModuleList(
            MLP(c["expert_units"][-1], dims=c["tower_units"], dropout=c["dropout"], activation=c["tower_activation"])
            for _ in self.binary)

    def forward(self, sparse, dense):
        embed_x = self.embedding(sparse, dense)
        expert_outs = torch.cat([e(embed_x).unsqueeze(1) for e in self.experts], dim=1)  # [B, E, h]
        gates = [self.gate] * len(self.binary) if self.one_gate else self.gates
        ys = []
        for gate, tower, b in zip(gates, self.towers, self.binary):
            gate_out = torch.softmax(gate(embed_x), dim=1).unsqueeze(-1)  # [B, E, 1]
            pooled = torch.sum(torch.mul(gate_out, expert_outs), dim=1)
            y = tower(pooled)
            ys.append(torch.sigmoid(y) if b else y)
        return ys, {}


class CGC(nn.Module):
    def __init__(self, cur_level, n_level, n_task, n_specific, n_shared, input_dims, c):
        super().__init__()
        self.cur_level, self.n_level, self.n_task = cur_level, n_level, n_task
        self.n_specific, self.n_shared = n_specific, n_shared
        self.n_expert_all = n_specific * n_task + n_shared
        d = input_dims if cur_level == 1 else c["expert_units"][-1]
        mk = lambda: MLP(d, output_layer=False, dims=c["expert_units"], dropout=c["dropout"],
                         activation=c["expert_activation"])
        self.experts_specific = nn.ModuleList(mk() for _ in range(n_task * n_specific))
        self.experts_shared = nn.ModuleList(mk() for _ in range(n_shared))
        self.gates_specific = nn.ModuleList(nn.Linear(d, n_specific + n_shared) for _ in range(n_task))
        if cur_level < n_level:
            self.gate_shared = nn.Linear(d, self.n_expert_all)

    def forward(self, x_list):
        spec = []
        for i in range(self.n_task):
            spec.extend(e(x_list[i]).unsqueeze(1)
                        for e in self.experts_specific[i * self.n_specific:(i + 1) * self.n_specific])
        shared = [e(x_list[-1]).unsqueeze(1) for e in self.experts_shared]
        outs = []
        for i, gate in enumerate(self.gates_specific):
            g = torch.softmax(gate(x_list[i]), dim=1).unsqueeze(-1)
            cur = torch.cat(spec[i * self.n_specific:(i + 1) * self.n_specific] + shared, dim=1)
            outs.append(torch.sum(torch.mul(g, cur), dim=1))
        if self.cur_level < self.n_level:
            g = torch.softmax(self.gate_shared(x_list[-1]), dim=1).unsqueeze(-1)
            outs.append(torch.sum(torch.mul(g, torch.cat(spec + shared, dim=1)), dim=1))
        return outs


class PLE(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        d = input_dim(layout, c)
        self.binary = is_binary(c, n_tasks(c))
        T = len(self.binary)
        self.n_level = c["num_layers"]
        self.cgc_layers = nn.ModuleList(
            CGC(i + 1, self.n_level, T, c["num_experts"], c["num_shared_experts"], d, c) for i in range(self.n_level))
        self.towers = nn.ModuleList(
            MLP(c["expert_units"][-1], dims=c["tower_units"], dropout=c["dropout"], activation=c["tower_activation"])
            for _ in range(T))

    def forward(self, sparse, dense):
        embed_x = self.embedding(sparse, dense)
        xs = [embed_x] * (len(self.binary) + 1)
        for cgc in self.cgc_layers:
            xs = cgc(xs)
        ys = []
        for x, tower, b in zip(xs, self.towers, self.binary):
            y = tower(x)
            ys.append(torch.sigmoid(y) if b else y)
        return ys, {}


class AttentionLayer(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.dim = dim
        self.q_layer = nn.Linear(dim, dim, bias=False)
        self.k_layer = nn.Linear(dim, dim, bias=False)
        self.v_layer = nn.Linear(dim, dim, bias=False)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        Q, K, V = self.q_layer(x), self.k_layer(x), self.v_layer(x)
        a = torch.sum(torch.mul(Q, K), -1) / math.sqrt(self.dim)
        a = self.softmax(a)
        return torch.sum(torch.mul(torch.unsqueeze(a, -1), V), dim=1)


class AITM(nn.Module):
    def __init__(self, layout, c):
        super().__init__()
        self.embedding = EmbeddingLayer(layout)
        d_in = input_dim(layout, c)
        self.n_task = n_tasks(c)
        self.binary = [True] * self.n_task
        d = c["hidden_units"][-1]
        self.bottoms = nn.ModuleList(
            MLP(d_in, output_layer=False, dims=c["hidden_units"], dropout=c["dropout"], activation=c["activation"])
            for _ in range(self.n_task))
        self.towers = nn.ModuleList(
            MLP(d, dims=c["tower_units"], dropout=c["dropout"], activation=c["activation"]) for _ in range(self.n_task))
        self.info_gates = nn.ModuleList(MLP(d, output_layer=False, dims=[d]) for _ in range(self.n_task - 1))
        self.aits = nn.ModuleList(AttentionLayer(d) for _ in range(self.n_task - 1))

    def forward(self, sparse, dense):
        embed_x = self.embedding(sparse, dense)
        towers_in = [self.bottoms[i](embed_x) for i in range(self.n_task)]
        for i in range(1, self.n_task):
            info = self.info_gates[i - 1](towers_in[i - 1]).unsqueeze(1)
            towers_in[i] = self.aits[i - 1](torch.cat([towers_in[i].unsqueeze(1), info], dim=1))
        return [torch.sigmoid(t(x)) for x, t in zip(towers_in, self.towers)], {}


def build(kind, layout, config):
    if kind == "shared_bottom":
        return SharedBottom(layout, config)
    if kind == "esmm":
        return ESMM(layout, config)
    if kind == "mmoe":
        return MMOE(layout, config)
    if kind == "omoe":
        return MMOE(layout, config, one_gate=True)
    if kind == "ple":
        return PLE(layout, config)
    if kind == "aitm":
        return AITM(layout, config)
    raise ValueError("unknown model kind " + kind)


def losses_of(kind, model, preds, labels, config):
    out = []
    for t, (p, b) in enumerate(zip(preds, model.binary)):
        y = labels[:, t:t + 1]
        out.append(nn.functional.binary_cross_entropy(p, y) if b else nn.functional.mse_loss(p, y))
    if kind == "aitm" and config.get("calibrator_weight", 0) > 0:
        for t in range(1, len(preds)):
            out[t] = out[t] + config["calibrator_weight"] * torch.sum(torch.clamp(preds[t] - preds[t - 1], min=0))
    return out


# ---- names: torch's <-> rechub's ----------------------------------------------------------------

def load_weights(model, layout, weights):
    """Copies rechub's tensors into the torch model (embedding arenas split per feature)."""
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if name.startswith("embedding.embed_dict."):
                feat = name.split(".")[2]
                f = next(f for f in layout["features"] if f["name"] == feat)
                arena = weights["embedding." + f["arena"]]
                p.copy_(arena[f["offset"]:f["offset"] + f["rows"]])
            else:
                if name not in weights:
                    raise KeyError("rechub weights lack '%s'" % name)
                p.copy_(weights[name].to(p.dtype))
    names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    extra = [n for n in weights if not n.startswith("embedding.") and n not in names]
    if extra:
        raise KeyError("rechub weights the torch model lacks: %s" % extra)


def gradients(model, layout):
    out = {}
    arenas = {}
    for a in layout["arenas"]:
        arenas[a["name"]] = torch.zeros(a["rows"], a["dim"])
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        if name.startswith("embedding.embed_dict."):
            feat = name.split(".")[2]
            f = next(f for f in layout["features"] if f["name"] == feat)
            arenas[f["arena"]][f["offset"]:f["offset"] + f["rows"]] = g
        else:
            out["grad." + name] = g
    for n, a in arenas.items():
        out["grad.embedding." + n] = a
    return out


def run_case(d):
    with open(d + "/case.json") as f:
        case = json.load(f)
    kind, config, layout = case["kind"], case["config"], case["layout"]
    torch.manual_seed(0)
    model = build(kind, layout, config)
    load_weights(model, layout, read_safetensors(d + "/weights.safetensors"))
    model.train(case["training"])
    inputs = read_safetensors(d + "/inputs.safetensors")
    preds, extras = model(inputs["sparse"].long(), inputs.get("dense"))
    losses = losses_of(kind, model, preds, inputs["labels"], config)
    sum(losses).backward()
    res = {}
    for t, p in enumerate(preds):
        res["pred.%d" % t] = p
        res["loss.%d" % t] = losses[t].reshape([])
    for k, v in extras.items():
        res[k] = v
    res.update(gradients(model, layout))
    for name, b in model.named_buffers():
        res["buffer." + name] = b
    write_safetensors(d + "/results.safetensors", res)


def main():
    torch.set_num_threads(1)
    for d in sys.argv[1:]:
        run_case(d)


if __name__ == "__main__":
    main()
