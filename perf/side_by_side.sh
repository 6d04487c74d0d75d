#!/usr/bin/env bash
# Perturb's CPU harness and the PyTorch peer on the same shapes in one run, same thread count and clock, interleaved:
# for each bench, R rounds of (Perturb, PyTorch), so A, B, A, B, ... in alternation. Per figure: the median of each
# side over the rounds, the ratio of the medians (Perturb / PyTorch, > 1 means Perturb is faster), each side's spread
# over the rounds ((max - min) / median), and the range of the per-round ratios. A slow drift of the machine (others'
# load, clocks, a neighbour's cache) then moves both sides alike and cancels in the ratio; the spread says how much
# the machine moved while it ran.
#
#   perf/side_by_side.sh [--threads N] [--clock wall|cpu] [--bench conv|resnet|pgd|search|all] [--rounds R] [--batch B]
#                        [--out DIR] [--quick]
#
# --rounds R: rounds per bench (default 3; 1 is the old one-after-the-other run). pgd is PGD-20 (L-inf, eps 8/255) on
# the ResNet-18 at batch B (default 128) through Perturb's attack API against a PyTorch PGD loop written as
# torchattacks' PGD. search is the one-pixel attack (population 400) through Perturb on the ResNet-18, model queries
# per second, against PyTorch's ResNet-18 forward rate at the same batch (the attack's forward chunk, read from
# Perturb's JSON of the first round).
#
# --clock cpu times process CPU seconds on both sides (time.process_time in Python), the fair figure on a machine
# that others load: wall time there measures the queue, not the code. Writes DIR/perturb-BENCH-rR.json,
# DIR/torch-BENCH-rR.json, DIR/side_by_side.json and DIR/side_by_side.md (default DIR: perf-out). Needs dotnet and
# python3 with torch.
set -euo pipefail
threads=2 clock=wall bench=all out=perf-out quick=() batch=() rounds=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --clock) clock="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --batch) batch=(--batch "$2"); shift 2 ;;
    *) echo "error: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
case "$bench" in conv|resnet|pgd|search|all) ;; *) echo "error: --bench must be conv, resnet, pgd, search or all" >&2; exit 2 ;; esac
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
# --quick runs Perturb's ResNet figures at batch 32; PyTorch's must run at the same batch for the names to join.
[[ ${#quick[@]} -gt 0 && ${#batch[@]} -eq 0 ]] && batch=(--batch 32)
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
uptime | tee "$out/uptime-start.txt" >&2
benches=("$bench"); [[ "$bench" == all ]] && benches=(conv resnet pgd search)
dotnet build "$here" -c Release -v q >&2
perturb() { dotnet run --no-build --project "$here" -c Release -- "$@" --device cpu --threads "$threads" --clock "$clock" "${quick[@]}"; }
torch() { /usr/bin/python3 "$here/peers/torch_bench.py" --device cpu --threads "$threads" --clock "$clock" "${quick[@]}" "$@"; }
for b in "${benches[@]}"; do
  chunk=
  for ((r = 1; r <= rounds; r++)); do
    echo "[$(date +%H:%M:%S)] $b: round $r of $rounds" >&2
    if [[ "$b" == search ]]; then
      # The search runs at its own forward chunk; PyTorch's forward is then measured at that batch.
      perturb search --model resnet18 --json "$out/perturb-$b-r$r.json" >&2
      [[ -n "$chunk" ]] || chunk=$(/usr/bin/python3 -c "import json,sys; print([f for f in json.load(open(sys.argv[1]))['figures'] if f['group'] == 'search'][0]['detail']['forward_chunk'])" "$out/perturb-$b-r$r.json")
      torch --bench forward --batch "$chunk" --json "$out/torch-$b-r$r.json" >&2
      continue
    fi
    pb="$b"; [[ "$b" == pgd ]] && pb=attack
    perturb "$pb" "${batch[@]}" --json "$out/perturb-$b-r$r.json" >&2
    torch --bench "$b" "${batch[@]}" --json "$out/torch-$b-r$r.json" >&2
  done
done
uptime | tee "$out/uptime-end.txt" >&2
/usr/bin/python3 - "$out" "$threads" "$clock" "$rounds" "${benches[@]}" <<'PY'
import json, os, statistics, sys
out, threads, clock, rounds, benches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]

def load(side, b):
    """Figures by name, each with its values over the rounds (in round order)."""
    figs = {}
    for r in range(1, rounds + 1):
        for f in json.load(open(os.path.join(out, f"{side}-{b}-r{r}.json")))["figures"]:
            figs.setdefault(f["name"], dict(f, values=[]))["values"].append(f["value"])
    return figs

ours, theirs = {}, {}
for b in benches:
    ours.update(load("perturb", b)); theirs.update(load("torch", b))

def spread(v):
    m = statistics.median(v)
    return (max(v) - min(v)) / m if m > 0 else 0.0

def row(name, unit, a, b):
    pa, pb = statistics.median(a), statistics.median(b)
    per_round = [x / y for x, y in zip(a, b) if y > 0]
    return dict(name=name, unit=unit, perturb=pa, torch=pb, ratio=pa / pb if pb > 0 else None,
                perturb_values=a, torch_values=b, perturb_spread=spread(a), torch_spread=spread(b),
                round_ratio_min=min(per_round) if per_round else None, round_ratio_max=max(per_round) if per_round else None)

rows = []
for name, f in ours.items():
    if name in theirs and statistics.median(theirs[name]["values"]) > 0:
        rows.append(row(name, f["unit"], f["values"], theirs[name]["values"]))
# The search attack's query rate against PyTorch's plain forward rate at the attack's forward chunk.
for f in ours.values():
    if f["group"] == "search":
        t = theirs.get(f"resnet18 forward (eval) B={f['detail']['forward_chunk']}")
        if t and statistics.median(t["values"]) > 0:
            rows.append(row(f"{f['name']} vs PyTorch {t['name']}", "queries/s vs images/s", f["values"], t["values"]))
load_ = [open(os.path.join(out, p)).read().strip() for p in ("uptime-start.txt", "uptime-end.txt")]
res = dict(threads=int(threads), clock=clock, rounds=rounds, order="per bench: Perturb, PyTorch, Perturb, PyTorch, ...",
           uptime=load_, rows=rows)
tmp = os.path.join(out, "side_by_side.json.tmp")
json.dump(res, open(tmp, "w"), indent=2); os.replace(tmp, os.path.join(out, "side_by_side.json"))
md = [f"Perturb vs PyTorch CPU, {threads} threads, clock {clock}, {rounds} interleaved rounds per bench (median of each side, "
      f"ratio of medians; spread = (max - min) / median over the rounds); load: {load_[0]} / {load_[1]}", "",
      "| figure | unit | Perturb | PyTorch | ratio | per-round ratios | Perturb spread | PyTorch spread |", "|---|---|---|---|---|---|---|---|"]
md += [f"| {r['name']} | {r['unit']} | {r['perturb']:.1f} | {r['torch']:.1f} | {r['ratio']:.2f} | "
       f"{r['round_ratio_min']:.2f}-{r['round_ratio_max']:.2f} | {100 * r['perturb_spread']:.0f}% | {100 * r['torch_spread']:.0f}% |" for r in rows]
open(os.path.join(out, "side_by_side.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
