"""Cost of the phonon protocol: CPU time per displaced-supercell SCF, a cost model, an estimate.

Measured CPU seconds per SCF, a cost model fitted on them, and the estimated CPU hours of a whole
generation folder under a supercell rule.

Usage: ``.venv/bin/python bench/phonon_cost.py MEASURED_DIR [--folder data-gen/gpaw-v1]
[--edge 5] [--max-atoms 64]``. MEASURED_DIR holds phonon runs (``MEASURED_DIR/phonons``); their
displacement files give the CPU seconds of every SCF. The model is a least-squares fit of
log(CPU s per SCF) = log a + p·log(valence electrons in the supercell × spins) + q·log(irreducible
k-points of that displaced supercell's mesh, as GPAW's symmetry analysis counts them); the SCFs of
a material (symmetry-reduced displacements, plus the undisplaced cell where a site allows a force)
come from phonopy, their irreducible k-points from ``gpaw.symmetry``, without any SCF. Starting
magnetic moments are left out of the symmetry analysis (exact for ferromagnetic starts).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def irreducible_kpoints(atoms, kpts) -> int:
    """Irreducible k-points of the Γ-centred mesh ``kpts`` of ``atoms`` as GPAW counts them.

    GPAW's own symmetry analysis with its defaults (symmorphic operations only, time reversal,
    tolerance 10⁻⁷), no SCF. spglib's space group undercounts them for a displaced supercell
    (SrTiO₃ 6/6/10 against the 6/10/14 in GPAW's logs): GPAW drops operations with a fractional
    translation."""
    from gpaw.symmetry import Symmetry

    symmetry = Symmetry(atoms.get_atomic_numbers(), atoms.cell, atoms.pbc, tolerance=1e-7)
    symmetry.analyze(atoms.get_scaled_positions())
    bzk = np.indices(kpts).reshape(3, -1).T / np.array(kpts)
    return len(symmetry.reduce(bzk - (bzk > 0.5))[0])


def scf_cells(record: dict, protocol) -> tuple[list, list[int]]:
    """The supercells (ASE) a material's phonons compute, and the supercell k-mesh.

    Indexed like the displacement files: 0 is the undisplaced supercell (None where it is not
    computed), then the displaced ones."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from rhoprop.dft.calc import kpoint_mesh
    from rhoprop.dft.phonons import _ase, forces_can_be_nonzero, make_phonopy, source_protocol

    ph, _, _ = make_phonopy(
        AseAtomsAdaptor.get_atoms(Structure.from_dict(record["structure"])), protocol
    )
    cells = [_ase(ph.supercell) if forces_can_be_nonzero(ph) else None] + [
        _ase(c) for c in ph.supercells_with_displacements
    ]
    return cells, list(kpoint_mesh(_ase(ph.supercell), source_protocol(record)))


def measured(measured_dir: Path) -> list[dict]:
    """One row per computed SCF in ``measured_dir/phonons/displacements`` (finished or not)."""
    from rhoprop.dft.phonons import PhononProtocol

    phonons = measured_dir / "phonons"
    protocol = PhononProtocol.from_json(phonons / "protocol.json")
    rows = []
    for folder in sorted((phonons / "displacements").iterdir()):
        source = json.loads((measured_dir / "results" / f"{folder.name}.json").read_text())
        cells, kpts = scf_cells(source, protocol)
        spins = 2 if source["spin_polarized"] else 1
        electrons = source["scf"]["n_electrons"] * len(cells[-1]) / source["natoms"] * spins
        for disp in sorted(folder.glob("disp-*.json")):
            d = json.loads(disp.read_text())
            rows.append(
                {
                    "id": folder.name,
                    "natoms": len(cells[-1]),
                    "electrons": electrons,
                    "kpoints": irreducible_kpoints(cells[d["index"]], kpts),
                    "cpu_s": d["cpu_s"],
                }
            )
    return rows


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(a, p, q) of CPU s per SCF = a · electrons^p · kpoints^q."""
    x = np.array([[1.0, math.log(r["electrons"]), math.log(r["kpoints"])] for r in rows])
    y = np.array([math.log(r["cpu_s"]) for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(math.exp(coef[0])), float(coef[1]), float(coef[2])


def estimate(
    folder: Path, model: tuple[float, float, float], edge: float, max_atoms: int
) -> list[dict]:
    """Estimated CPU seconds of every crystal of ``folder`` under the rule (edge, max_atoms)."""
    from rhoprop.dft.labels import load_results
    from rhoprop.dft.phonons import PhononError, PhononProtocol

    protocol = PhononProtocol(min_supercell_edge_a=edge, max_atoms=max_atoms)
    a, p, q = model
    rows = []
    for rec in load_results(folder):
        if rec.get("kind", "crystal") != "crystal":
            continue
        try:
            cells, kpts = scf_cells(rec, protocol)
        except PhononError:
            rows.append({"id": rec["id"], "skipped": True})
            continue
        cells = [c for c in cells if c is not None]
        electrons = (
            rec["scf"]["n_electrons"]
            * len(cells[0])
            / rec["natoms"]
            * (2 if rec["spin_polarized"] else 1)
        )
        cpu = sum(a * electrons**p * irreducible_kpoints(c, kpts) ** q for c in cells)
        rows.append(
            {
                "id": rec["id"],
                "skipped": False,
                "natoms": len(cells[0]),
                "scfs": len(cells),
                "cpu_s": cpu,
            }
        )
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
    print(
        f"fit over {len(rows)} SCFs: CPU s/SCF = {a:.3g} · electrons^{p:.2f} · kpoints^{q:.2f}; "
        f"measured/fitted {ratio.min():.2f}-{ratio.max():.2f}"
    )
    est = estimate(args.folder, model, args.edge, args.max_atoms)
    done = [r for r in est if not r["skipped"]]
    hours = np.array([r["cpu_s"] for r in done]) / 3600
    order = np.sort(hours)
    print(
        f"rule: edge >= {args.edge} Å, at most {args.max_atoms} atoms; {len(done)} of {len(est)} "
        f"crystals ({len(est) - len(done)} cells alone exceed the cap)"
    )
    print(
        f"estimated CPU hours: all {hours.sum():.0f}, median {np.median(hours):.2f} per material, "
        f"cheapest 100 {order[:100].sum():.0f}, cheapest 300 {order[:300].sum():.0f}"
    )
    sizes: dict[int, list[dict]] = {}
    for r in done:
        sizes.setdefault(r["natoms"], []).append(r)
    print("| supercell atoms | materials | prototypes | SCFs each | median CPU h | total CPU h |")
    print("|---|---|---|---|---|---|")
    for n in sorted(sizes):
        group = sizes[n]
        hours_n = [r["cpu_s"] / 3600 for r in group]
        kinds = ", ".join(sorted({r["id"].split("-", 1)[-1] for r in group}))
        low, high = min(r["scfs"] for r in group), max(r["scfs"] for r in group)
        scfs = str(low) if low == high else f"{low}-{high}"
        median, total = np.median(hours_n), sum(hours_n)
        print(f"| {n} | {len(group)} | {kinds} | {scfs} | {median:.2f} | {total:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
