#!/usr/bin/env python3
"""Peer run of Perturb's robustness evaluation: the same network (built in PyTorch from Perturb's .safetensors file),
the same images (originals.npy / labels.npy from `perturb attack ... --out DIR`), torchattacks run from its source tree.

For each attack and epsilon: robust accuracy (the model's fresh prediction on the returned images equals the label,
over all N images), seconds (wall clock) and cpu_seconds (this process's CPU time, all threads: the figure to
compare on a shared machine). fgsm64 is FGSM with the network and images in float64: the reference for FGSM's
vanishing float32 gradient on confident models (it too vanishes once 1 - p_t < 1e-16); fgsm-lse and fgsm64-lse take
the gradient of the cross-entropy written from the log-sum-exp at the target (as Perturb computes it), in float32 and
float64. cw (torchattacks: c 1, 100 Adam steps, lr 0.01, no binary search) and foolbox-cw (Foolbox 3's
L2CarliniWagnerAttack at Carlini's setting, Perturb's cw with --first-c fixed --binary-steps 9 --steps 100: 9
binary-search rounds of 100 Adam steps, lr 0.01, initial c 0.01; needs
--foolbox and --eagerpy) report the median L2 of the successful adversarials among the images classified correctly
before (success checked here, independently). perturb-cw checks Perturb's own C&W answers the same way
(adversarial_noeps.npy in --inputs, from `perturb attack cw --out DIR`; its time is Perturb's, not measured here).

Usage: python3 perf/peers/robust_peers.py --model M.safetensors --inputs DIR --torchattacks REPO
           [--eps 0.2,0.3] [--norm Linf|L2] [--attacks fgsm,fgsm64,fgsm-lse,fgsm64-lse,pgd,apgd,autoattack,cw,foolbox-cw] [--json out.json]
           [--foolbox REPO --eagerpy REPO] [--steps N] [--alpha A] [--threads T]
Runs on Debian's python3-torch 1.13 with 2 threads (--threads: as many as the Perturb run being compared).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perturb_model import import_foolbox, import_torchattacks, load_inputs, load_model  # noqa: E402


def frac(s):
    a, _, b = s.partition("/")
    return float(a) / (float(b) if b else 1.0)


def predict(model, x, bs=500):
    with torch.no_grad():
        return torch.cat([model(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])


def lse_cross_entropy(z, y):
    """Cross-entropy as log1p(sum_{j != y} exp(z_j - z_y)): autograd then gives -sum_{j != y} p_j at the label,
    which does not vanish when p_y rounds to 1 (PyTorch's own cross_entropy gives p_y - 1)."""
    d = z - z.gather(1, y[:, None])
    d = d.scatter(1, y[:, None], float("-inf"))
    return torch.log1p(torch.exp(d).sum(1)).sum()


def fgsm(model, x, y, eps, lse=False):
    """One signed-gradient step on the summed cross-entropy, clamped to [0,1] (torchattacks' FGSM, any dtype)."""
    x = x.clone().requires_grad_(True)
    z = model(x)
    loss = lse_cross_entropy(z, y) if lse else torch.nn.functional.cross_entropy(z, y, reduction="sum")
    g, = torch.autograd.grad(loss, x)
    return (x + eps * g.sign()).clamp(0, 1).detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--torchattacks", required=True, help="the source tree of Harry24k/adversarial-attacks-pytorch")
    ap.add_argument("--foolbox", help="the source tree of bethgelab/foolbox (for foolbox-cw)")
    ap.add_argument("--eagerpy", help="the source tree of jonasrauber/eagerpy (for foolbox-cw)")
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--norm", default="Linf", choices=["Linf", "L2"])
    ap.add_argument("--attacks", default="fgsm,fgsm64,pgd,apgd,autoattack")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--alpha", help="PGD step size (fractions allowed, e.g. 2/255; default 2.5 * eps / steps)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ta = import_torchattacks(a.torchattacks)
    model, arch = load_model(a.model)
    x, y = load_inputs(a.inputs)
    classes = model(x[:1]).shape[1]
    clean = (predict(model, x) == y).float().mean().item()
    print(f"model {a.model}: {classes} classes, {len(x)} images, clean accuracy {clean:.4f}")
    rows = []
    for name in a.attacks.split(","):
        for eps in ([None] if name.endswith("cw") else [frac(e) for e in a.eps.split(",")]):
            t0, c0 = time.perf_counter(), time.process_time()
            err = None
            try:
                if name in ("fgsm64", "fgsm-lse", "fgsm64-lse"):
                    m = load_model(a.model)[0]
                    dt = torch.float64 if name.startswith("fgsm64") else torch.float32
                    m = m.to(dt)
                    adv = torch.cat([fgsm(m, x[i:i + a.batch].to(dt), y[i:i + a.batch], eps, lse=name.endswith("lse")) for i in range(0, len(x), a.batch)])
                    pred = predict(m, adv)
                elif name == "perturb-cw":
                    import numpy as np
                    adv = torch.from_numpy(np.load(f"{a.inputs}/adversarial_noeps.npy").astype(np.float32)).reshape(x.shape)
                    pred = predict(model, adv)
                elif name == "foolbox-cw":
                    fb = import_foolbox(a.foolbox, a.eagerpy)
                    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
                    atk = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=9, steps=100, stepsize=0.01, initial_const=0.01)
                    adv = torch.cat([atk(fmodel, x[i:i + a.batch], y[i:i + a.batch], epsilons=None)[1] for i in range(0, len(x), a.batch)])
                    pred = predict(model, adv)
                else:
                    if name == "fgsm":
                        atk = ta.FGSM(model, eps=eps)
                    elif name == "pgd":
                        atk = ta.PGD(model, eps=eps, alpha=frac(a.alpha) if a.alpha else 2.5 * eps / a.steps, steps=a.steps, random_start=True)
                    elif name == "apgd":
                        atk = ta.APGD(model, norm=a.norm, eps=eps, steps=a.steps, n_restarts=1, loss="ce", seed=0)
                    elif name == "autoattack":
                        atk = ta.AutoAttack(model, norm=a.norm, eps=eps, version="standard", n_classes=classes, seed=0)
                    elif name == "cw":
                        atk = ta.CW(model, c=1, kappa=0, steps=100, lr=0.01)
                    else:
                        raise ValueError(f"unknown attack {name}")
                    adv = torch.cat([atk(x[i:i + a.batch], y[i:i + a.batch]) for i in range(0, len(x), a.batch)])
                    pred = predict(model, adv)
            except Exception as e:  # a peer that cannot run on this model is a finding, not a crash of the comparison
                err = f"{type(e).__name__}: {e}"
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            row = {"attack": name, "eps": eps, "seconds": sec, "cpu_seconds": cpu, "n": len(x), "clean_accuracy": clean}
            if err:
                row["error"] = err
                print(f"{name:10} eps {eps}: failed: {err}")
            else:
                row["robust_accuracy"] = (pred == y).float().mean().item()
                if name.endswith("cw"):
                    ok = (predict(model, x) == y) & (pred != y)
                    l2 = (adv - x).flatten(1).norm(dim=1)[ok]
                    row["success_rate"] = ok.float().sum().item() / max(1, (predict(model, x) == y).sum().item())
                    row["median_l2"] = l2.median().item() if len(l2) else None
                print(f"{name:10} eps {eps}: robust accuracy {row['robust_accuracy']:.4f}"
                      + (f", success {row['success_rate']:.3f}, median L2 {row['median_l2']:.4f}" if name.endswith("cw") else "")
                      + f" ({sec:.1f} s)")
            rows.append(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "norm": a.norm, "torch": torch.__version__, "threads": a.threads, "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
