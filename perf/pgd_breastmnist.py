#!/usr/bin/env python3
"""PGD-20 (L-inf, eps 8/255, step 2/255, random start, no early stop) on a ResNet-18 trained on BreastMNIST, its 156
test images: Perturb (`perturb attack pgd`) against the real torchattacks PGD on the same weights (rebuilt in PyTorch
from the .safetensors file by peers/perturb_model.py), the same images (originals.npy / labels.npy that Perturb's
--out writes) and the same thread count. Both sides: attack seconds (wall), the process's CPU seconds, robust
accuracy.

Usage: python3 perf/pgd_breastmnist.py [--out DIR] [--threads N] [--epochs E] [--perturb CMD] [--torchattacks REPO]
           [--data FILE] [--steps N] [--repeats R]
  --out           results and the trained model (default /tmp/perturb-pgd-breastmnist); the model is trained there
                  first if DIR/breastmnist-resnet18.safetensors is absent (--recipe medmnist, --epochs, seed 0)
  --threads       Perturb's CpuBackend threads (DOTNET_PROCESSOR_COUNT) and torch.set_num_threads (default 2)
  --perturb       the CLI (default: cli/bin/Release/net10.0/perturb, built first when absent)
  --torchattacks  the source tree of Harry24k/adversarial-attacks-pytorch (default $TORCHATTACKS or /tmp/ta)
  --repeats       runs of each side; the fastest is reported, every run is kept in the JSON (default 1)
Writes DIR/pgd_breastmnist.json and DIR/pgd_breastmnist.md. Perturb's CPU seconds are the whole process's (start-up,
model and data loading included, about a second); torchattacks' are the attack's alone.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def run(cmd, env=None):
    """Runs cmd; returns (wall seconds, child CPU seconds) and raises with the output's tail on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"error: pgd_breastmnist.py: {' '.join(cmd)} failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/perturb-pgd-breastmnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--perturb", default=os.path.join(root, "cli/bin/Release/net10.0/perturb"))
    ap.add_argument("--torchattacks", default=os.environ.get("TORCHATTACKS", "/tmp/ta"))
    ap.add_argument("--data", default=os.path.join(os.path.dirname(root), "shared/data/medmnist/breastmnist.npz"))
    a = ap.parse_args()
    if not os.path.isfile(a.data):
        sys.exit(f"error: pgd_breastmnist.py: --data {a.data} does not exist (BreastMNIST .npz; see /work/shared/data/README)")
    if not os.path.isfile(os.path.join(a.torchattacks, "torchattacks", "attacks", "pgd.py")):
        sys.exit(f"error: pgd_breastmnist.py: --torchattacks {a.torchattacks} is not a source tree of Harry24k/adversarial-attacks-pytorch")
    if not os.path.exists(a.perturb):
        subprocess.run(["dotnet", "build", os.path.join(root, "cli"), "-c", "Release", "-v", "q", "-nologo"], check=True)
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, DOTNET_PROCESSOR_COUNT=str(a.threads))
    model = os.path.join(a.out, "breastmnist-resnet18.safetensors")
    train = None
    if not os.path.exists(model):
        print(f"training resnet18 on {a.data} ({a.epochs} epochs) ...", file=sys.stderr, flush=True)
        wall, cpu, _ = run([a.perturb, "train", "--data", a.data, "--arch", "resnet18", "--recipe", "medmnist", "--epochs", str(a.epochs),
                            "--seed", "0", "--device", "cpu", "--out", model, "--json", os.path.join(a.out, "train.json")], env)
        train = dict(seconds=wall, cpu_seconds=cpu, epochs=a.epochs)

    eps, alpha = "8/255", "2/255"
    inputs = os.path.join(a.out, "inputs")
    ours = []
    for r in range(a.repeats):
        js = os.path.join(a.out, f"perturb-pgd-{r}.json")
        print(f"perturb attack pgd (run {r + 1}) ...", file=sys.stderr, flush=True)
        wall, cpu, _ = run([a.perturb, "attack", "pgd", "--model", model, "--data", a.data, "--split", "test", "--n", "0",
                            "--eps", eps, "--steps", str(a.steps), "--step-size", alpha, "--random-start", "true", "--early-stop", "false",
                            "--seed", "0", "--device", "cpu", "--json", js, "--out", inputs, "--overwrite"], env)
        row = json.load(open(js))["results"][0]
        ours.append(dict(attack_seconds=row["seconds"], process_seconds=wall, process_cpu_seconds=cpu,
                         robust_accuracy=row["robust_accuracy"], clean_accuracy=row["clean_accuracy"], n=row.get("n")))
    theirs = []
    for r in range(a.repeats):
        js = os.path.join(a.out, f"torchattacks-pgd-{r}.json")
        print(f"torchattacks PGD (run {r + 1}) ...", file=sys.stderr, flush=True)
        run([sys.executable, os.path.join(here, "peers", "robust_peers.py"), "--model", model, "--inputs", inputs,
             "--torchattacks", a.torchattacks, "--attacks", "pgd", "--eps", eps, "--steps", str(a.steps), "--alpha", alpha,
             "--threads", str(a.threads), "--json", js])
        row = json.load(open(js))["results"][0]
        if "error" in row:
            sys.exit(f"error: pgd_breastmnist.py: torchattacks PGD failed: {row['error']}")
        theirs.append(dict(attack_seconds=row["seconds"], attack_cpu_seconds=row["cpu_seconds"],
                           robust_accuracy=row["robust_accuracy"], clean_accuracy=row["clean_accuracy"], n=row["n"]))
    best_o = min(ours, key=lambda x: x["attack_seconds"])
    best_t = min(theirs, key=lambda x: x["attack_seconds"])
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    res = dict(figure=f"PGD-{a.steps} Linf eps {eps} step {alpha} on resnet18, BreastMNIST test", model=model, threads=a.threads,
               train=train, perturb=ours, torchattacks=theirs, loadavg_end=load,
               ratio_wall=best_t["attack_seconds"] / best_o["attack_seconds"],
               ratio_cpu=best_t["attack_cpu_seconds"] / best_o["process_cpu_seconds"],
               note="ratio = torchattacks seconds / Perturb seconds (> 1: Perturb is faster); ratio_cpu compares Perturb's whole-process CPU seconds with torchattacks' attack CPU seconds")
    out_json = os.path.join(a.out, "pgd_breastmnist.json")
    json.dump(res, open(out_json + ".tmp", "w"), indent=2)
    os.replace(out_json + ".tmp", out_json)
    n = best_o["n"] or best_t["n"]
    md = [f"PGD-{a.steps} (L-inf, eps {eps}, step {alpha}, random start, no early stop) on resnet18 / BreastMNIST, {n} test images, "
          f"{a.threads} threads; load average at the end {' '.join(load or [])}", "",
          "| side | attack s (wall) | CPU s | clean acc | robust acc |", "|---|---|---|---|---|",
          f"| Perturb | {best_o['attack_seconds']:.2f} | {best_o['process_cpu_seconds']:.2f} (process) | {best_o['clean_accuracy']:.4f} | {best_o['robust_accuracy']:.4f} |",
          f"| torchattacks PGD | {best_t['attack_seconds']:.2f} | {best_t['attack_cpu_seconds']:.2f} (attack) | {best_t['clean_accuracy']:.4f} | {best_t['robust_accuracy']:.4f} |",
          "", f"speed ratio torchattacks / Perturb: {res['ratio_wall']:.2f} (wall), {res['ratio_cpu']:.2f} (CPU seconds)"]
    open(os.path.join(a.out, "pgd_breastmnist.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
