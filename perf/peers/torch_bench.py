#!/usr/bin/env python3
"""PyTorch peer of the Perturb perf harness (perf/Program.cs), for a machine with an NVIDIA GPU.

Measures the same figures as `dotnet run --project perf -c Release -- all --device cuda`:
  gemm   torch.mm float32 (TF32 off) at 256, 512, 1024 square (NN) and NT, TN at 512      GFLOP/s = 2mnk/t
  conv   conv2d forward, grad w.r.t. input, grad w.r.t. weights on ResNet-18 layer shapes  GFLOP/s = 2*N*K*OH*OW*C*R*S/t
  resnet ResNet-18 (MedMNIST 28x28 variant, 1 input channel, 2 classes) forward (eval), forward + input-gradient
         backward (eval), and a training forward + weight backward (train), at batch 128   images/s
Times are medians of CUDA-event timings after warm-up. TF32 is disabled, so every figure is true float32 arithmetic,
as in Perturb. The host CPU's float32 FMA peak is not measured here (it is a GPU run); the GPU's own float32 peak
can be passed with --peak-gflops (e.g. 66900 for an H100 SXM, 60000 nominal for H100 PCIe) to fill "% of peak".

Usage: python3 perf/peers/torch_bench.py [--json out.json] [--quick] [--batch 128] [--device cuda|cpu] [--peak-gflops G]
                                        [--bench gemm|conv|resnet|pgd|forward|all] [--threads N] [--tf32] [--steps N]
Output: a table on stdout and a JSON file in the layout of the C# harness (machine, device, date, peak_gflops, figures).
Needs only torch (no torchvision).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- timing

CLOCK = time.perf_counter


def measure(fn, device, warmup, reps):
    """Median and min seconds of fn() over `reps` timed calls after `warmup` untimed ones (CUDA events on a GPU;
    on the CPU the wall clock, or the process CPU clock with --clock cpu)."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(reps):
            t0 = CLOCK()
            fn()
            times.append(CLOCK() - t0)
    return statistics.median(times), min(times), len(times)


# ---------------------------------------------------------------- ResNet-18, MedMNIST 28x28 variant

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """3x3 stem with stride 1, no max pool, stages of 64-128-256-512 channels (two basic blocks each), GAP, linear.
    Inputs in [0,1] are normalised inside the model with mean = std = 0.5, as Perturb's preset does."""

    def __init__(self, in_ch=1, classes=2):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, w in enumerate((64, 128, 256, 512)):
            for b in range(2):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and b == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = (x - 0.5) / 0.5
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet_flops(batch):
    """Convolution and linear flops of one forward at this batch (2 per multiply-add), as Perturb's op counters."""
    total, h = 0, 28
    total += 2 * batch * 64 * h * h * 1 * 9
    cin = 64
    for i, w in enumerate((64, 128, 256, 512)):
        for b in range(2):
            stride = 2 if (i > 0 and b == 0) else 1
            oh = (h + 2 - 3) // stride + 1
            total += 2 * batch * w * oh * oh * cin * 9 + 2 * batch * w * oh * oh * w * 9
            if stride != 1 or cin != w:
                total += 2 * batch * w * oh * oh * cin
            h, cin = oh, w
    return total + 2 * batch * 512 * 2


# ---------------------------------------------------------------- shapes (same as perf/Benches.cs)

