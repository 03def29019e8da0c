#!/usr/bin/env bash
# Issue 15's benchmark on the gold tier alone, rerun as gpaw-v1 grows: every gpaw-v1 material in
# the built-in store, pinned in OUT/ids.txt by the first run (so reruns keep their folds while the
# store grows), 5 folds grouped by formula, every target with 30+ labels, every default model (mean,
# composition, density invariants [+ composition], CGCNN, both MSA-3DCNN variants, the hybrid),
# with the networks' published recipe (the default since 2026-12-08: compact, L1, 60 cosine
# epochs) and learning curves of the fast models. Resumable: the cache is in OUT.
# Usage: setsid nohup bash scripts/gold-benchmark.sh docs/benchmarks/gpaw-v1-N > /tmp/goldb.log 2>&1 &
# (after bash scripts/grow-builtin.sh gpaw-v1)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gold-benchmark.sh OUT}
bash scripts/pinned-benchmark.sh "$out" gpaw-v1 "" \
    --curve-models mean,composition,density-invariants+composition \
    --models mean,composition,density-invariants,density-invariants+composition,cgcnn,msa3dcnn-density,msa3dcnn-density+structure,hybrid-density,hybrid-density+structure
