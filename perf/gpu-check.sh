#!/usr/bin/env bash
# The whole GPU check in one run, on a machine with an NVIDIA GPU, python3 with PyTorch, and no .NET: it runs the
# self-contained build that perf/gpu-pack.sh puts in .gpu/perturb.tgz (the CLI `perturb` and the harness
# `Perturb.Perf`, published for linux-x64 with the .NET runtime inside).
#
#   perf/gpu-check.sh [--device cuda|ilgpu-cpu] [--quick] [--tarball FILE | --pub DIR] [--out DIR] [--python PY]
#                     [--timeout-scale F]
#
# Steps, each bounded by its own timeout (seconds, in brackets; the sum stays under 8 minutes) and recorded, not fatal
# when it fails:
#   info         perturb info                                                                       [20]
#   parity       perturb parity: every op family on DEVICE against cpu on small shapes, then resnet18 logits and
#                input gradient (batch 8; 1 with --quick)                                           [90]
#   harness      Perturb.Perf all --device DEVICE (peak, gemm, conv, resnet)                       [150]
#   torch-fp32   perf/peers/torch_bench.py on the same GPU, TF32 off (true float32)                  [50]
#   torch-tf32   the same with TF32 on                                                               [40]
#   pgd          Perturb.Perf attack: PGD-20 (L-inf, eps 8/255) on resnet18, batch 512             [60]
#   pgd-torch    torch_bench.py --bench pgd: the PyTorch PGD loop (torchattacks' PGD.forward), batch 512  [40]
# --timeout-scale F multiplies every timeout (default 1; the CI test uses 4, for a loaded runner).
# Writes DIR/gpu-check.json (every step: command, exit code, status ok|failed|timeout, seconds, log file; the parity
# summary; the figures joined on their names) and DIR/gpu-check.md (the same as tables). DIR defaults to gpu-check-out.
#
# --device ilgpu-cpu --quick runs the same steps on ILGPU's CPU accelerator at the smallest sizes, where a ResNet-18
# would take minutes per image: parity with the lenet preset at batch 1, the harness's conv bench at batch 1, PGD-2 on
# lenet at batch 1, the PyTorch peer on the CPU (2 threads, --quick, conv batch 1, its PGD-2 on its ResNet-18 at batch
# 1). The CI test of this script (tests/Cli/GpuCheckScriptTests.cs) runs it that way with --pub at the test build.
# The exit code is 0 when every step passed, 1 when one failed (its log says why), 2 on bad usage.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
device=cuda quick=0 tarball="$root/.gpu/perturb.tgz" pub="" out=gpu-check-out python=${PYTHON:-python3} scale=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="${2:-}"; shift 2 ;;
    --quick) quick=1; shift ;;
    --tarball) tarball="${2:-}"; shift 2 ;;
    --pub) pub="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --python) python="${2:-}"; shift 2 ;;
    --timeout-scale) scale="${2:-}"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "error: gpu-check.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
case "$device" in cuda|ilgpu-cpu) ;; *) echo "error: gpu-check.sh: --device must be cuda or ilgpu-cpu, got '$device'" >&2; exit 2 ;; esac
[[ "$scale" =~ ^[0-9]+$ && "$scale" -ge 1 ]] || { echo "error: gpu-check.sh: --timeout-scale must be a positive integer, got '$scale'" >&2; exit 2; }
mkdir -p "$out" || { echo "error: gpu-check.sh: cannot create --out folder '$out'" >&2; exit 2; }
out="$(cd "$out" && pwd)"
steps_file="$out/steps.jsonl"
: >"$steps_file"
t_start=$(date +%s)

# The binaries: a published folder (--pub), else the tarball unpacked under DIR/pub.
if [[ -z "$pub" ]]; then
  if [[ ! -f "$tarball" ]]; then
    echo "error: gpu-check.sh: no self-contained build at '$tarball' (make it with perf/gpu-pack.sh, or pass --pub DIR)" >&2
    exit 2
  fi
  rm -rf "$out/pub" && tar xzf "$tarball" -C "$out" || { echo "error: gpu-check.sh: cannot unpack '$tarball'" >&2; exit 1; }
  pub="$out/pub"