def conv_shapes(n):
    # name, (N, C, H, W, K, R, S, stride, pad)
    return [
        ("conv3x3 64->64 28x28", (n, 64, 28, 28, 64, 3, 3, 1, 1)),
        ("conv3x3 64->128 28x28 s2", (n, 64, 28, 28, 128, 3, 3, 2, 1)),
        ("conv3x3 128->128 14x14", (n, 128, 14, 14, 128, 3, 3, 1, 1)),
        ("conv3x3 256->256 7x7", (n, 256, 7, 7, 256, 3, 3, 1, 1)),
        ("conv3x3 512->512 4x4", (n, 512, 4, 4, 512, 3, 3, 1, 1)),
        ("conv1x1 64->128 28x28 s2", (n, 64, 28, 28, 128, 1, 1, 2, 0)),
        ("conv3x3 128->256 14x14 s2", (n, 128, 14, 14, 256, 3, 3, 2, 1)),
        ("conv3x3 256->512 7x7 s2", (n, 256, 7, 7, 512, 3, 3, 2, 1)),
        ("conv1x1 128->256 14x14 s2", (n, 128, 14, 14, 256, 1, 1, 2, 0)),
        ("conv1x1 256->512 7x7 s2", (n, 256, 7, 7, 512, 1, 1, 2, 0)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    ap.add_argument("--batch", type=int, default=128, help="ResNet batch (default 128)")
    ap.add_argument("--conv-batch", type=int, default=64, help="batch of the convolution shapes (default 64)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-gflops", type=float, default=None, help="the device's float32 peak, for %% of peak")
    ap.add_argument("--bench", default="all", choices=["gemm", "conv", "resnet", "pgd", "forward", "all"], help="which figures (default all: gemm, conv, resnet; pgd: PGD-20 only; forward: the resnet18 forward only)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU; default: torch's own)")
    ap.add_argument("--steps", type=int, default=20, help="PGD steps of the pgd bench (default 20)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 on the GPU (default off: true float32)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"], help="CPU device: wall clock or process CPU time")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device(args.device)
    warmup, reps = (2, 5) if args.quick else (10, 30)
    figures = []
    peak = args.peak_gflops

    def add(group, name, value, unit, gflops, detail):
        ratio = gflops / peak if (peak and gflops is not None) else None
        figures.append(dict(group=group, name=name, value=value, unit=unit, gflops=gflops,
                            ratio_to_peak=ratio, detail=detail))
        pct = f"{100 * ratio:.1f} %" if ratio is not None else ""
        print(f"  {group:<7} {name:<44} {value:>10.2f} {unit:<9} {pct}", file=sys.stderr, flush=True)

    torch.manual_seed(0)
    want = (lambda b: args.bench in (b, "all"))
    print(f"[{time.strftime('%H:%M:%S')}] gemm ...", file=sys.stderr)
    for n, ta, tb in [] if not want("gemm") else [(256, False, False), (512, False, False), (1024, False, False), (512, False, True), (512, True, False)]:
        a = torch.rand(n, n, device=dev)
        b = torch.rand(n, n, device=dev)
        opa, opb = (a.t() if ta else a), (b.t() if tb else b)
        c = torch.empty(n, n, device=dev)
        med, mn, r = measure(lambda: torch.mm(opa, opb, out=c), dev, warmup, reps)
        flops = 2 * n ** 3
        op = ("T" if ta else "N") + ("T" if tb else "N")
        add("gemm", f"gemm {op} {n}x{n}x{n}", flops / med / 1e9, "GFLOP/s", flops / med / 1e9,
            dict(median_s=med, min_s=mn, reps=r, flops=flops, m=n, n=n, k=n, op=op))

    print(f"[{time.strftime('%H:%M:%S')}] conv (batch {args.conv_batch}) ...", file=sys.stderr)
    for name, (N, C, H, W, K, R, S, st, pd) in conv_shapes(args.conv_batch) if want("conv") else []:
        x = torch.rand(N, C, H, W, device=dev)
        w = torch.rand(K, C, R, S, device=dev)
        y = F.conv2d(x, w, stride=st, padding=pd)
        dy = torch.rand_like(y)
        oh, ow = y.shape[2], y.shape[3]
        flops = 2 * N * K * oh * ow * C * R * S
        ops = [
            ("fwd", lambda: F.conv2d(x, w, stride=st, padding=pd)),
            ("bwd-data", lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, stride=st, padding=pd)),
            ("bwd-weights", lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=st, padding=pd)),
        ]
        for op, fn in ops:
            med, mn, r = measure(fn, dev, warmup, reps)
            add("conv", f"{name} {op} N={N}", flops / med / 1e9, "GFLOP/s", flops / med / 1e9,
                dict(median_s=med, min_s=mn, reps=r, flops=flops, op=op,
                     shape=f"N={N} C={C} H={H} W={W} K={K} R={R} S={S} stride={st} pad={pd}"))

    B = args.batch
    print(f"[{time.strftime('%H:%M:%S')}] resnet18 1x28x28 (batch {B}) ...", file=sys.stderr)
    model = ResNet18().to(dev)
    x = torch.rand(B, 1, 28, 28, device=dev)
    labels = torch.arange(B, device=dev) % 2
    fwd_flops = resnet_flops(B)
    rreps = max(3, reps // 2)

    def forward():
        with torch.no_grad():
            model(x)

    def input_grad():
        xa = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xa), labels)
        (g,) = torch.autograd.grad(loss, xa)  # input gradient only: no weight gradients are formed
        return g

    def train_step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()

    cases = [
        ("resnet18 forward (eval)", "eval", forward, fwd_flops, "forward only, eval mode"),
        ("resnet18 input gradient (eval)", "eval", input_grad, 2 * fwd_flops,
         "forward + cross-entropy + autograd.grad w.r.t. the input only"),
        ("resnet18 training step (train)", "train", train_step, 3 * fwd_flops,
         "train mode: forward + cross-entropy + backward (weights); no optimiser update"),
    ]
    for name, mode, fn, flops, what in cases if want("resnet") else (cases[:1] if args.bench == "forward" else []):
        model.train(mode == "train")
        for p in model.parameters():  # eval figures form no weight gradients at all, as BackwardMode.InputOnly
            p.requires_grad_(mode == "train")
        med, mn, r = measure(fn, dev, warmup, rreps)
        add("resnet", f"{name} B={B}", B / med, "images/s", flops / med / 1e9,
            dict(median_s=med, min_s=mn, reps=r, flops=flops, batch=B, what=what, ms_per_batch=med * 1e3,
                 flops_note="conv + linear flops: forward 1x, input gradient 2x, training 3x the forward"))

    if args.bench == "pgd":
        # PGD-20, L-inf, eps 8/255, step 2/255, random start, no early stop: the loop of torchattacks' PGD.forward
        # (torchattacks/attacks/pgd.py), on the same ResNet-18 in eval mode, images and labels as perf's attack bench.
        model = ResNet18().to(dev).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        x = torch.rand(B, 1, 28, 28, device=dev)
        y = torch.arange(B, device=dev) % 2
        eps, alpha, steps = 8 / 255, 2 / 255, args.steps

        def pgd():
            adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1).detach()
            for _ in range(steps):
                adv.requires_grad_(True)
                loss = F.cross_entropy(model(adv), y)
                (g,) = torch.autograd.grad(loss, adv)
                adv = adv.detach() + alpha * g.sign()
                adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
            return adv

        pgd()  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = CLOCK()
        pgd()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        secs = CLOCK() - t0
        add("attack", f"pgd-{steps} linf resnet18 B={B}", B / secs, "images/s", None,
            dict(batch=B, steps=steps, seconds=secs, what="PyTorch PGD loop as torchattacks' PGD (random start, sign step, projection, clamp)"))

    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    cpu_model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    result = dict(
        harness="torch_bench.py",
        bench=args.bench, threads=torch.get_num_threads(), tf32=args.tf32, clock=args.clock,
        quick=args.quick,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        machine=dict(cpu_model=cpu_model, logical_cores=os.cpu_count(), simd=None, simd_lanes_f32=None,
                     os=platform.platform(), runtime=f"python {platform.python_version()}, torch {torch.__version__}, "
                     f"cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}"),
        device=dict(kind=dev.type, name=dev_name),
        peak_gflops=peak,
        peak_note="given with --peak-gflops (device float32 peak); not measured" if peak else "not given",
        figures=figures,
    )

    print()
    print(f"torch peer: device {dev.type} ({dev_name}), torch {torch.__version__}, {torch.get_num_threads()} threads, TF32 {'on' if args.tf32 else 'off'}")
    print(f"{'group':<7} {'figure':<46} {'value':>12} {'unit':<10} {'% of peak':>10} {'GFLOP/s':>12}")
    print("-" * 102)
    for f in figures:
        pct = f"{100 * f['ratio_to_peak']:.1f} %" if f["ratio_to_peak"] is not None else ""
        g = f"{f['gflops']:.2f}" if f["gflops"] is not None else ""
        print(f"{f['group']:<7} {f['name']:<46} {f['value']:>12.2f} {f['unit']:<10} {pct:>10} {g:>12}")
    if args.json:
        path = os.path.abspath(args.json)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
