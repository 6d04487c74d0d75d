#!/usr/bin/env bash
# Issue 12's segmentation figures (README, "Segmentation on histology-seg"). Usage: perf/seg_results.sh [OUTDIR] [PART...]
# Parts (all by default; each writes OUTDIR/<tag>.json, and the models once):
#   train       unet on the default tiles (unet0) and on difficulty=0.9 (unet9), 3 epochs, ce+dice (about 3 min each)
#   untargeted  seg-pgd at 8/255 on the first 40 test tiles of each: the default (margin, 20 fixed steps) and the
#               strongest found (soft Dice loss, 100 steps, APGD schedule); then margin, 100 APGD steps at the budgets
#               around the first below Dice 0.2 (32, 48 /255 default; 16, 24 /255 difficulty 0.9) (about 15 min)
#   losses      the losses side by side at 8/255, first 20 tiles: margin, ce, dice, flip at 20 fixed steps; dice,
#               margin, flip at 100 APGD steps; dice 5 x 20 steps (restarts), 100 fixed steps, 100 APGD steps from a
#               random start; DAG untargeted on the 8/255 ball (about 25 min)
#   models      unet9 trained with ce, with dice, and ce+dice for 6 epochs, each attacked at 8/255 (about 20 min)
#   asmadag     ASMA forge and erase, DAG erase on unet0 and unet9, as the README's rows (about 18 min)
#   sizes       unet at tile size 64 and 128 (nuclei 2x and 4x the size-32 ones in pixels): size 64 on the default tiles
#               and difficulty 0.9, size 128 on difficulty 0.9 (3 epochs: about 8, 8 and 25 min); each attacked at
#               8/255 on 40 tiles, margin 20 steps and soft Dice 100 APGD steps (about 1, 4 and 15 min per model)
#   levers      at size 64, difficulty 0.9: unet:depth=4 and unet trained with the Dice loss, each attacked at 8/255
#               (40 tiles, soft Dice 100 APGD steps; depth 4 also margin 20 steps) (about 20 min)
#   demoerase   erase at 64 and 128 /255 on the demo's 24 tiles: unet-small and unet trained as the demo does (Adam
#               5e-3, batch 16, 600 tiles, 3 epochs), 20 / 50 / 100 (unet-small also 200) steps, APGD and soft Dice on
#               unet-small (about 5 min)
#   realism     the tiles' nucleus size and contrast statistics against real H&E tiles at sizes 32, 64, 96 and 128,
#               default and difficulty 0.9 (perf/seg_realism.py; needs ../shared/data; the tiles are written by a
#               seg-fgsm run at eps 0 on a unet-small trained 1 epoch on 16 tiles, only to have a model of that size)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/perturb-seg}; shift || true
parts=${*:-train untargeted losses models asmadag sizes levers demoerase realism}
mkdir -p "$out"
if [[ -z ${PERTURB:-} ]]; then dotnet build cli -c Release -v q -nologo >/dev/null; fi
perturb=${PERTURB:-cli/bin/Release/net10.0/perturb}
want() { [[ " $parts " == *" $1 "* ]]; }
D=histology-seg:train=1000,test=200
D9=$D,difficulty=0.9
m0=$out/unet0.safetensors m9=$out/unet9.safetensors
pgd() { local tag=$1; shift; $perturb attack seg-pgd --seed 0 --json "$out/$tag.json" "$@" > "$out/$tag.log"; }

if want train; then
  [[ -f $m0 ]] || $perturb train --data $D --epochs 3 --batch-size 32 --lr 0.003 --seed 0 --out "$m0" --json "$out/train0.json"
  [[ -f $m9 ]] || $perturb train --data $D9 --epochs 3 --batch-size 32 --lr 0.003 --seed 0 --out "$m9" --json "$out/train9.json"
