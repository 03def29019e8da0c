"""Validation table of the GPAW protocol against experiment and plane-wave PBE, read from a batch folder.

Usage: ``.venv/bin/python bench/dft_validation.py [DIR] [--markdown]`` (DIR defaults to
``data-gen/gpaw-v1``). Nothing is recomputed: the validation materials are the first ones of the
prototype enumeration, so the batch output doubles as the validation run. Criteria: lattice constant
within 3 % and bulk modulus within 25 % of experiment; band gap within 0.3 eV of plane-wave PBE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

# id -> (label, experimental a Å, experimental B GPa, plane-wave PBE gap eV or None)
REFERENCE = {
    "Si-diamond": ("Si", 5.431, 99, 0.6),
    "NaCl-rocksalt": ("NaCl", 5.595, 27, 5.0),
    "MgO-rocksalt": ("MgO", 4.207, 165, 4.5),
    "Al-fcc": ("Al", 4.019, 79, None),
    "C-diamond": ("C", 3.567, 443, 4.1),
    "LiF-rocksalt": ("LiF", 4.010, 70, 8.9),
    "GaAs-zincblende": ("GaAs", 5.653, 76, None),
}


def conventional_a(record: dict) -> float:
    """Cubic lattice constant (Å) of the conventional cell of a result's equilibrium structure."""
    s = Structure.from_dict(record["structure"])
    return float(SpacegroupAnalyzer(s, symprec=0.01).get_conventional_standard_structure().lattice.a)


def rows(out_dir: Path) -> list[dict]:
    """One row per validation material found in ``out_dir/results``."""
    table = []
    for mid, (label, a_exp, b_exp, gap_ref) in REFERENCE.items():
        path = out_dir / "results" / f"{mid}.json"
        if not path.exists():
            table.append({"material": label, "missing": True})
            continue
        rec = json.loads(path.read_text())
        a = conventional_a(rec)
        b = rec["eos"]["bulk_modulus_gpa"]
        gap = rec["scf"]["band_gap"]
        row = {
            "material": label, "missing": False, "a": a, "a_exp": a_exp, "a_err_pct": 100 * (a - a_exp) / a_exp,
            "B": b, "B_exp": b_exp, "B_err_pct": 100 * (b - b_exp) / b_exp, "gap": gap, "gap_ref": gap_ref,
            "c11": (rec.get("elastic") or {}).get("c11"), "c12": (rec.get("elastic") or {}).get("c12"),
            "c44": (rec.get("elastic") or {}).get("c44"), "seconds": rec["timing"]["total_s"],
        }
        row["ok"] = (abs(row["a_err_pct"]) <= 3 and abs(row["B_err_pct"]) <= 25
                     and (gap_ref is None or abs(gap - gap_ref) <= 0.3))
        table.append(row)
    return table


def markdown(table: list[dict]) -> str:
    """The validation table as markdown."""
    lines = ["| material | a (Å) | a exp | Δa | B (GPa) | B exp | ΔB | gap (eV) | PBE ref | c11/c12/c44 (GPa) | "
             "time (s) | pass |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        if r["missing"]:
            lines.append(f"| {r['material']} | not computed yet | | | | | | | | | | |")
            continue
        ref = "–" if r["gap_ref"] is None else f"{r['gap_ref']:.1f}"
        el = "–" if r["c11"] is None else f"{r['c11']:.0f}/{r['c12']:.0f}/{r['c44']:.0f}"
        lines.append(
            f"| {r['material']} | {r['a']:.3f} | {r['a_exp']:.3f} | {r['a_err_pct']:+.1f}% | {r['B']:.0f} | "
            f"{r['B_exp']} | {r['B_err_pct']:+.0f}% | {r['gap']:.2f} | {ref} | {el} | {r['seconds']:.0f} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Print the table; exit 1 when a computed material misses a criterion."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", nargs="?", default="data-gen/gpaw-v1", type=Path)
    args = parser.parse_args()
    table = rows(args.out_dir)
    print(markdown(table))
    return 0 if all(r["missing"] or r["ok"] for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
