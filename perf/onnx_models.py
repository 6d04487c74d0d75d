#!/usr/bin/python3
"""The ONNX table of the README: torchvision's classifiers (full size, random weights) through the engine.

For each model and opset: export with torch.onnx.export (dynamic batch), save PyTorch's answers beside it (the format
of tests/Onnx/fixtures: x, out = softmax probabilities, logits, r, grad = d sum(r * logits)/dx in float32, agree = where
the float32 and float64 gradient signs agree), then run
  dotnet run --project perf -c Release -- onnx --onnx DIR --device cpu --batch B --json DIR/onnx.json
(load, probabilities vs PyTorch, gradient sign agreement, forward and input-gradient images/s), and
  perturb attack fgsm|pgd|deepfool --model M --data histology:size=S,train=16,test=16 --n B
and print the markdown table (also written to DIR/table.md).

Build first (dotnet build Engine.sln -c Release): the script runs the built cli and perf binaries (of --root).
usage: /usr/bin/python3 perf/onnx_models.py [--out DIR] [--size 64] [--opsets 11,13,17] [--models a,b,...] [--batch 4]
                                           [--variants dynamic,static,dynamic-nofold,static-nofold] [--no-attacks]
                                           [--root DIR]
--variants: dynamic or static batch (static: exported at batch B, the size the bench then runs), constant folding on
(default) or off (-nofold); the default is dynamic. Each variant is its own file NAME_opO[_static][_nofold].onnx.
The attack columns are `perturb attack`'s exit codes (0: ran end to end; otherwise the code and its stderr line).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torchvision.models as tvm

torch.set_num_threads(2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "vgg11_bn", "squeezenet1_1", "googlenet", "alexnet",
          "efficientnet_b0", "regnet_y_400mf", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "convnext_tiny"]


def make(name):
    kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    m = getattr(tvm, name)(weights=None, **kw)
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():   # non-trivial normalisation statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.data = 0.1 * torch.randn(mod.running_mean.shape, generator=g)
            mod.running_var.data = 0.5 + torch.rand(mod.running_var.shape, generator=g)
    return m.eval()


_MODELS, _REFS = {}, {}


def reference(name, m, n, size):
    """PyTorch's answers for a model at batch n: the same for every opset and variant, so computed once."""
    if (name, n) not in _REFS:
        g = torch.Generator().manual_seed(1)
        x = torch.rand((n, 3, size, size), generator=g)
        with torch.no_grad():
            z = m(x)
        r = torch.rand(z.shape, generator=g) * 2 - 1
        grads = []
        for dt in (torch.float32, torch.float64):
            mm = m.to(dt)
            xx = x.to(dt).clone().requires_grad_(True)
            (mm(xx) * r.to(dt)).sum().backward()
            grads.append(xx.grad.detach().numpy())
        m.to(torch.float32)
        agree = (np.sign(grads[0]) == np.sign(grads[1])) & (grads[1] != 0)
        _REFS[name, n] = dict(x=x.numpy(), out=torch.softmax(z, 1).numpy(), logits=z.numpy(), r=r.numpy(),
                              grad=grads[0].astype(np.float32), agree=agree.astype(np.uint8))
    return _REFS[name, n]


def export(name, opset, size, out, batch, variant):
    if name not in _MODELS:
        _MODELS[name] = make(name)
    m = _MODELS[name]
    static, fold = variant.startswith("static"), not variant.endswith("-nofold")
    ref = reference(name, m, batch if static else 2, size)
    x = torch.from_numpy(ref["x"])
    path = os.path.join(out, f"{name}_op{opset}{'_static' if static else ''}{'' if fold else '_nofold'}.onnx")
    torch.onnx.export(m, x, path, input_names=["input"], output_names=["output"], opset_version=opset,
                      dynamic_axes=None if static else {"input": {0: "N"}, "output": {0: "N"}}, do_constant_folding=fold)
    np.savez(path[:-5] + ".npz", **ref)
    return path


def attack(path, size, name, n, root):
    cli = os.path.join(root, "cli", "bin", "Release", "net10.0", "perturb")
    budget = [] if name == "deepfool" else ["--eps", "4/255"]   # DeepFool finds its own (minimal) perturbation
    res = subprocess.run([cli, "attack", name, "--model", path, "--data", f"histology:size={size},train=16,test=16", "--n", str(n),
                          "--device", "cpu"] + budget, capture_output=True, text=True)
    return "0" if res.returncode == 0 else f"{res.returncode}: " + (res.stderr.strip().splitlines() or ["?"])[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/perturb-onnx-models")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--opsets", default="11,13,17")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--variants", default="dynamic")
    ap.add_argument("--root", default=ROOT, help="the folder whose cli/bin and perf/bin (Release builds) run")
    ap.add_argument("--no-attacks", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name in a.models.split(","):
        for opset in [int(o) for o in a.opsets.split(",")]:
            for variant in a.variants.split(","):
                print(f"export {name} opset {opset} {variant}", file=sys.stderr)
                path = export(name, opset, a.size, a.out, a.batch, variant)
                # on --batch images (a static-batch model runs at the batch it was exported with)
                attacks = {} if a.no_attacks else {k: attack(path, a.size, k, a.batch, a.root) for k in ("fgsm", "pgd", "deepfool")}
                rows.append((name, opset, variant, path, attacks))
    js = os.path.join(a.out, "onnx.json")
    perf = os.path.join(a.root, "perf", "bin", "Release", "net10.0", "Perturb.Perf.dll")
    subprocess.run(["dotnet", perf, "onnx", "--onnx", a.out, "--device", "cpu", "--batch", str(a.batch), "--json", js], check=True)
    figs = {f["name"]: f for f in json.load(open(js))["figures"]}
    lines = ["| model | opset | batch, folding | loads | max prob diff | grad sign agreement | fwd img/s | fwd+grad img/s | FGSM | PGD | DeepFool |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, opset, variant, path, attacks in rows:
        stem = os.path.basename(path)[:-5]
        f = figs.get(f"{stem} forward B={a.batch}")
        b = figs.get(f"{stem} forward+input gradient B={a.batch}")
        d = (f or {}).get("detail", {})
        kind = ("static" if variant.startswith("static") else "dynamic") + (", not folded" if variant.endswith("-nofold") else ", folded")
        lines.append(f"| {name} | {opset} | {kind} | {'yes' if f else 'NO'} | {d.get('max_probability_diff', float('nan')):.2e} | "
                     f"{d.get('gradient_sign_agreement', float('nan')):.4f} | {f['value'] if f else 0:.1f} | {b['value'] if b else 0:.1f} | "
                     + " | ".join(attacks.get(k, "-") for k in ("fgsm", "pgd", "deepfool")) + " |")
    table = "\n".join(lines)
    open(os.path.join(a.out, "table.md"), "w").write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
