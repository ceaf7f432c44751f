"""PyTorch reference of the per-task losses with missing labels, for tests/mtl/missing_labels_test.cpp.

Input JSON: a list of cases {"kind": "logits" | "regression" | "probs", "x": [...], "y": [... or null],
"pos_weight": w}. A null label is a missing one. The loss is the mean over the labelled rows only,
computed by selecting those rows (x[m], y[m]) rather than by multiplying with a mask, and a case
without any labelled row has loss 0 and a zero gradient:
  logits      binary_cross_entropy_with_logits(x[m], y[m], pos_weight=w)   (rechub's binary tasks)
  regression  mse_loss(x[m], y[m])                                         (regression tasks)
  probs       mean(-(w y log p + (1 - y) log(1 - p))) with log clamped at -100 (ESMM's losses on
              probabilities, as torch's binary_cross_entropy clamps)
Output: per case {"loss": float, "grad": [d loss / d x]}.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def main(inp, out):
    res = []
    for case in json.load(open(inp)):
        x = torch.tensor(case["x"], requires_grad=True)
        m = torch.tensor([v is not None for v in case["y"]])
        y = torch.tensor([0.0 if v is None else v for v in case["y"]])
        w = case["pos_weight"]
        if not m.any():
            loss = (x * 0).sum()
        elif case["kind"] == "logits":
            loss = F.binary_cross_entropy_with_logits(x[m], y[m], pos_weight=torch.tensor(w))
        elif case["kind"] == "regression":
            loss = F.mse_loss(x[m], y[m])
        else:
            p, t = x[m], y[m]
            lp, lq = torch.clamp(torch.log(p), min=-100), torch.clamp(torch.log(1 - p), min=-100)
            loss = (-(w * t * lp + (1 - t) * lq)).mean()
        (g,) = torch.autograd.grad(loss, x)
        res.append({"loss": loss.item(), "grad": g.tolist()})
    json.dump(res, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
