#!/usr/bin/env bash
# Issue 5's figures: one-pixel untargeted success for k = 1, 3, 5 on the PneumoniaMNIST and BreastMNIST models of
# issue 3 (perf/medmnist_train.sh), over the first 100 test images each, with mean queries and model queries/s; and,
# for k = 1 and 3, the saliency-guided pixel attack (pixel-saliency, default 64 candidate positions) at the same
# population and generations over the same images, with the share of queries it saves. The synthetic histology set
# (3x32x32, a LeNet trained here) runs the same comparison without any download.
# Usage: perf/search_results.sh [MODELDIR] [POPULATION] [ITERATIONS] [SETS]
#   (paper defaults: 400 and 100; SETS: any of histology pneumoniamnist breastmnist, space-separated, default all)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/perturb-medmnist}; pop=${2:-400}; its=${3:-100}; sets=${4:-"histology pneumoniamnist breastmnist"}
data=../shared/data/medmnist
mkdir -p "$dir"
dotnet build cli -c Release -v q -nologo >/dev/null
perturb=cli/bin/Release/net10.0/perturb

summary() { # JSON, set, k, label
  python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); r = d["results"][0]
q = r.get("mean_queries") or 0
print(f"{sys.argv[2]:15s} k={sys.argv[3]}  {sys.argv[4]:14s} success {r['success_rate']:.3f}  mean queries {q:9.0f}  median {r.get('median_queries') or 0:9.0f}  "
      f"images/s {r['images_per_second']:.2f}  model queries/s {q * d['n'] * r['images_per_second'] / max(d['n'], 1):.0f}")
PY
}
saved() { # plain JSON, saliency JSON, set, k
  python3 - "$@" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["results"][0]; s = json.load(open(sys.argv[2]))["results"][0]
qp, qs = p.get("mean_queries") or 0, s.get("mean_queries") or 0
print(f"{sys.argv[3]:15s} k={sys.argv[4]}  pixel-saliency saves {1 - qs / qp if qp else 0:.1%} of the mean queries "
      f"({qp:.0f} -> {qs:.0f}); success {p['success_rate']:.3f} -> {s['success_rate']:.3f}")
PY
}

for set in $sets; do
  if [[ $set == histology ]]; then
    spec=histology; model=$dir/histology-lenet.safetensors
    [[ -f $model ]] || $perturb train --arch lenet --data histology --epochs 5 --lr 0.003 --seed 0 --device cpu --out "$model" > /dev/null
    ks="1 3"
  else
    if [[ ! -d $data ]]; then echo "skipped $set: $data is absent" >&2; continue; fi
    spec=$data/$set.npz; model=$dir/$set-cnn-small.safetensors
    [[ -f $model ]] || perf/medmnist_train.sh "$dir"
    ks="1 3 5"
  fi
  for k in $ks; do
    $perturb attack one-pixel --model "$model" --data "$spec" --n 100 --pixels $k --population $pop --iterations $its \
      --seed 0 --device cpu --json "$dir/onepixel-$set-k$k.json" > /dev/null
    summary "$dir/onepixel-$set-k$k.json" "$set" "$k" one-pixel
    [[ $k == 5 ]] && continue
    $perturb attack pixel-saliency --model "$model" --data "$spec" --n 100 --pixels $k --population $pop --iterations $its \
      --seed 0 --device cpu --json "$dir/pixelsaliency-$set-k$k.json" > /dev/null
    summary "$dir/pixelsaliency-$set-k$k.json" "$set" "$k" pixel-saliency
    saved "$dir/onepixel-$set-k$k.json" "$dir/pixelsaliency-$set-k$k.json" "$set" "$k"
  done
done
