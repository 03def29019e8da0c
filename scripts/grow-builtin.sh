#!/usr/bin/env bash
# Append what a DFT batch has finished since the last append to a built-in store (one new
# append-only shard; stored materials are skipped), then rewrite its datasheet tables and figures.
# Usage: bash scripts/grow-builtin.sh TIER      (TIER: gpaw-v1 or gpaw-scf-v1)
# The batch may keep running. Commit data-gen/TIER, src/rhoprop/datasets/data/TIER and
# docs/data/TIER together, and update the counts in docs/data.md.
set -uo pipefail
cd "$(dirname "$0")/.."
tier=${1:?usage: grow-builtin.sh TIER}
rhoprop=.venv/bin/rhoprop
store=src/rhoprop/datasets/data/$tier
$rhoprop generate --labels --out "data-gen/$tier" || exit 1
# A fresh clone has no CHGCARs (they are not committed): an empty folder still merges the labels of
# stored materials (new phonon labels, for example) without rewriting any shard.
mkdir -p "data-gen/$tier/chgcar"
# Every built-in tier is standardized the same way, so that they train together
# (rhoprop train gpaw-v1,gpaw-scf-v1): n 32, 10 Å cube on a canonical site, total and spin, asinh
# 0.05, q16 at quantum 0.03. An existing store keeps its own settings (the options must match).
# The built-in store is read-only for users; its maintainers append with RHOPROP_WRITE_BUILTIN=1.
# Exit code 3 only says that something was skipped (labels of stored materials have no CHGCAR here,
# a CHGCAR whose result is still being written has no label yet); the build report lists each.
RHOPROP_WRITE_BUILTIN=1 $rhoprop dataset build "data-gen/$tier/chgcar" --labels "data-gen/$tier/labels.csv" \
    --schema "data-gen/$tier/targets.json" --out "$store" --n 32 --edge 10 --channels total,spin \
    --transform asinh --scale 0.05 --origin site --dtype q16 --quantum 0.03 --workers 1 --no-progress
rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
if [ ! -f "$store/splits/default.json" ]; then
    RHOPROP_WRITE_BUILTIN=1 $rhoprop dataset split "$store" --method random --fractions 0.8,0.1,0.1 --seed 0
else  # save the split's extension to the appended materials (same rule and seed)
    RHOPROP_WRITE_BUILTIN=1 $rhoprop dataset split "$store" --method random --fractions 0.8,0.1,0.1 --seed 0 2>/dev/null
fi
$rhoprop dataset info "$tier" | head -n 3
$rhoprop analyze datasheet "$tier" --materials "data-gen/$tier/materials.csv" --out "docs/data/$tier" || exit 1
$rhoprop analyze targets "$tier" --out "docs/data/$tier/targets"
