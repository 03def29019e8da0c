#!/usr/bin/env bash
# A resumable `rhoprop benchmark` of a pinned set of materials: the first run writes the ids that
# SELECTOR picks from DATASET (every sample when SELECTOR is empty) to OUT/ids.txt, and every run
# benchmarks exactly those, so reruns keep their folds while the built-in stores grow. The cache
# is in OUT; an interrupted run continues where it stopped (retried up to 20 times).
# Usage: bash scripts/pinned-benchmark.sh OUT DATASET SELECTOR [rhoprop benchmark options...]
set -uo pipefail
cd "$(dirname "$0")/.."
usage="usage: pinned-benchmark.sh OUT DATASET SELECTOR [options...]"
out=${1:?$usage}
dataset=${2:?$usage}
only=${3?$usage}
shift 3
rp=.venv/bin/rhoprop
mkdir -p "$out"
if [ ! -f "$out/ids.txt" ]; then
    $rp dataset ids "$dataset" ${only:+--only "$only"} --out "$out/ids.txt" || exit 1
fi
nice -n 5 bash scripts/retry.sh 20 60 "$rp" benchmark "$dataset" --out "$out" \
    --only "ids:$out/ids.txt" "$@"
