#!/usr/bin/env bash
# Issue 17's figures. Usage: perf/robust_results.sh [OUTDIR] [PART...]   (needs ../shared/data/medmnist; the peer
# parts need Debian's python3-torch and a torchattacks source tree in $TORCHATTACKS, e.g. from
# `git clone https://github.com/Harry24k/adversarial-attacks-pytorch`; the cw part also runs Foolbox's C&W when
# $FOOLBOX and $EAGERPY name source trees of bethgelab/foolbox and jonasrauber/eagerpy).
# Parts (all by default):
#   fgsm     FGSM at eps 0.2 / 0.3 on a confident LeNet (synthetic shapes, Adam, 40 epochs: p_t is 1 in float32 on 38%
#            of the 500 test images), this build (and $PERTURB_BEFORE, a build with the p_t - 1 gradient, when set)
#            against PyTorch float32 / float64 FGSM, with its own cross-entropy and with the log-sum-exp one
#   table    PneumoniaMNIST cnn-small (--recipe medmnist, 20 epochs), first $N (100) test images, Linf 2/255 and 4/255:
#            AutoAttack (standard) vs PGD-100 x 10 restarts vs APGD-CE, and the torchattacks peers
#   multi    the same on a 4-class LeNet (synthetic shapes), where torchattacks' AutoAttack runs (it needs 4 classes)
#   hsj      HopSkipJump (L2, 5,000 queries) against DeepFool on the demo model, first $NHSJ (50) test tiles: Chen et
#            al.'s algorithm (hsj.json), with bilinear low-frequency probes and start images (hsj-lowfreq.json:
#            --probe-scale 2 --start-images 20), with DCT probes and start images (hsj-dct.json: --probe-scale 1.25
#            --probe-basis dct --start-images 20, the best found); DeepFool at its overshoot 0.02 (hsj-deepfool.json)
#            and 0 (hsj-deepfool-o0.json, a boundary point like HopSkipJump's)
#   cw       C&W median L2 on the PneumoniaMNIST model's first $NCW (200) test images against torchattacks (and Foolbox),
#            Perturb's answers re-checked in PyTorch (perturb-cw); both sides on $THREADS (1) threads, CPU seconds
#            (Perturb: cw-time.txt, the process's user + system time, and cw-base-time.txt, the same for a one-gradient
#            FGSM run with the same start-up, loading and --out: the difference is the attack alone; the peers:
#            cpu_seconds, the attack alone)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/perturb-robust}; shift || true
parts=${*:-fgsm table multi hsj cw}
n=${N:-100}
ncw=${NCW:-200}
nhsj=${NHSJ:-50}
data=../shared/data/medmnist/pneumoniamnist.npz
if [[ ! -f $data ]]; then echo "skipped: $data is absent" >&2; exit 0; fi
mkdir -p "$out"
# $PERTURB: another build of the CLI (default: build this tree's).
if [[ -z ${PERTURB:-} ]]; then dotnet build cli -c Release -v q -nologo >/dev/null; fi
perturb=${PERTURB:-cli/bin/Release/net10.0/perturb}
peer="/usr/bin/python3 perf/peers/robust_peers.py --torchattacks ${TORCHATTACKS:-../adversarial-attacks-pytorch}"
want() { [[ " $parts " == *" $1 "* ]]; }

if want fgsm; then
  conf=$out/confident-lenet.safetensors
  [[ -f $conf ]] || $perturb train --data synthetic --arch lenet --optimizer adam --lr 0.001 --epochs 40 --seed 0 --out "$conf" --json "$out/confident-train.json"
  $perturb attack fgsm --model "$conf" --data synthetic --n 500 --eps 0.2,0.3 --json "$out/fgsm-after.json" --out "$out/fgsm-inputs"
  if [[ -n ${PERTURB_BEFORE:-} ]]; then $PERTURB_BEFORE attack fgsm --model "$conf" --data synthetic --n 500 --eps 0.2,0.3 --json "$out/fgsm-before.json"; fi
  $peer --model "$conf" --inputs "$out/fgsm-inputs" --eps 0.2,0.3 --attacks fgsm,fgsm64,fgsm-lse,fgsm64-lse --json "$out/fgsm-peers.json"
fi

table() {  # $1 model, $2 data, $3 tag, $4 eps
  local m=$1 d=$2 tag=$3 eps=$4
  $perturb attack autoattack --model "$m" --data "$d" --n $n --eps "$eps" --seed 0 --json "$out/$tag-autoattack.json" --out "$out/$tag-inputs"
  $perturb attack pgd --model "$m" --data "$d" --n $n --eps "$eps" --steps 100 --restarts 10 --seed 0 --json "$out/$tag-pgd100x10.json"
  $perturb attack pgd --model "$m" --data "$d" --n $n --eps "$eps" --steps 100 --seed 0 --json "$out/$tag-pgd100.json"
  $perturb attack apgd-ce --model "$m" --data "$d" --n $n --eps "$eps" --steps 100 --seed 0 --json "$out/$tag-apgd.json"
  $perturb attack fgsm --model "$m" --data "$d" --n $n --eps "$eps" --json "$out/$tag-fgsm.json"
  $peer --model "$m" --inputs "$out/$tag-inputs" --eps "$eps" --attacks fgsm,pgd,apgd,autoattack --restarts 1 --json "$out/$tag-peers.json"
}

