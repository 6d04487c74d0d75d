#!/usr/bin/env bash
# Issue 6's figures on PneumoniaMNIST: BadNets at poison rates 1%, 5%, 10% (clean accuracy and attack success, next
# to a clean model with the same seed), and adversarial patches covering 5%, 10%, 20% of the image against the natural
# control. Usage: perf/tamper_results.sh [OUTDIR] [EPOCHS]   (models from perf/medmnist_train.sh in OUTDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/perturb-medmnist}; epochs=${2:-10}
data=../shared/data/medmnist/pneumoniamnist.npz
if [[ ! -f $data ]]; then echo "skipped: $data is absent" >&2; exit 0; fi
dotnet build cli -c Release -v q -nologo >/dev/null
perturb=cli/bin/Release/net10.0/perturb
[[ -f $out/pneumoniamnist-cnn-small.safetensors ]] || perf/medmnist_train.sh "$out"
for rate in 0.01 0.05 0.10; do
  $perturb poison badnets --data "$data" --arch cnn-small --rate $rate --target 0 --epochs "$epochs" --seed 0 --device cpu \
    --json "$out/badnets-$rate.json" > /dev/null
  python3 -c "import json;d=json.load(open('$out/badnets-$rate.json'));print(f\"BadNets rate $rate: clean acc {d['clean_accuracy']:.3f} (clean model {d['baseline_clean_accuracy']:.3f}), attack success {d['attack_success_rate']:.3f} (clean model {d.get('baseline_attack_success_rate', float('nan')):.3f})\")"
done
for size in 0.05 0.10 0.20; do
  $perturb attack patch --model "$out/pneumoniamnist-cnn-small.safetensors" --data "$data" --target 0 --patch-size $size \
    --steps 300 --seed 0 --device cpu --out "$out/patch-$size" --json "$out/patch-$size.json" > /dev/null
  python3 - "$out/patch-$size.json" "$size" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def g(o, *ks):
    for k in ks:
        if isinstance(o, dict) and k in o: return o[k]
    return None
print(f"patch {sys.argv[2]}: " + json.dumps({k: d[k] for k in d if k in ("patch", "control", "clean", "learned", "natural_control", "no_patch")} or d)[:400])
PY
done
