#!/usr/bin/env bash
# The issue-21 studies on the 1,507 materials pinned in docs/multitask/combined-1500/ids.txt, one
# after the other on one core beside the DFT batch: the cross-tier transfer curve, the multi-task
# study of the spin-polarized materials, the multi-task study of all. Every step is resumable
# (its cache is in its output folder), so rerunning this script after an interruption continues.
# Usage: setsid nohup bash scripts/issue21.sh > /tmp/issue21.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
ids=docs/multitask/combined-1500/ids.txt
rp=".venv/bin/rhoprop"
while pgrep -f "rhoprop study (transfer|multitask)" > /dev/null; do sleep 60; done  # one at a time
nice -n 5 bash scripts/retry.sh 20 60 "$rp" study transfer gpaw-v1,gpaw-scf-v1 \
    --out docs/benchmarks/transfer-1500 --only "ids:$ids" \
    --models mean,composition,density-invariants+composition,msa3dcnn-density+structure,msa3dcnn-density+structure+tier \
    || exit 1
nice -n 5 bash scripts/retry.sh 20 60 "$rp" study transfer gpaw-v1,gpaw-scf-v1 \
    --out docs/benchmarks/transfer-1500 --only "ids:$ids" --fractions 0,1 \
    --models mean,density-invariants,msa3dcnn-density,hybrid-density || exit 1
# the full report of every model above, from the cache (trains nothing)
"$rp" study transfer gpaw-v1,gpaw-scf-v1 --out docs/benchmarks/transfer-1500 --only "ids:$ids" \
    --cached-only \
    --models mean,composition,density-invariants,density-invariants+composition,msa3dcnn-density,msa3dcnn-density+structure,msa3dcnn-density+structure+tier,hybrid-density,hybrid-density+structure \
    || exit 1
nice -n 5 bash scripts/retry.sh 20 60 "$rp" study multitask gpaw-v1,gpaw-scf-v1 \
    --out docs/multitask/combined-1500/magnetic --folds 5 --preset benchmark \
    --only "has_spin and ids:$ids" \
    --targets magnetic_moment,volume_per_atom,density,total_energy,formation_energy,fermi_energy,band_gap,bandwidth \
    || exit 1
nice -n 5 bash scripts/retry.sh 20 60 "$rp" study multitask gpaw-v1,gpaw-scf-v1 \
    --out docs/multitask/combined-1500/study --folds 5 --preset benchmark --only "ids:$ids" \
    --targets volume_per_atom,bulk_modulus,density,total_energy,formation_energy,fermi_energy,band_gap,bandwidth,is_metal