fi
[[ -d "$pub" ]] || { echo "error: gpu-check.sh: --pub folder '$pub' does not exist" >&2; exit 2; }
pub="$(cd "$pub" && pwd)"
# An executable NAME in the folder, or NAME.dll run through dotnet (a framework-dependent build, as in the tests).
bin() {
  if [[ -x "$pub/$1" ]]; then echo "$pub/$1"
  elif [[ -f "$pub/$1.dll" ]] && command -v dotnet >/dev/null; then echo "dotnet $pub/$1.dll"
  else echo "missing-$1"; fi
}
perturb=$(bin perturb) perf=$(bin Perturb.Perf)

# run NAME TIMEOUT_S RESULT_FILE CMD...: one step, its output in DIR/NAME.log, one line of steps.jsonl.
failed=0
run() {
  local name=$1 limit=$(( $2 * scale )) result=$3; shift 3
  local t0 t1 rc status
  echo "[$(date -u +%H:%M:%S)] $name (timeout ${limit}s): $*" >&2
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  if [[ $rc -eq 0 ]]; then status=ok; elif [[ $rc -eq 124 || $rc -eq 137 ]]; then status=timeout; else status=failed; fi
  [[ $status == ok ]] || { failed=1; echo "  $name: $status (exit $rc); last lines of $out/$name.log:" >&2; tail -5 "$out/$name.log" >&2; }
  "$python" - "$steps_file" "$name" "$rc" "$status" "$t0" "$t1" "$limit" "$out/$name.log" "$result" "$*" <<'PY' || echo "{\"name\": \"$name\", \"rc\": $rc, \"status\": \"$status\"}" >>"$steps_file"
import json, sys
f, name, rc, status, t0, t1, limit, log, result, cmd = sys.argv[1:]
with open(f, "a") as fh:
    fh.write(json.dumps(dict(name=name, command=cmd, rc=int(rc), status=status, seconds=round(float(t1) - float(t0), 2),
                             timeout_s=int(limit), log=log, result=result or None)) + "\n")
PY
}

if [[ $quick -eq 1 ]]; then
  # ILGPU's CPU accelerator runs a ResNet-18 at minutes per image: the quick path keeps the steps, not the sizes.
  pmodel=lenet mbatch=1 harness=(conv --quick --conv-batch 1) pgd=(--model lenet --batch 1 --steps 2) tpgd=(--batch 1 --steps 2)
  tdev=(--device cpu --threads 2) tq=(--quick --batch 2 --conv-batch 1)
else
  pmodel=resnet18 mbatch=8 harness=(all) pgd=(--batch 512 --steps 20) tpgd=(--batch 512 --steps 20) tdev=(--device cuda) tq=()
fi
[[ $device == cuda ]] || tdev=(--device cpu --threads 2)
torch_bench="$here/peers/torch_bench.py"

run info 20 "$out/info.json" $perturb info --json "$out/info.json"
run parity 90 "$out/parity.json" $perturb parity --device "$device" --against cpu --model $pmodel --batch-size $mbatch --json "$out/parity.json"
run harness 150 "$out/perf-harness.json" $perf "${harness[@]}" --device "$device" --json "$out/perf-harness.json"
run torch-fp32 50 "$out/torch-fp32.json" "$python" "$torch_bench" "${tdev[@]}" "${tq[@]}" --json "$out/torch-fp32.json"
run torch-tf32 40 "$out/torch-tf32.json" "$python" "$torch_bench" "${tdev[@]}" "${tq[@]}" --tf32 --json "$out/torch-tf32.json"
run pgd 60 "$out/perf-pgd.json" $perf attack --device "$device" "${pgd[@]}" --json "$out/perf-pgd.json"
run pgd-torch 40 "$out/torch-pgd.json" "$python" "$torch_bench" "${tdev[@]}" --bench pgd "${tpgd[@]}" --json "$out/torch-pgd.json"

total=$(( $(date +%s) - t_start ))
"$python" - "$out" "$device" "$quick" "$total" <<'PY'
import json, os, sys, datetime
out, device, quick, total = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
def load(name):
    p = os.path.join(out, name)
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
def figs(j):
    return {f["name"]: f for f in (j or {}).get("figures", [])}
