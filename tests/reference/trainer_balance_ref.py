"""PyTorch reference steps of the task-balancing strategies, for tests/mtl/trainer_balance_test.cpp.

The problem: shared W [d], per task a_i [1] and constants c_i [d], y_i;
L_i = 0.5 * (c_i . W + a_i - y_i)^2. Each step: the strategy sets W.grad and a_i.grad, then
W -= sgd_lr * W.grad, a_i -= sgd_lr * a_i.grad. Output per step: W.grad, a.grad, the task weights.

GradNorm follows Chen et al. 2018 literally with autograd: G_i = ||d(w_i L_i)/dW|| built with
create_graph=True, the target detached, L_grad = sum |G_i - target_i| differentiated w.r.t. w only,
torch.optim.Adam on w, then w renormalised to sum to the task count.
MetaBalance follows the authors' code (moving averages of gradient norms, +1e-5), PCGrad Yu et
al.'s projection (2 tasks: the order does not matter).
"""
import json
import sys

import torch

torch.set_default_dtype(torch.float64)


def main(inp, out):
    cfg = json.load(open(inp))
    c = [torch.tensor(v) for v in cfg["c"]]
    y = cfg["y"]
    T = len(c)
    res = {}
    for strategy in ["gradnorm", "metabalance", "pcgrad", "fixed"]:
        W = torch.tensor(cfg["W"], requires_grad=True)
        a = [torch.tensor([v], requires_grad=True) for v in cfg["a"]]
        w = torch.ones(T, requires_grad=True)
        opt_w = torch.optim.Adam([w], lr=cfg["gradnorm_lr"])
        L0 = None
        norms = [0.0] * T
        steps = []
        for step in range(cfg["steps"]):
            losses = [0.5 * (c[i] @ W + a[i][0] - y[i]) ** 2 for i in range(T)]
            if strategy == "fixed":
                fw = cfg["fixed_weights"]
                total = sum(fw[i] * losses[i] for i in range(T))
                gW, *ga = torch.autograd.grad(total, [W] + a)
                weights = list(fw)
            elif strategy == "gradnorm":
                if L0 is None:
                    L0 = [l.item() for l in losses]
                G = torch.stack([torch.autograd.grad(w[i] * losses[i], W, retain_graph=True, create_graph=True)[0].norm()
                                 for i in range(T)])
                Lhat = torch.tensor([losses[i].item() / L0[i] for i in range(T)])
                r = Lhat / Lhat.mean()
                target = (G.mean() * r ** cfg["alpha"]).detach()
                lgrad = (G - target).abs().sum()
                wgrad = torch.autograd.grad(lgrad, w, retain_graph=True)[0]
                total = sum(w[i].detach() * losses[i] for i in range(T))
                gW, *ga = torch.autograd.grad(total, [W] + a)
                w.grad = wgrad
                opt_w.step()
                with torch.no_grad():
                    w.clamp_(min=1e-6)
                    w.mul_(T / w.sum())
                weights = w.tolist()
            elif strategy == "metabalance":
                r_, beta = cfg["relax"], cfg["beta"]
                gW = torch.zeros_like(W)
                for j in range(T):
                    g = torch.autograd.grad(losses[j], W, retain_graph=True)[0]
                    norms[j] = beta * norms[j] + (1 - beta) * g.norm().item()
                    if j > 0:
                        g = g * norms[0] / (norms[j] + 1e-5) * r_ + g * (1 - r_)
                    gW = gW + g
                ga = [torch.autograd.grad(losses[i], a[i], retain_graph=True)[0] for i in range(T)]
                weights = [1.0] * T
            else:  # pcgrad
                gs = [torch.autograd.grad(losses[i], W, retain_graph=True)[0] for i in range(T)]
                proj = []
                for i in range(T):
                    gi = gs[i].clone()
                    for j in range(T):
                        if j == i:
                            continue
                        d = gi @ gs[j]
                        if d < 0:
                            gi = gi - d / (gs[j] @ gs[j]) * gs[j]
                    proj.append(gi)
                gW = sum(proj)
                ga = [torch.autograd.grad(losses[i], a[i], retain_graph=True)[0] for i in range(T)]
                weights = [1.0] * T
            steps.append({"gW": gW.tolist(), "ga": [g.item() for g in ga], "weights": weights})
            with torch.no_grad():
                W -= cfg["sgd_lr"] * gW
                for i in range(T):
                    a[i] -= cfg["sgd_lr"] * ga[i]
        res[strategy] = steps
    json.dump(res, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
