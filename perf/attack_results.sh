#!/usr/bin/env bash
# Issue 4's figures: robust accuracy of the PneumoniaMNIST model under FGSM and PGD-20 (L-inf) at
# eps 0.5/255 .. 8/255, DeepFool and C&W median L2, and PGD-20 throughput on resnet18 against the engine's own
# forward + input-only backward. Usage: perf/attack_results.sh [OUTDIR]   (needs ../shared/data/medmnist)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/perturb-attacks}
data=../shared/data/medmnist/pneumoniamnist.npz
if [[ ! -f $data ]]; then echo "skipped: $data is absent" >&2; exit 0; fi
mkdir -p "$out"
dotnet build cli -c Release -v q -nologo >/dev/null
perturb=cli/bin/Release/net10.0/perturb
model=$out/pneumoniamnist-cnn-small.safetensors
if [[ ! -f $model ]]; then
  $perturb train --data "$data" --arch cnn-small --recipe medmnist --epochs 20 --seed 0 --out "$model" --json "$out/train.json"
fi
eps=0.5/255,1/255,2/255,4/255,8/255
$perturb attack fgsm --model "$model" --data "$data" --n 0 --eps $eps --json "$out/fgsm.json" --out "$out/fgsm"
$perturb attack pgd --model "$model" --data "$data" --n 0 --eps $eps --steps 20 --seed 0 --json "$out/pgd20.json" --out "$out/pgd20"
$perturb attack deepfool --model "$model" --data "$data" --n 200 --json "$out/deepfool.json"
$perturb attack cw --model "$model" --data "$data" --n 200 --seed 0 --first-c fixed --binary-steps 9 --steps 100 --learning-rate 0.01 --cosine-lr false --linear-start 0 --stop-at-success false --abort-early true --json "$out/cw.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
f, p = json.load(open(f"{out}/fgsm.json")), json.load(open(f"{out}/pgd20.json"))
print("eps(x255)  clean  FGSM robust  PGD-20 robust")
for a, b in zip(f["results"], p["results"]):
    print(f"{a['eps']*255:8.1f}  {a['clean_accuracy']:.3f}  {a['robust_accuracy']:11.3f}  {b['robust_accuracy']:13.3f}")
for name in ("deepfool", "cw"):
    r = json.load(open(f"{out}/{name}.json"))["results"][0]
    print(f"{name}: success {r['success_rate']:.3f}, median L2 {r['median_l2']:.4f}, mean L2 {r['mean_l2']:.4f}")
PY
dotnet run --project perf -c Release -- attack --device cpu --json "$out/perf-attack.json" | tail -2
