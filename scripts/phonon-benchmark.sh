#!/usr/bin/env bash
# Issue 19's classification benchmark: every material of the two built-in tiers that has a phonon
# label, pinned in OUT/ids.txt by the first run (so reruns keep their folds while the stores grow),
# 5 folds grouped by formula, the phonon targets only, every default model (mean, composition,
# density invariants [+ composition], CGCNN, both MSA-3DCNN variants, the hybrid). Resumable: the
# benchmark's cache is in OUT, and a rerun continues where an interrupted one stopped.
# Usage: setsid nohup bash scripts/phonon-benchmark.sh docs/benchmarks/phonons-N > /tmp/phb.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: phonon-benchmark.sh OUT}
# the recipe of the published gpaw-v1 benchmark (compact network, L1 loss, 60 cosine epochs; its
# settings.json), every model of today's benchmark, the phonon targets only
bash scripts/pinned-benchmark.sh "$out" gpaw-v1,gpaw-scf-v1 labelled:dynamically_stable \
    --config docs/benchmarks/gpaw-v1-17/settings.json --targets dynamically_stable,min_frequency \
    --models mean,composition,density-invariants,density-invariants+composition,cgcnn,msa3dcnn-density,msa3dcnn-density+structure,hybrid-density,hybrid-density+structure
