"""CPU seconds per material of the fast tier ``gpaw-scf-v1`` against ``gpaw-v1``, by atoms and spin.

Usage::

    .venv/bin/python bench/scf_speed.py --run --out /tmp/scf-speed  # compute the set, then table
    .venv/bin/python bench/scf_speed.py --out /tmp/scf-speed        # the table from result JSONs
    .venv/bin/python bench/scf_speed.py --out data-gen/gpaw-scf-v1 --classes-only  # whole batch
    .venv/bin/python bench/scf_speed.py --out data-gen/gpaw-scf-v1 --classes-only --shared-elements

The set (:data:`GOLD_IDS`, :data:`NEW_TYPES`): materials of ``data-gen/gpaw-v1`` with 1-5 atoms,
spin-polarized and not, recomputed from their input structures (same ids), and 6- and 8-atom cells
of the new structure types (``gpaw-v1`` has none that large). ``--run`` computes them with one
worker, no screening and no references (resumable). The table compares the median ``timing.cpu_s``
of the result JSONs per (atoms, spin) class with the median of every ``gpaw-v1`` result of that
class, and lists the materials both tiers computed. The first material of each worker process
includes loading GPAW, torch and CHGNet (printed separately: ``--startup``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GOLD_IDS = (
    "Al-fcc",
    "Cu-fcc",
    "Fe-bcc",
    "Fe-fcc",
    "Si-diamond",
    "MgO-rocksalt",
    "NaCl-rocksalt",
    "GaAs-zincblende",
    "FeAl-cscl",
    "FeSi-cscl",
    "Li2O-antifluorite",
    "MgCl2-fluorite",
    "CuFeAs-half_heusler",
    "Al3Ga-l12",
    "Cu3Fe-l12",
    "Cu2FeSi-full_heusler",
    "SrTiO3-perovskite",
    "LiMgCl3-perovskite",
    "LiFeCl3-perovskite",
)
NEW_TYPES = (
    ("rutile", ("Ti", "O")),
    ("mos2", ("Mo", "S")),
    ("rutile", ("Cr", "O")),
    ("a15", ("Nb", "Sn")),
    ("chalcopyrite", ("Cu", "In", "Se")),
    ("chalcopyrite", ("Cu", "Fe", "S")),
)


def bench_candidates(gold: Path) -> list:
    """The benchmark set: the gold materials that ``gold`` holds, then the new-type cells."""
    from rhoprop.dft.consistency import fast_tier_candidates
    from rhoprop.dft.enumerate import build_type, scf_material_id
    from rhoprop.dft.material import Candidate

    present = [i for i in GOLD_IDS if (gold / "results" / f"{i}.json").exists()]
    gold_candidates = [c for c in fast_tier_candidates(gold, present) if c.id in set(present)]
    new = [
        Candidate(scf_material_id(t, els), build_type(t, els), t, "bench") for t, els in NEW_TYPES
    ]
    return gold_candidates + new


def _records(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((folder / "results").glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("kind", "crystal") == "crystal" and "cpu_s" in rec.get("timing", {}):
            out[rec["id"]] = rec
    return out


def paired_table(fast: dict[str, dict], gold: dict[str, dict]) -> list[str]:
    """Markdown lines: per (atoms, spin) class, over the materials both tiers computed (same id),
    the median and the smallest of the per-material ratio gpaw-v1 CPU s / fast-tier CPU s."""
    ratios: dict[tuple[int, bool], list[float]] = defaultdict(list)
    for mid, rec in fast.items():
        if mid in gold:
            key = (rec["natoms"], bool(rec["spin_polarized"]))
            ratios[key].append(gold[mid]["timing"]["cpu_s"] / rec["timing"]["cpu_s"])
    lines = [
        "| atoms | spin | materials in both tiers | median speed-up | smallest speed-up |",
        "|---:|---|---:|---:|---:|",
    ]
    for (natoms, spin), r in sorted(ratios.items()):
        lines.append(
            f"| {natoms} | {'yes' if spin else 'no'} | {len(r)} | {statistics.median(r):.1f}x | "
            f"{min(r):.1f}x |"
        )
    every = [x for r in ratios.values() for x in r]
    if every:
        lines.append(
            f"| all | | {len(every)} | {statistics.median(every):.1f}x | {min(every):.1f}x |"
        )
    return lines


def speed_table(
    fast_dir: Path, gold_dir: Path, per_material: bool = True, shared_elements: bool = False
) -> str:
    """Markdown: median CPU s per material by (atoms, spin) for both tiers and their ratio; the
    same-material speed-ups per class; with ``per_material``, every material of ``fast_dir``; with
    ``shared_elements``, only the fast tier's materials made of elements ``gold_dir`` has (the same
    chemistry on both sides)."""
    fast, gold = _records(fast_dir), _records(gold_dir)
    if shared_elements:
        known = {el for rec in gold.values() for el in rec["composition"]}
        fast = {k: r for k, r in fast.items() if set(r["composition"]) <= known}
    groups: dict[tuple[int, bool], dict[str, list[float]]] = defaultdict(
        lambda: {"fast": [], "gold": []}
    )
    for tier, recs in (("fast", fast), ("gold", gold)):
        for rec in recs.values():
            groups[(rec["natoms"], bool(rec["spin_polarized"]))][tier].append(
                rec["timing"]["cpu_s"]
            )
    lines = [
        "| atoms | spin | gpaw-scf-v1 materials | median CPU s | gpaw-v1 materials | median CPU s "
        "| ratio |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (natoms, spin), g in sorted(groups.items()):
        if not g["fast"]:
            continue
        f = statistics.median(g["fast"])
        gm = statistics.median(g["gold"]) if g["gold"] else None
        ratio = f"1/{gm / f:.1f}" if gm else "–"
        lines.append(
            f"| {natoms} | {'yes' if spin else 'no'} | {len(g['fast'])} | {f:.1f} | "
            f"{len(g['gold'])} | "
            f"{'–' if gm is None else f'{gm:.0f}'} | {ratio} |"
        )
    lines += ["", *paired_table(fast, gold)]
    if not per_material:
        return "\n".join(lines)
    lines += [
        "",
        "| material | atoms | spin | gpaw-scf-v1 CPU s (CHGNet CPU s) | gpaw-v1 CPU s | ratio "
        "| IBZ k |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for mid, rec in sorted(fast.items(), key=lambda kv: (kv[1]["natoms"], kv[0])):
        g = gold.get(mid)
        f = rec["timing"]["cpu_s"]
        gcpu = g["timing"]["cpu_s"] if g else None
        lines.append(
            f"| {mid} | {rec['natoms']} | {'yes' if rec['spin_polarized'] else 'no'} | {f:.1f} "
            f"({rec['chgnet']['cpu_s']:.1f}) | {'–' if gcpu is None else f'{gcpu:.0f}'} | "
            f"{'–' if gcpu is None else f'1/{gcpu / f:.1f}'} | {rec.get('ibz_kpoints', '–')} |"
        )
    return "\n".join(lines)


def startup_cpu_seconds() -> float:
    """CPU seconds a fresh worker spends importing GPAW and loading CHGNet (once per worker)."""
    code = (
        "import time; t = time.process_time(); import gpaw, gpaw.new.ase_interface; "
        "from rhoprop.dft.scf import chgnet_calculator; chgnet_calculator('0.3.0'); "
        "print(time.process_time() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    """Optionally compute the benchmark set, then print the speed table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/scf-speed"))
    parser.add_argument("--gold", type=Path, default=Path("data-gen/gpaw-v1"))
    parser.add_argument("--run", action="store_true", help="compute the set first (resumable)")
    parser.add_argument(
        "--startup", action="store_true", help="also measure a worker's start-up CPU time"
    )
    parser.add_argument("--only", default="", help="comma-separated ids of the set to compute")
    parser.add_argument(
        "--classes-only",
        action="store_true",
        help="leave out the per-material table (for a whole batch folder)",
    )
    parser.add_argument(
        "--shared-elements",
        action="store_true",
        help="only the fast tier's materials made of elements the gold tier has",
    )
    args = parser.parse_args()
    if args.run:
        from rhoprop.dft import SCFProtocol, generate

        candidates = bench_candidates(args.gold)
        if args.only:
            candidates = [c for c in candidates if c.id in set(args.only.split(","))]
        report = generate(candidates, args.out, protocol=SCFProtocol(), max_minutes=60)
        print(
            f"computed {len(report.computed)}, skipped {len(report.skipped)}, "
            f"failed {report.failed}"
        )
    print(
        speed_table(
            args.out, args.gold, not args.classes_only, shared_elements=args.shared_elements
        )
    )
    if args.startup:
        print(f"\nworker start-up (import GPAW, load CHGNet): {startup_cpu_seconds():.1f} CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
