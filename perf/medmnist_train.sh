#!/usr/bin/env bash
# Trains the MedMNIST v2 baselines of issue 3 on this machine's CPU and checks them against the published
# ResNet-18 (28x28) test accuracies: PneumoniaMNIST 0.854, BreastMNIST 0.863.
# Usage: perf/medmnist_train.sh [OUTDIR] [EPOCHS]   (needs ../shared/data/medmnist/*.npz)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/perturb-medmnist}
epochs=${2:-20}
data=../shared/data/medmnist
if [[ ! -d $data ]]; then echo "skipped: $data is absent (the MedMNIST files are not on this machine)" >&2; exit 0; fi
mkdir -p "$out"
dotnet build cli -c Release -v q -nologo >/dev/null
perturb=cli/bin/Release/net10.0/perturb
status=0
for set in pneumoniamnist:0.854 breastmnist:0.863; do
  name=${set%%:*}; target=${set##*:}
  start=$(date +%s)
  $perturb train --data "$data/$name.npz" --arch cnn-small --recipe medmnist --epochs "$epochs" --seed 0 --device auto \
    --out "$out/$name-cnn-small.safetensors" --json "$out/$name-train.json"
  $perturb eval --model "$out/$name-cnn-small.safetensors" --data "$data/$name.npz" --split test --json "$out/$name-test.json"
  secs=$(( $(date +%s) - start ))
  acc=$(python3 -c "import json;print(json.load(open('$out/$name-test.json'))['accuracy'])")
  auc=$(python3 -c "import json;print(json.load(open('$out/$name-test.json'))['auc'])")
  verdict=$(python3 -c "print('reached' if $acc >= $target else 'MISSED')")
  echo "$name: test accuracy $acc (published ResNet-18: $target, $verdict), AUC $auc, ${secs}s train+eval"
  [[ $verdict == reached ]] || status=1
done
exit $status
