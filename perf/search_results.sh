#!/usr/bin/env bash
# Issue 5's figures: one-pixel untargeted success for k = 1, 3, 5 on the PneumoniaMNIST and BreastMNIST models of
# issue 3 (perf/medmnist_train.sh), over the first 100 test images each, with mean queries and model queries/s.
# Usage: perf/search_results.sh [MODELDIR] [POPULATION] [ITERATIONS]   (paper defaults: 400 and 100)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/perturb-medmnist}; pop=${2:-400}; its=${3:-100}
data=../shared/data/medmnist
if [[ ! -d $data ]]; then echo "skipped: $data is absent" >&2; exit 0; fi
dotnet build cli -c Release -v q -nologo >/dev/null
perturb=cli/bin/Release/net10.0/perturb
for set in pneumoniamnist breastmnist; do
  model=$dir/$set-cnn-small.safetensors
  [[ -f $model ]] || perf/medmnist_train.sh "$dir"
  for k in 1 3 5; do
    $perturb attack one-pixel --model "$model" --data "$data/$set.npz" --n 100 --pixels $k --population $pop --iterations $its \
      --seed 0 --device cpu --json "$dir/onepixel-$set-k$k.json" > /dev/null
    python3 - "$dir/onepixel-$set-k$k.json" "$set" "$k" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); r = d["results"][0]
q = r.get("mean_queries") or 0
print(f"{sys.argv[2]:15s} k={sys.argv[3]}  success {r['success_rate']:.3f}  mean queries {q:9.0f}  median {r.get('median_queries') or 0:9.0f}  "
      f"images/s {r['images_per_second']:.2f}  model queries/s {q * d['n'] * r['images_per_second'] / max(d['n'], 1):.0f}")
PY
  done
done