fi
if want untargeted; then
  pgd u0-margin20 --model "$m0" --data $D --n 40 --eps 8/255 --steps 20
  pgd u9-margin20 --model "$m9" --data $D9 --n 40 --eps 8/255 --steps 20
  pgd u0-dice-apgd100 --model "$m0" --data $D --n 40 --eps 8/255 --steps 100 --loss dice --schedule apgd
  pgd u9-dice-apgd100 --model "$m9" --data $D9 --n 40 --eps 8/255 --steps 100 --loss dice --schedule apgd
  pgd u0-margin-apgd100 --model "$m0" --data $D --n 40 --eps 32/255,48/255 --steps 100 --loss margin --schedule apgd
  pgd u9-margin-apgd100 --model "$m9" --data $D9 --n 40 --eps 16/255,24/255 --steps 100 --loss margin --schedule apgd
fi
if want losses; then
  for m in 0 9; do
    model=$out/unet$m.safetensors; data=$D; [[ $m == 9 ]] && data=$D9
    for l in margin ce dice flip; do pgd l$m-$l-20 --model "$model" --data $data --n 20 --eps 8/255 --steps 20 --loss $l; done
    for l in dice margin flip; do pgd l$m-$l-apgd100 --model "$model" --data $data --n 20 --eps 8/255 --steps 100 --loss $l --schedule apgd; done
    pgd l$m-dice-20x5 --model "$model" --data $data --n 20 --eps 8/255 --steps 20 --loss dice --restarts 5
    pgd l$m-dice-100 --model "$model" --data $data --n 20 --eps 8/255 --steps 100 --loss dice
    pgd l$m-dice-apgd100-rs --model "$model" --data $data --n 20 --eps 8/255 --steps 100 --loss dice --schedule apgd --random-start true
    $perturb attack dag --model "$model" --data $data --n 20 --eps 8/255 --iterations 100 --gamma 1/255 --seed 0 --json "$out/l$m-dag.json" > "$out/l$m-dag.log"
  done
fi
if want models; then   # unet9 trained with ce, with dice, and ce+dice for 6 epochs (about 12 min), each attacked at 8/255
  for v in ce dice e6; do
    mv=$out/unet9-$v.safetensors
    if [[ ! -f $mv ]]; then
      if [[ $v == e6 ]]; then $perturb train --data $D9 --epochs 6 --batch-size 32 --lr 0.003 --seed 0 --out "$mv" --json "$out/train9-$v.json"
      else $perturb train --data $D9 --epochs 3 --batch-size 32 --lr 0.003 --seed 0 --loss $v --out "$mv" --json "$out/train9-$v.json"; fi
    fi
    pgd m9-$v-margin20 --model "$mv" --data $D9 --n 20 --eps 8/255 --steps 20
    pgd m9-$v-dice-apgd100 --model "$mv" --data $D9 --n 20 --eps 8/255 --steps 100 --loss dice --schedule apgd
  done
fi
if want asmadag; then
  $perturb attack asma --model "$m0" --data $D --n 20 --target forge:8,8,24,24 --iterations 100 --seed 0 --json "$out/asma-forge.json" > "$out/asma-forge.log"
  $perturb attack asma --model "$m0" --data $D --n 20 --target erase --iterations 300 --tau 0.01 --beta 0 --seed 0 --json "$out/asma-erase.json" > "$out/asma-erase.log"
  $perturb attack dag --model "$m0" --data $D --n 40 --target erase --iterations 150 --gamma 0.01 --seed 0 --json "$out/dag-erase.json" > "$out/dag-erase.log"
  $perturb attack asma --model "$m9" --data $D9 --n 20 --target forge:8,8,24,24 --iterations 100 --seed 0 --json "$out/asma9-forge.json" > "$out/asma9-forge.log"
  $perturb attack asma --model "$m9" --data $D9 --n 20 --target erase --iterations 300 --tau 0.01 --beta 0 --seed 0 --json "$out/asma9-erase.json" > "$out/asma9-erase.log"
  $perturb attack dag --model "$m9" --data $D9 --n 40 --target erase --iterations 150 --gamma 0.01 --seed 0 --json "$out/dag9-erase.json" > "$out/dag9-erase.log"
