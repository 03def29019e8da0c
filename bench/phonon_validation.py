"""Validation and cost table of the phonon protocol (gpaw-phonon-v1), from a run's results.

Usage: ``.venv/bin/python bench/phonon_validation.py [DIR] [--markdown]`` (DIR is a generation
folder whose ``phonons/results`` hold the runs, e.g. ``/tmp/phonons-validation`` made by
``rhoprop generate --phonons --out DIR --only Si-diamond,Al-fcc,...`` on copies of the gpaw-v1
results). Nothing is recomputed.

* Frequencies (THz) at Γ, X and L against measured phonon frequencies (criterion: within 10 %; PBE
  at its own, 0.4-1.8 % larger lattice constant is expected 0-6 % soft). Γ optical modes are TO
  modes: no non-analytic (LO-TO) correction is applied, so MgO and NaCl are compared at Γ TO only.
* Materials expected dynamically unstable in their given structure must come out unstable.
* Cost: CPU seconds per material and per displaced-supercell SCF, by supercell size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# id -> (label, {point: reference frequencies in THz, ascending}, source)
REFERENCE: dict[str, tuple[str, dict[str, list[float]], str]] = {
    "Si-diamond": (
        "Si",
        {
            "Γ": [15.53, 15.53, 15.53],
            "X": [4.49, 4.49, 12.32, 12.32, 13.90, 13.90],
            "L": [3.43, 3.43, 11.35, 12.60, 14.68, 14.68],
        },
        "neutron, 296 K: Nilsson & Nelin, Phys. Rev. B 6, 3777 (1972)",
    ),
    "Al-fcc": (
        "Al",
        {"X": [5.8, 5.8, 9.7], "L": [4.2, 4.2, 9.7]},
        "neutron, 80 K: Stedman & Nilsson, Phys. Rev. 145, 492 (1966)",
    ),
    "MgO-rocksalt": (
        "MgO",
        {"Γ": [12.02, 12.02, 12.02]},
        "infrared TO 401 cm⁻¹, 295 K: Jasperse et al., Phys. Rev. 146, 526 (1966)",
    ),
    "NaCl-rocksalt": (
        "NaCl",
        {"Γ": [4.92, 4.92, 4.92]},
        "infrared TO 164 cm⁻¹, room temperature (anharmonically softened)",
    ),
}

# id -> why it is expected dynamically unstable in the given structure
UNSTABLE: dict[str, str] = {
    "Ti-bcc": "bcc Ti is unstable at 0 K in DFT (N-point and ω-type modes; stabilised only by "
    "anharmonicity above 1155 K): Persson et al., Phys. Rev. B 61, 11221 (2000)",
    "Cu-bcc": "bcc Cu has c11 < c12 (tetragonal shear instability) in DFT: Kraft et al., "
    "Phys. Rev. B 48, 5886 (1993)",
    "Al-sc": "simple-cubic Al (hypothetical): no restoring force against shear of the cube",
    "Al-bcc": "bcc Al (hypothetical): tetragonal shear instability (c' < 0)",
    "SiO2-fluorite": "Born-unstable in gpaw-v1 itself (c12 = -61, c44 = -104 GPa)",
    "MgCl2-fluorite": "Born-unstable in gpaw-v1 itself (c44 = -16 GPa)",
    "SrTiO3-perovskite": "cubic SrTiO3 is a 0 K saddle point: the real crystal turns tetragonal "
    "at about 105 K by octahedral rotations (R point) and is an incipient ferroelectric (soft "
    "polar Γ mode)",
}


def special_points(record: dict) -> dict[str, list[float]]:
    """Frequencies at the labelled points of a stored band path (see rhoprop.dft.phonons)."""
    from rhoprop.dft.phonons import special_point_frequencies

    return special_point_frequencies(record)


def _optical_at_gamma(freqs: list[float]) -> list[float]:
    """The frequencies at Γ without the three acoustic (zero) modes."""
    by_size = sorted(range(len(freqs)), key=lambda i: abs(freqs[i]))
    return sorted(freqs[i] for i in by_size[3:])


def validation_rows(results: Path) -> list[dict]:
    """One row per (material, q-point) of the reference table found in ``results``."""
    rows = []
    for mid, (label, points, source) in REFERENCE.items():
        path = results / f"{mid}.json"
        if not path.exists():
            rows.append({"material": label, "point": "-", "missing": True})
            continue
        rec = json.loads(path.read_text())
        found = special_points(rec)
        for point, ref in points.items():
            ours = found["Γ"] if point == "Γ" else found[point]
            ours = _optical_at_gamma(ours) if point == "Γ" else sorted(ours)
            ours = ours[: len(ref)] if point != "Γ" else ours[-len(ref) :]
            errors = [100 * (o - r) / r for o, r in zip(ours, ref, strict=True)]
            rows.append(
                {
                    "material": label,
                    "point": point,
                    "ours": ours,
                    "ref": ref,
                    "max_err_pct": max(errors, key=abs),
                    "ok": all(abs(e) <= 10 for e in errors),
                    "source": source,
                    "missing": False,
                    "supercell": rec["natoms_supercell"],
                    "kpts": rec["kpts_supercell"],
                }
            )
    return rows


def unstable_rows(results: Path) -> list[dict]:
    """One row per expected-unstable material found in ``results``."""
    rows = []
    for mid, why in UNSTABLE.items():
        path = results / f"{mid}.json"
        if path.exists():
            rec = json.loads(path.read_text())
            rows.append(
                {
                    "id": mid,
                    "stable": rec["dynamically_stable"],
                    "min": rec["min_frequency_thz"],
                    "q": rec["min_frequency_q"],
                    "supercell": rec["natoms_supercell"],
                    "why": why,
                }
            )
    return rows


def cost_rows(results: Path) -> list[dict]:
    """CPU time of every phonon result in ``results``, by supercell size."""
    rows = []
    for path in sorted(results.glob("*.json")):
        rec = json.loads(path.read_text())
        disp = [
            json.loads(p.read_text())
            for p in sorted((results.parent / "displacements" / rec["id"]).glob("disp-*.json"))
        ]
        scf = [d["cpu_s"] for d in disp]
        rows.append(
            {
                "id": rec["id"],
                "natoms": rec["natoms_supercell"],
                "kpts": rec["kpts_supercell"],
                "n_scf": len(scf),
                "cpu_s": sum(scf),
                "cpu_per_scf": sum(scf) / max(1, len(scf)),
                "wall_per_scf": sum(d["wall_s"] for d in disp) / max(1, len(disp)),
                "metal_like": rec["electronic_protocol"].get("smearing_width_ev"),
                "stable": rec["dynamically_stable"],
                "min": rec["min_frequency_thz"],
            }
        )
    return sorted(rows, key=lambda r: (r["natoms"], r["id"]))


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in dict.fromkeys(round(v, 2) for v in values))


def main(argv: list[str] | None = None) -> int:
    """Print the three tables; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="/tmp/phonons-validation")
    parser.add_argument("--markdown", action="store_true", help="(tables are always markdown)")
    args = parser.parse_args(argv)
    results = Path(args.out_dir) / "phonons" / "results"
    if not results.is_dir():
        print(
            f"{results} does not exist: run `rhoprop generate --phonons --out {args.out_dir}` first"
        )
        return 2
    ok = True
    print(
        "| material | point | ours (THz) | measured (THz) | max error | supercell | k-mesh | pass |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in validation_rows(results):
        if r["missing"]:
            print(f"| {r['material']} | – | not computed | | | | | |")
            continue
        ok &= r["ok"]
        print(
            f"| {r['material']} | {r['point']} | {_fmt(r['ours'])} | {_fmt(r['ref'])} | "
            f"{r['max_err_pct']:+.1f}% | {r['supercell']} | {'×'.join(map(str, r['kpts']))} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    print("\n| expected unstable | found | min frequency (THz) | at q | supercell | why expected |")
    print("|---|---|---|---|---|---|")
    for r in unstable_rows(results):
        ok &= not r["stable"]
        q = "(" + ", ".join(f"{x:.3g}" for x in r["q"]) + ")"
        found = "stable (MISS)" if r["stable"] else "unstable"
        print(f"| {r['id']} | {found} | {r['min']:.2f} | {q} | {r['supercell']} | {r['why']} |")
    print(
        "\n| material | supercell atoms | k-mesh | SCFs | CPU s/SCF | wall s/SCF | CPU s total "
        "| stable | min (THz) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in cost_rows(results):
        print(
            f"| {r['id']} | {r['natoms']} | {'×'.join(map(str, r['kpts']))} | {r['n_scf']} | "
            f"{r['cpu_per_scf']:.0f} | {r['wall_per_scf']:.0f} | {r['cpu_s']:.0f} | "
            f"{'yes' if r['stable'] else 'no'} | {r['min']:.2f} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