info, parity = load("info.json"), load("parity.json")
ours = {**figs(load("perf-harness.json")), **figs(load("perf-pgd.json"))}
fp32 = {**figs(load("torch-fp32.json")), **figs(load("torch-pgd.json"))}
tf32 = figs(load("torch-tf32.json"))
rows = []
for name, f in ours.items():
    if f.get("group") == "peak":
        continue
    r = dict(name=name, unit=f["unit"], perturb=f["value"])
    for key, side in (("torch_fp32", fp32), ("torch_tf32", tf32)):
        if name in side and side[name]["value"]:
            r[key] = side[name]["value"]
            r["ratio_" + key[6:]] = f["value"] / side[name]["value"]
    rows.append(r)
par = None
if parity:
    cases = parity.get("cases", [])
    worst = max((c for c in cases if c.get("max_scaled_diff") is not None), key=lambda c: c["max_scaled_diff"] / c["tolerance"] if c["tolerance"] else c["max_scaled_diff"], default=None)
    par = dict(device=parity.get("device_name"), against=parity.get("against_name"), cases=len(cases), failed=parity.get("failed"),
               failed_cases=[c["family"] + ": " + c["case"] for c in cases if not c["passed"]],
               worst=worst, model=[c for c in cases if c["family"] == "model"])
dev_name = next((d["name"] for d in (info or {}).get("devices", []) if d.get("kind") == device and d.get("available")), None)
res = dict(check="perf/gpu-check.sh", device=device, device_name=dev_name, quick=quick, total_seconds=total,
           date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           passed=all(s["status"] == "ok" for s in steps) and bool(parity and parity.get("passed")),
           steps=steps, parity=par, figures=rows)
tmp = os.path.join(out, "gpu-check.json.tmp")
json.dump(res, open(tmp, "w"), indent=2)
os.replace(tmp, os.path.join(out, "gpu-check.json"))
def n(v, fmt="{:.1f}"):
    return "" if v is None else fmt.format(v)
md = [f"# GPU check: {device} ({dev_name or 'device not listed'}){' --quick' if quick else ''}, {res['date']}, {total} s", "",
      "| step | status | seconds | command |", "|---|---|---|---|"]
md += [f"| {s['name']} | {s['status']}{'' if s['rc'] == 0 else ' (exit %d)' % s['rc']} | {s.get('seconds', '')} | `{s.get('command', '')}` |" for s in steps]
if par:
    md += ["", f"Parity {par['device']} against {par['against']}: {par['cases'] - (par['failed'] or 0)} of {par['cases']} cases agree"
           + (f"; FAILED: {', '.join(par['failed_cases'])}" if par["failed_cases"] else "") + "."]
    if par["worst"]:
        w = par["worst"]
        md.append(f"Closest to its tolerance: {w['family']} {w['case']}: {n(w['max_scaled_diff'], '{:.2e}')} (tol {w['tolerance']:g}).")
    md += [f"- {c['case']}: max |d| {n(c['max_abs_diff'], '{:.2e}')}, scaled {n(c['max_scaled_diff'], '{:.2e}')} (tol {c['tolerance']:g}) {'ok' if c['passed'] else 'FAILED'}" for c in par["model"]]
md += ["", "| figure | unit | Perturb | PyTorch TF32 off | ratio | PyTorch TF32 on | ratio |", "|---|---|---|---|---|---|---|"]
md += [f"| {r['name']} | {r['unit']} | {n(r['perturb'])} | {n(r.get('torch_fp32'))} | {n(r.get('ratio_fp32'), '{:.2f}')} | {n(r.get('torch_tf32'))} | {n(r.get('ratio_tf32'), '{:.2f}')} |" for r in rows]
open(os.path.join(out, "gpu-check.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
report=$?
[[ $report -eq 0 ]] || { echo "error: gpu-check.sh: could not write $out/gpu-check.json (python3 failed)" >&2; exit 1; }
echo "wrote $out/gpu-check.json and $out/gpu-check.md (${total}s)" >&2
exit $failed
