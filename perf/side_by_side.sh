#!/usr/bin/env bash
# Perturb's CPU harness and the PyTorch peer on the same shapes, one after the other in one run, same thread count,
# then the ratio per figure (Perturb / PyTorch, > 1 means Perturb is faster).
#
#   perf/side_by_side.sh [--threads N] [--clock wall|cpu] [--bench conv|resnet|pgd|search|all] [--batch B] [--out DIR] [--quick]
#
# pgd is PGD-20 (L-inf, eps 8/255) on the ResNet-18 at batch B (default 128) through Perturb's attack API against a
# PyTorch PGD loop written as torchattacks' PGD. search is the one-pixel attack (population 400) through Perturb on
# the ResNet-18, model queries per second, against PyTorch's ResNet-18 forward rate at the same batch (the attack's
# forward chunk, read from Perturb's JSON).
#
# --clock cpu times process CPU seconds on both sides (time.process_time in Python), the fair figure on a machine
# that others load: wall time there measures the queue, not the code. Writes DIR/perturb-*.json, DIR/torch-*.json,
# DIR/side_by_side.json and DIR/side_by_side.md (default DIR: perf-out). Needs dotnet and python3 with torch.
set -euo pipefail
threads=2 clock=wall bench=all out=perf-out quick=() batch=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --clock) clock="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --batch) batch=(--batch "$2"); shift 2 ;;
    *) echo "error: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
case "$bench" in conv|resnet|pgd|search|all) ;; *) echo "error: --bench must be conv, resnet, pgd, search or all" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
uptime | tee "$out/uptime-start.txt" >&2
benches=("$bench"); [[ "$bench" == all ]] && benches=(conv resnet pgd search)
dotnet build "$here" -c Release -v q >&2
for b in "${benches[@]}"; do
  if [[ "$b" == search ]]; then
    # The search runs at its own forward chunk; PyTorch's forward is then measured at that batch.
    dotnet run --no-build --project "$here" -c Release -- search --model resnet18 --device cpu --threads "$threads" --clock "$clock" \
      "${quick[@]}" --json "$out/perturb-$b.json" >&2
    chunk=$(/usr/bin/python3 -c "import json,sys; print([f for f in json.load(open(sys.argv[1]))['figures'] if f['group'] == 'search'][0]['detail']['forward_chunk'])" "$out/perturb-$b.json")
    /usr/bin/python3 "$here/peers/torch_bench.py" --device cpu --threads "$threads" --clock "$clock" --bench forward --batch "$chunk" \
      "${quick[@]}" --json "$out/torch-$b.json" >&2
    continue
  fi
  pb="$b"; [[ "$b" == pgd ]] && pb=attack
  dotnet run --no-build --project "$here" -c Release -- "$pb" --device cpu --threads "$threads" --clock "$clock" \
    "${quick[@]}" "${batch[@]}" --json "$out/perturb-$b.json" >&2
  /usr/bin/python3 "$here/peers/torch_bench.py" --device cpu --threads "$threads" --clock "$clock" --bench "$b" \
    "${quick[@]}" "${batch[@]}" --json "$out/torch-$b.json" >&2
done
uptime | tee "$out/uptime-end.txt" >&2
/usr/bin/python3 - "$out" "$threads" "$clock" "${benches[@]}" <<'PY'
import json, os, sys
out, threads, clock, benches = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ours = {}
for b in benches:
    for f in json.load(open(os.path.join(out, f"perturb-{b}.json")))["figures"]:
        ours[f["name"]] = f
theirs = {}
for b in benches:
    for f in json.load(open(os.path.join(out, f"torch-{b}.json")))["figures"]:
        theirs[f["name"]] = f
rows = []
for name, f in ours.items():
    if name in theirs and theirs[name]["value"] > 0:
        rows.append(dict(name=name, unit=f["unit"], perturb=f["value"], torch=theirs[name]["value"],
                         ratio=f["value"] / theirs[name]["value"]))
# The search attack's query rate against PyTorch's plain forward rate at the attack's forward chunk.
for f in ours.values():
    if f["group"] == "search":
        t = theirs.get(f"resnet18 forward (eval) B={f['detail']['forward_chunk']}")
        if t and t["value"] > 0:
            rows.append(dict(name=f"{f['name']} vs PyTorch {t['name']}", unit="queries/s vs images/s", perturb=f["value"],
                             torch=t["value"], ratio=f["value"] / t["value"]))
load = [open(os.path.join(out, p)).read().strip() for p in ("uptime-start.txt", "uptime-end.txt")]
res = dict(threads=int(threads), clock=clock, uptime=load, rows=rows)
tmp = os.path.join(out, "side_by_side.json.tmp")
json.dump(res, open(tmp, "w"), indent=2); os.replace(tmp, os.path.join(out, "side_by_side.json"))
md = [f"Perturb vs PyTorch CPU, {threads} threads, clock {clock}; load: {load[0]} / {load[1]}", "",
      "| figure | unit | Perturb | PyTorch | ratio |", "|---|---|---|---|---|"]
md += [f"| {r['name']} | {r['unit']} | {r['perturb']:.1f} | {r['torch']:.1f} | {r['ratio']:.2f} |" for r in rows]
open(os.path.join(out, "side_by_side.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
