"""PyTorch reference steps of the task-balancing strategies, for tests/mtl/trainer_balance_test.cpp.

The problem: shared W [d], per task a_i [1] and constants c_i [d], y_i;
L_i = 0.5 * (c_i . W + a_i - y_i)^2. Each step: the strategy sets W.grad and a_i.grad, then
W -= sgd_lr * W.grad, a_i -= sgd_lr * a_i.grad. Output per step: W.grad, a.grad, the task weights.

GradNorm follows Chen et al. 2018 literally with autograd: G_i = ||d(w_i L_i)/dW|| built with
create_graph=True, the target detached, L_grad = sum |G_i - target_i| differentiated w.r.t. w only,
torch.optim.Adam on w, then w renormalised to sum to the task count.
MetaBalance follows He et al. (WWW 2022): moving averages of the gradient norms without bias
correction, and the paper's strategies: "all" adapts every auxiliary gradient, "reduce" only those
whose moving norm exceeds the main task's, "enlarge" only the smaller ones. The +1e-5 in the
denominator is torch-rechub's (its MetaBalance optimizer), not the paper's: the moving norms start
at 0, so in the first steps it keeps the ratio finite for a task that has sent no gradient yet, and
it is negligible once the norms have grown past ~1e-3. PCGrad is Yu et al.'s projection (2 tasks:
the order does not matter).

MGDA (Sener & Koltun, NeurIPS 2018): the min-norm point of the convex hull of the per-task
gradients of W, by the paper's Algorithm 1 (two vectors) and its Frank-Wolfe solver (Algorithm 2)
started from the best pair; as an independent check, the min norm is also found by scipy's SLSQP
and reported ("mgda_slsqp_sq_norm"). Task-specific parameters get their own unweighted gradient.
CAGrad (Liu et al., NeurIPS 2021), as LibMTL's and the authors' formulas: GG the Gram matrix,
g0_norm = sqrt(mean(GG) + 1e-8), c' = c*g0_norm + 1e-8, w = argmin over the simplex of
w^T GG b + c' sqrt(w^T GG w + 1e-8) (b uniform; solved here by SLSQP with a tight tolerance, an
independent solver from rechub's projected gradient), g = mean_i g_i + c'/(|g_w| + 1e-8) g_w,
rescaled by 1/(1+c^2) and multiplied by the task count (the authors' "to match the sum loss").
"""
import json
import sys

import numpy as np
import torch
from scipy.optimize import minimize

torch.set_default_dtype(torch.float64)


def min_norm_two(v11, v12, v22):
    """Sener & Koltun, Algorithm 1: the gamma minimising |gamma v1 + (1 - gamma) v2|^2."""
    if v12 >= v11:
        return 1.0
    if v12 >= v22:
        return 0.0
    return (v22 - v12) / (v11 + v22 - 2 * v12)


def min_norm_paper(M):
    """Min-norm weights from the Gram matrix M: the best pair (exact for two tasks), then the
    paper's Frank-Wolfe solver (Algorithm 2) with away steps (Lacoste-Julien & Jaggi 2015) and the
    exact line search, until the Frank-Wolfe gap is below 1e-12 of the largest diagonal entry."""
    n = M.shape[0]
    best, alpha = np.inf, np.zeros(n)
    for i in range(n):
        for j in range(i + 1, n):
            g = min_norm_two(M[i, i], M[i, j], M[j, j])
            cost = g * g * M[i, i] + 2 * g * (1 - g) * M[i, j] + (1 - g) ** 2 * M[j, j]
            if cost < best:
                best = cost
                alpha = np.zeros(n)
                alpha[i], alpha[j] = g, 1 - g
    if n == 2:
        return alpha
    scale = max(M[r, r] for r in range(n))
    if not scale > 0:
        return alpha
    for _ in range(10000):
        Ma = M @ alpha
        aMa = alpha @ Ma
        t = int(np.argmin(Ma))
        support = [r for r in range(n) if alpha[r] > 0]
        s = max(support, key=lambda r: (Ma[r], -r))
        gap_fw, gap_away = aMa - Ma[t], Ma[s] - aMa
        if gap_fw <= 1e-12 * scale:
            break
        away = gap_away > gap_fw and alpha[s] < 1.0
        e = np.zeros(n)
        if away:
            e[s] = 1.0
            d = alpha - e
            max_step = alpha[s] / (1.0 - alpha[s])
        else:
            e[t] = 1.0
            d = e - alpha
            max_step = 1.0
        aMd, dMd = alpha @ M @ d, d @ M @ d
        if not dMd > 0 or aMd >= 0:
            break
        step = min(max_step, -aMd / dMd)
        alpha = np.maximum(0.0, alpha + step * d)
        if away and step == max_step:
            alpha[s] = 0.0
    return alpha / alpha.sum()