fi
if want sizes; then
  for v in 64:0 64:0.9 128:0.9; do
    s=${v%:*} d=${v#*:}; ds=$D,size=$s,difficulty=$d; ms=$out/unet${s}_$d.safetensors
    [[ -f $ms ]] || $perturb train --data $ds --epochs 3 --batch-size 32 --lr 0.003 --seed 0 --out "$ms" --json "$out/train${s}_$d.json"
    pgd s$s-$d-margin20 --model "$ms" --data $ds --n 40 --eps 8/255 --steps 20
    pgd s$s-$d-dice-apgd100 --model "$ms" --data $ds --n 40 --eps 8/255 --steps 100 --loss dice --schedule apgd
  done
fi
if want levers; then
  ds=$D,size=64,difficulty=0.9
  [[ -f $out/unet64d4_0.9.safetensors ]] || $perturb train --arch unet:depth=4 --data $ds --epochs 3 --batch-size 32 --lr 0.003 --seed 0 --out "$out/unet64d4_0.9.safetensors" --json "$out/train64d4_0.9.json"
  [[ -f $out/unet64dice_0.9.safetensors ]] || $perturb train --data $ds --loss dice --epochs 3 --batch-size 32 --lr 0.003 --seed 0 --out "$out/unet64dice_0.9.safetensors" --json "$out/train64dice_0.9.json"
  pgd v64d4-dice-apgd100 --model "$out/unet64d4_0.9.safetensors" --data $ds --n 40 --eps 8/255 --steps 100 --loss dice --schedule apgd
  pgd v64d4-margin20 --model "$out/unet64d4_0.9.safetensors" --data $ds --n 40 --eps 8/255 --steps 20
  pgd v64dice-dice-apgd100 --model "$out/unet64dice_0.9.safetensors" --data $ds --n 40 --eps 8/255 --steps 100 --loss dice --schedule apgd
fi
if want demoerase; then
  DD=histology-seg:train=600,test=24,size=32
  for a in unet-small unet; do
    md=$out/demo-$a.safetensors
    [[ -f $md ]] || $perturb train --arch $a --data $DD --epochs 3 --batch-size 16 --lr 0.005 --optimizer adam --seed 0 --out "$md" --json "$out/train-demo-$a.json"
    for st in 20 50 100; do pgd de-$a-$st --model "$md" --data $DD --n 24 --eps 64/255,128/255 --steps $st --target erase; done
  done
  md=$out/demo-unet-small.safetensors
  pgd de-unet-small-200 --model "$md" --data $DD --n 24 --eps 64/255,128/255 --steps 200 --target erase
  pgd de-unet-small-apgd100 --model "$md" --data $DD --n 24 --eps 64/255,128/255 --steps 100 --schedule apgd --target erase
  pgd de-unet-small-dice50 --model "$md" --data $DD --n 24 --eps 64/255,128/255 --steps 50 --loss dice --schedule apgd --target erase
fi
if want realism; then
  dirs=()
  for s in 32 64 96 128; do for d in 0 0.9; do
    ds=histology-seg:train=16,test=200,size=$s,difficulty=$d; ms=$out/tiles-small-$s-$d.safetensors
    [[ -f $ms ]] || $perturb train --arch unet-small --data $ds --epochs 1 --batch-size 16 --lr 0.003 --seed 0 --out "$ms" > /dev/null
    $perturb attack seg-fgsm --model "$ms" --data $ds --n 40 --eps 0 --out "$out/tiles-$s-$d" > /dev/null
    dirs+=("$out/tiles-$s-$d")
  done; done
  /usr/bin/python3 perf/seg_realism.py "${dirs[@]}" | tee "$out/realism.txt"
fi
# One line per run: eps, Dice with the clean prediction or the target, success.
for f in "$out"/*.json; do
  /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); [print(sys.argv[1].split('/')[-1], r['eps'], 'dice', round(r['dice_target'],3), 'success', r['success_rate'], 'truth', r['dice_truth'], 'count', r['count_after']) for r in j.get('results', [])]" "$f" 2>/dev/null || true
done