model=$out/pneumoniamnist-cnn-small.safetensors
if want table || want cw; then
  [[ -f $model ]] || $perturb train --data "$data" --arch cnn-small --recipe medmnist --epochs 20 --seed 0 --out "$model" --json "$out/train.json"
fi
if want table; then table "$model" "$data" pneumonia 2/255,4/255; fi

if want multi; then
  lenet4=$out/synthetic-lenet.safetensors
  [[ -f $lenet4 ]] || $perturb train --data synthetic --arch lenet --optimizer adam --lr 0.001 --epochs 10 --seed 0 --out "$lenet4"
  table "$lenet4" synthetic synthetic 0.04
fi

if want hsj; then
  [[ -f $out/demo/model.safetensors ]] || $perturb demo --out "$out/demo" --seed 0
  spec="histology:train=2000,test=500,overlap=0.9"   # the demo's data set (seed 0 = --data-seed 0)
  $perturb attack hopskipjump --model "$out/demo/model.safetensors" --data "$spec" --n $nhsj --queries 5000 --seed 0 --json "$out/hsj.json"
  $perturb attack hopskipjump --model "$out/demo/model.safetensors" --data "$spec" --n $nhsj --queries 5000 --seed 0 --probe-scale 2 --start-images 20 --json "$out/hsj-lowfreq.json"
  $perturb attack hopskipjump --model "$out/demo/model.safetensors" --data "$spec" --n $nhsj --queries 5000 --seed 0 --probe-scale 1.25 --probe-basis dct --start-images 20 --json "$out/hsj-dct.json"
  $perturb attack deepfool --model "$out/demo/model.safetensors" --data "$spec" --n $nhsj --json "$out/hsj-deepfool.json"
  $perturb attack deepfool --model "$out/demo/model.safetensors" --data "$spec" --n $nhsj --overshoot 0 --json "$out/hsj-deepfool-o0.json"
fi

if want cw; then
  threads=${THREADS:-1}
  DOTNET_PROCESSOR_COUNT=$threads /usr/bin/time -f "perturb cw: user %U s, system %S s, wall %e s" -o "$out/cw-time.txt" \
    $perturb attack cw --model "$model" --data "$data" --n $ncw --seed 0 --json "$out/cw.json" --out "$out/cw-inputs" --overwrite
  # The same start-up, data loading and --out writing around one gradient (FGSM): cw-time.txt minus this is Perturb's
  # attack-only CPU time (plus one gradient), the figure to set beside the peers' cpu_seconds.
  DOTNET_PROCESSOR_COUNT=$threads /usr/bin/time -f "perturb fgsm (start-up baseline): user %U s, system %S s, wall %e s" -o "$out/cw-base-time.txt" \
    $perturb attack fgsm --model "$model" --data "$data" --n $ncw --eps 0.01 --json "$out/cw-base.json" --out "$out/cw-base-inputs" --overwrite
  cat "$out/cw-time.txt" "$out/cw-base-time.txt"
  if [[ -n ${FOOLBOX:-} ]]; then fb="--foolbox $FOOLBOX --eagerpy $EAGERPY"; cwpeers=perturb-cw,cw,foolbox-cw; else fb=; cwpeers=perturb-cw,cw; fi
  $peer $fb --model "$model" --inputs "$out/cw-inputs" --attacks $cwpeers --threads "$threads" --json "$out/cw-peers.json"
fi

/usr/bin/python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def load(p):
    return json.load(open(p)) if os.path.exists(p) else None
for f in sorted(glob.glob(f"{out}/*.json")):
    j = load(f)
    if not isinstance(j, dict) or "results" not in j: continue
    name = os.path.basename(f)[:-5]
    for r in j["results"]:
        if "attack" in r:  # a peer row
            print(f"{name:28} {r['attack']:10} eps {r['eps']}: " + (f"robust {r['robust_accuracy']:.3f}" if "robust_accuracy" in r else r.get("error", "")) +
                  (f" median L2 {r['median_l2']:.4f}" if r.get("median_l2") else "") + f" ({r['seconds']:.1f} s"
                  + (f", cpu {r['cpu_seconds']:.1f} s)" if "cpu_seconds" in r else ")"))
        else:
            st = " ".join(f"{s['stage']}={s['robust_accuracy']:.3f}" for s in r.get("stages", []))
            print(f"{name:28} {j['attack']:10} eps {r['eps']}: robust {r['robust_accuracy']}" +
                  (f" median L2 {r['median_l2']:.4f}" if r.get("median_l2") else "") + (f" median queries {r['median_queries']}" if r.get("median_queries") else "") + f" {st}"
                  + (f" ({j['n'] * len(j['results']) / r['images_per_second']:.1f} s for the run)" if r.get("images_per_second") else ""))
PY