def main(inp, out):
    cfg = json.load(open(inp))
    c = [torch.tensor(v) for v in cfg["c"]]
    y = cfg["y"]
    T = len(c)
    res = {}
    main = cfg.get("main", 0)
    extra = {}
    for strategy in cfg.get("strategies", ["gradnorm", "metabalance", "pcgrad", "fixed"]):
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
            elif strategy.startswith("metabalance"):
                which = strategy.split(":")[1] if ":" in strategy else "all"
                r_, beta = cfg["relax"], cfg["beta"]
                gW = torch.zeros_like(W)
                gs = [torch.autograd.grad(losses[j], W, retain_graph=True)[0] for j in range(T)]
                for j in range(T):
                    norms[j] = beta * norms[j] + (1 - beta) * gs[j].norm().item()
                for j in range(T):
                    g = gs[j]
                    adapt = which == "all" or (which == "reduce" and norms[j] > norms[main]) or (
                        which == "enlarge" and norms[j] < norms[main])
                    if j != main and adapt:
                        g = g * norms[main] / (norms[j] + 1e-5) * r_ + g * (1 - r_)
                    gW = gW + g
                ga = [torch.autograd.grad(losses[i], a[i], retain_graph=True)[0] for i in range(T)]
                weights = [1.0] * T
            elif strategy == "mgda":
                gs = torch.stack([torch.autograd.grad(losses[i], W, retain_graph=True)[0] for i in range(T)])
                M = (gs @ gs.T).numpy()
                alpha = min_norm_paper(M)
                gW = torch.tensor(alpha) @ gs
                ga = [torch.autograd.grad(losses[i], a[i], retain_graph=True)[0] for i in range(T)]
                weights = list(alpha)
                slsqp = minimize(lambda x: x @ M @ x, np.ones(T) / T, jac=lambda x: 2 * M @ x,
                                 bounds=[(0, 1)] * T, constraints=({"type": "eq", "fun": lambda x: 1 - x.sum()},),
                                 method="SLSQP", options={"ftol": 1e-16, "maxiter": 1000})
                extra = {"mgda_slsqp_sq_norm": float(slsqp.fun)}
            elif strategy == "cagrad":
                cc = cfg["cagrad_c"]
                gs = torch.stack([torch.autograd.grad(losses[i], W, retain_graph=True)[0] for i in range(T)])
                GG = (gs @ gs.T).numpy()
                g0_norm = np.sqrt(GG.mean() + 1e-8)
                cp = cc * g0_norm + 1e-8
                b = np.ones(T) / T

                def objfn(x):
                    return x @ GG @ b + cp * np.sqrt(x @ GG @ x + 1e-8)

                def jac(x):
                    return GG @ b + cp * (GG @ x) / np.sqrt(x @ GG @ x + 1e-8)

                sol = minimize(objfn, b.copy(), jac=jac, bounds=[(0, 1)] * T,
                               constraints=({"type": "eq", "fun": lambda x: 1 - x.sum()},), method="SLSQP",
                               options={"ftol": 1e-16, "maxiter": 1000})
                x = torch.tensor(sol.x)
                gw = x @ gs
                lmbda = cp / (gw.norm() + 1e-8)
                gW = T * (gs.mean(0) + lmbda * gw) / (1 + cc ** 2)
                ga = [torch.autograd.grad(losses[i], a[i], retain_graph=True)[0] for i in range(T)]
                weights = [float(T * (1.0 / T + lmbda * x[i]) / (1 + cc ** 2)) for i in range(T)]
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
            rec = {"gW": gW.tolist(), "ga": [g.item() for g in ga], "weights": weights}
            if strategy == "mgda":
                rec.update(extra)
            steps.append(rec)
            with torch.no_grad():
                W -= cfg["sgd_lr"] * gW
                for i in range(T):
                    a[i] -= cfg["sgd_lr"] * ga[i]
        res[strategy] = steps
    json.dump(res, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
