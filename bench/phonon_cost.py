"""Cost of the phonon protocol: measured CPU time per displaced-supercell SCF, a fitted cost model, and
the estimated CPU hours of a whole generation folder under a supercell rule.

Usage: ``.venv/bin/python bench/phonon_cost.py MEASURED_DIR [--folder data-gen/gpaw-v1]
[--edge 5] [--max-atoms 64]``. MEASURED_DIR holds phonon runs (``MEASURED_DIR/phonons``); their
displacement files give the CPU seconds of every SCF. The model is a least-squares fit of
log(CPU s per SCF) = log a + p·log(valence electrons in the supercell × spins) + q·log(k-points of
the full supercell mesh); the number of SCFs per material (symmetry-reduced displacements, plus
the undisplaced cell where a site allows a force) comes from phonopy, without GPAW.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def measured(measured_dir: Path) -> list[dict]:
    """One row per computed SCF of the phonon runs in ``measured_dir``."""
    rows = []
    for path in sorted((measured_dir / "phonons" / "results").glob("*.json")):
        rec = json.loads(path.read_text())
        source = json.loads((measured_dir / "results" / f"{rec['id']}.json").read_text())
        cells = rec["natoms_supercell"] / source["natoms"]
        electrons = source["scf"]["n_electrons"] * cells * (2 if rec["spin_polarized"] else 1)
        kpoints = math.prod(rec["kpts_supercell"])
        for disp in sorted((measured_dir / "phonons" / "displacements" / rec["id"]).glob("disp-*.json")):
            d = json.loads(disp.read_text())
            rows.append({"id": rec["id"], "natoms": rec["natoms_supercell"], "electrons": electrons,
                         "kpoints": kpoints, "cpu_s": d["cpu_s"]})
    return rows


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(a, p, q) of CPU s per SCF = a · electrons^p · kpoints^q."""
    x = np.array([[1.0, math.log(r["electrons"]), math.log(r["kpoints"])] for r in rows])
    y = np.array([math.log(r["cpu_s"]) for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(math.exp(coef[0])), float(coef[1]), float(coef[2])


def estimate(folder: Path, model: tuple[float, float, float], edge: float, max_atoms: int) -> list[dict]:
    """Estimated CPU seconds of every crystal of ``folder`` under the rule (edge, max_atoms)."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from rhoprop.dft.calc import kpoint_mesh
    from rhoprop.dft.labels import load_results
    from rhoprop.dft.phonons import PhononError, PhononProtocol, _ase, forces_can_be_nonzero, make_phonopy

    protocol = PhononProtocol(min_supercell_edge_a=edge, max_atoms=max_atoms)
    a, p, q = model
    rows = []
    for rec in load_results(folder):
        if rec.get("kind", "crystal") != "crystal":
            continue
        atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(rec["structure"]))
        try:
            ph, n, _ = make_phonopy(atoms, protocol)
        except PhononError:
            rows.append({"id": rec["id"], "skipped": True})
            continue
        from rhoprop.dft.protocol import DFTProtocol

        kpts = kpoint_mesh(_ase(ph.supercell), DFTProtocol.from_dict(rec["protocol"]))
        scfs = len(ph.supercells_with_displacements) + int(forces_can_be_nonzero(ph))
        electrons = rec["scf"]["n_electrons"] * math.prod(n) * (2 if rec["spin_polarized"] else 1)
        per_scf = a * electrons**p * math.prod(kpts) ** q
        rows.append({"id": rec["id"], "skipped": False, "natoms": len(ph.supercell), "scfs": scfs,
                     "cpu_s": scfs * per_scf})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the fit and the estimate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measured_dir", type=Path)
    parser.add_argument("--folder", type=Path, default=Path("data-gen/gpaw-v1"))
    parser.add_argument("--edge", type=float, default=5.0)
    parser.add_argument("--max-atoms", type=int, default=64)
    args = parser.parse_args(argv)
    rows = measured(args.measured_dir)
    if len(rows) < 3:
        print(f"need at least 3 measured SCFs in {args.measured_dir}/phonons, found {len(rows)}")
        return 2
    model = fit(rows)
    a, p, q = model
    pred = [a * r["electrons"] ** p * r["kpoints"] ** q for r in rows]
    ratio = np.array([r["cpu_s"] / e for r, e in zip(rows, pred, strict=True)])
    print(f"fit over {len(rows)} SCFs: CPU s/SCF = {a:.3g} · electrons^{p:.2f} · kpoints^{q:.2f}; "
          f"measured/fitted {ratio.min():.2f}-{ratio.max():.2f}")
    est = estimate(args.folder, model, args.edge, args.max_atoms)
    done = [r for r in est if not r["skipped"]]
    hours = np.array([r["cpu_s"] for r in done]) / 3600
    order = np.sort(hours)
    print(f"rule: edge >= {args.edge} Å, at most {args.max_atoms} atoms; {len(done)} of {len(est)} crystals "
          f"({len(est) - len(done)} cells alone exceed the cap)")
    print(f"estimated CPU hours: all {hours.sum():.0f}, median {np.median(hours):.2f} per material, "
          f"cheapest 100 {order[:100].sum():.0f}, cheapest 300 {order[:300].sum():.0f}")
    sizes: dict[int, list[float]] = {}
    for r in done:
        sizes.setdefault(r["natoms"], []).append(r["cpu_s"] / 3600)
    print("| supercell atoms | materials | median CPU h | total CPU h |")
    print("|---|---|---|---|")
    for n in sorted(sizes):
        print(f"| {n} | {len(sizes[n])} | {np.median(sizes[n]):.2f} | {sum(sizes[n]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
