#!/usr/bin/env bash
# Builds the self-contained linux-x64 folder that perf/gpu-check.sh runs on a machine without .NET: the CLI
# (`perturb`) and the benchmark harness (`Perturb.Perf`) published side by side into one folder with the .NET runtime,
# packed as .gpu/perturb.tgz (the folder `pub/` inside). Usage: perf/gpu-pack.sh [TARBALL]   (default .gpu/perturb.tgz)
set -euo pipefail
cd "$(dirname "$0")/.."
tarball=${1:-.gpu/perturb.tgz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dotnet publish cli -c Release -r linux-x64 --self-contained -v q -nologo -o "$stage/pub"
dotnet publish perf -c Release -r linux-x64 --self-contained -v q -nologo -o "$stage/pub"
mkdir -p "$(dirname "$tarball")"
tar czf "$tarball.tmp" -C "$stage" pub
mv "$tarball.tmp" "$tarball"
echo "wrote $tarball ($(du -h "$tarball" | cut -f1)); run perf/gpu-check.sh on the GPU machine" >&2
