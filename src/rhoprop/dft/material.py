"""One material end to end: EOS → SCF at V0 → elastic constants → CHGCAR, structure and result JSON.

Outputs of material ``<id>`` under the output folder ``DIR``::

    DIR/chgcar/<id>.CHGCAR          valence (pseudo + compensation) density, VASP convention ρ·V,
                                    spin block
    DIR/structures/<id>.cif, .vasp  equilibrium structure
    DIR/logs/<id>.txt               GPAW text output of every calculation of the material
    DIR/results/<id>.json           raw results and the protocol (written last: its presence = done)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

import rhoprop
from rhoprop.dft.calc import (
    SCFResult,
    converge,
    material_scope,
    relax_positions,
    run_elastic_cubic,
    run_energy,
    run_eos,
    run_scf,
)
from rhoprop.dft.protocol import DFTProtocol, GPAWProtocol
from rhoprop.errors import RhopropError
from rhoprop.settings import atomic_write_bytes, atomic_write_text

SYMPREC = 0.01


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A structure to compute: ``id`` names its output files; ``prototype`` says where it came
    from."""

    id: str
    structure: Structure
    prototype: str = "user"
    source: str = ""


def result_path(out_dir: Path, material_id: str) -> Path:
    """Where the result JSON of ``material_id`` lives (it marks the material done, with its CHGCAR
    for a crystal)."""
    return Path(out_dir) / "results" / f"{material_id}.json"


def chgcar_path(out_dir: Path, material_id: str) -> Path:
    """Where the CHGCAR of ``material_id`` is written."""
    return Path(out_dir) / "chgcar" / f"{material_id}.CHGCAR"


def calculation_structure(structure: Structure) -> tuple[Structure, bool]:
    """Return the structure to compute and whether it is cubic with cubic axes along x, y, z.

    Cubic structures are replaced by their standard primitive cell (cubic axes along Cartesian axes,
    needed for c11/c12/c44); others are computed as given.
    """
    sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    if sga.get_crystal_system() != "cubic":
        return structure.copy(), False
    prim = sga.get_primitive_standard_structure()
    conv = sga.get_conventional_standard_structure().lattice.matrix
    aligned = bool(np.allclose(conv, np.diag(np.diag(conv)), atol=1e-6))
    return prim, aligned


def write_chgcar(
    structure: Structure, density: np.ndarray, magnetization: np.ndarray | None, path: Path
) -> None:
    """Write a density (e/Å³) and magnetization (μB/Å³) as a CHGCAR, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        from rhoprop.io import Density
        from rhoprop.io import write_chgcar as io_write_chgcar

        io_write_chgcar(
            Density(total=density, structure=structure, spin=magnetization, code="gpaw"), tmp
        )
    except ImportError:
        from pymatgen.io.vasp import Chgcar, Poscar

        data = {"total": density * structure.volume}
        if magnetization is not None:
            data["diff"] = magnetization * structure.volume
        Chgcar(Poscar(structure), data).write_file(str(tmp))
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink(missing_ok=True)


def symmetry_info(structure: Structure) -> dict[str, Any]:
    """Crystal system and space group (spglib through pymatgen, symprec 0.01 Å)."""
    sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    return {
        "crystal_system": sga.get_crystal_system(),
        "spacegroup_number": int(sga.get_space_group_number()),
        "spacegroup_symbol": sga.get_space_group_symbol(),
        "symprec": SYMPREC,
    }


def compute_molecule(
    candidate: Candidate,
    out_dir: str | Path,
    protocol: GPAWProtocol | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Relax a molecule in a box (Γ point only, fixed box) for an elemental reference energy.

    Writes only the result JSON (``kind`` = ``"molecule"``, plus the ``extra`` fields): a molecule
    is a formation-energy reference, not a crystal of the dataset. Oxygen starts with 1 μB per atom
    (triplet O2).
    """
    protocol = protocol or DFTProtocol()
    out = Path(out_dir)
    mid = candidate.id
    t_start, cpu_start = time.perf_counter(), time.process_time()
    atoms = AseAtomsAdaptor.get_atoms(candidate.structure)
    spinpol = "O" in atoms.get_chemical_symbols()
    atoms.set_initial_magnetic_moments([1.0 if spinpol else 0.0] * len(atoms))
    log_path = out / "logs" / f"{mid}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as txt, material_scope() as scfs:
        converge(atoms, protocol, (1, 1, 1), txt, spinpol)
        steps, fmax = relax_positions(atoms, protocol, txt)
        energy = run_energy(atoms)
    moment = float(atoms.calc.get_magnetic_moment()) if spinpol else 0.0
    final = AseAtomsAdaptor.get_structure(atoms)
    for prop in list(final.site_properties):
        final.remove_site_property(prop)
    record: dict[str, Any] = {
        "id": mid,
        "kind": "molecule",
        "prototype": candidate.prototype,
        "source": candidate.source,
        "formula": final.composition.reduced_formula,
        "composition": {el.symbol: float(n) for el, n in final.composition.items()},
        "natoms": len(final),
        "spin_polarized": spinpol,
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash(),
        "rhoprop_version": rhoprop.__version__,
        "kpts": [1, 1, 1],
        "scf": {
            "energy": energy,
            "magnetic_moment_cell": moment,
            "relax_steps": steps,
            "max_force": fmax,
            "bond_length": float(atoms.get_distance(0, 1, mic=True)),
        },
        "structure": final.as_dict(),
        "timing": {
            "total_s": time.perf_counter() - t_start,
            "cpu_s": time.process_time() - cpu_start,
        },
        "scf_fallbacks": scfs.fallbacks,
        "files": {"log": f"logs/{mid}.txt"},
        **(extra or {}),
    }
    atomic_write_text(result_path(out, mid), json.dumps(record, indent=1) + "\n")
    return record


def compute(
    candidate: Candidate,
    out_dir: str | Path,
    protocol: GPAWProtocol | None = None,
    screen: Any = None,
) -> dict[str, Any]:
    """Compute a candidate with its tier's procedure: ``gpaw-v1`` (:class:`DFTProtocol`, the
    default) or ``gpaw-scf-v1`` (:class:`~rhoprop.dft.protocol.SCFProtocol`, optionally
    ``screen``-ed, see :func:`rhoprop.dft.scf.compute_scf`); a molecule (``dimer``) or a crystal."""
    if protocol is not None and not isinstance(protocol, DFTProtocol):
        from rhoprop.dft.scf import compute_scf

        return compute_scf(candidate, out_dir, protocol, screen)  # type: ignore[arg-type]
    if candidate.prototype == "dimer":
        return compute_molecule(candidate, out_dir, protocol)
    return compute_material(candidate, out_dir, protocol)


def crystal_header(
    candidate: Candidate, final: Structure, scf: SCFResult, protocol: GPAWProtocol
) -> dict[str, Any]:
    """The first fields of a crystal's result record, the same in every tier: id, kind, prototype,
    source, formula, composition and atom count of the stored structure ``final``, spin, the
    protocol and its hash, rhoprop's version."""
    return {
        "id": candidate.id,
        "kind": "crystal",
        "prototype": candidate.prototype,
        "source": candidate.source,
        "formula": final.composition.reduced_formula,
        "composition": {el.symbol: float(n) for el, n in final.composition.items()},
        "natoms": len(final),
        "spin_polarized": scf.magnetization is not None,
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash(),
        "rhoprop_version": rhoprop.__version__,
    }


def write_crystal_outputs(
    out_dir: Path, material_id: str, scf: SCFResult
) -> tuple[Structure, float]:
    """Check that the SCF density integrates to the valence count, then write the CHGCAR and the
    structure (CIF, POSCAR) of a crystal; return (structure, density integral in electrons)."""
    final = AseAtomsAdaptor.get_structure(scf.atoms)
    for prop in list(final.site_properties):
        final.remove_site_property(prop)
    integral = float(scf.density.mean() * final.volume)
    if not math.isclose(integral, scf.n_electrons, abs_tol=0.02):
        raise RhopropError(
            f"{material_id}: density integrates to {integral:.4f} electrons, expected "
            f"{scf.n_electrons} valence electrons"
        )
    write_chgcar(final, scf.density, scf.magnetization, chgcar_path(out_dir, material_id))
    struct_dir = out_dir / "structures"
    atomic_write_text(struct_dir / f"{material_id}.cif", final.to(fmt="cif"))
    atomic_write_text(struct_dir / f"{material_id}.vasp", final.to(fmt="poscar"))
    return final, integral


def scf_record(scf: SCFResult, integral: float) -> dict[str, Any]:
    """The ``scf`` block of a crystal's result JSON (bands, moments, density, forces, stress)."""
    b = scf.bands
    return {
        "energy": scf.energy,
        "fermi_energy": b.fermi_energy,
        "is_metal": b.is_metal,
        "band_gap": b.band_gap,
        "vbm": b.vbm,
        "cbm": b.cbm,
        "bandwidth": b.bandwidth,
        "valence_bottom": b.valence_bottom,
        "magnetic_moment_cell": scf.magnetic_moment,
        "magnetic_moments_atoms": scf.magnetic_moments,
        "n_electrons": scf.n_electrons,
        "density_integral": integral,
        "grid_shape": list(scf.density.shape),
        "relax_steps": scf.relax_steps,
        "max_force": scf.max_force,
        "stress_gpa": scf.stress_gpa,
    }


def crystal_files(material_id: str) -> dict[str, str]:
    """Paths (relative to the output folder) of a crystal's files, as its result JSON has them."""
    return {
        "chgcar": f"chgcar/{material_id}.CHGCAR",
        "cif": f"structures/{material_id}.cif",
        "poscar": f"structures/{material_id}.vasp",
        "log": f"logs/{material_id}.txt",
    }


def compute_material(
    candidate: Candidate, out_dir: str | Path, protocol: DFTProtocol | None = None
) -> dict[str, Any]:
    """Compute one material with the protocol, write its files, and return the result record.

    Raises a :class:`~rhoprop.dft.calc.DFTError` subclass (or any exception) on failure; the result
    JSON is only written when everything succeeded.
    """
    protocol = protocol or DFTProtocol()
    out = Path(out_dir)
    mid = candidate.id
    t_start, cpu_start = time.perf_counter(), time.process_time()
    structure, cubic_aligned = calculation_structure(candidate.structure)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    log_path = out / "logs" / f"{mid}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    with open(log_path, "w") as txt, material_scope() as scfs:
        t = time.perf_counter()
        eos = run_eos(atoms, protocol, txt)
        timing["eos_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scf = run_scf(atoms, eos.v0, eos.kpts, protocol, txt)
        timing["scf_s"] = time.perf_counter() - t
        elastic, elastic_note = None, "not cubic" if not cubic_aligned else ""
        if cubic_aligned and scf.bands.is_metal and not protocol.elastic_for_metals:
            elastic_note = (
                "metal: with this k-mesh and 0.01 eV smearing the stress of strained metallic "
                "cells is dominated by Fermi-surface sampling noise (Al: c11 from -2 to 143 GPa), "
                "not computed"
            )
        elif cubic_aligned:
            t = time.perf_counter()
            elastic = run_elastic_cubic(scf.atoms, eos.kpts, protocol, txt, eos.bulk_modulus)
            timing["elastic_s"] = time.perf_counter() - t
    final, integral = write_crystal_outputs(out, mid, scf)
    timing["total_s"] = time.perf_counter() - t_start
    timing["cpu_s"] = time.process_time() - cpu_start
    record: dict[str, Any] = {
        **crystal_header(candidate, final, scf, protocol),
        "kpts": list(eos.kpts),
        "eos": {
            "v0": eos.v0,
            "e0": eos.e0,
            "bulk_modulus_gpa": eos.bulk_modulus,
            "recentred": eos.recentred,
            "precentre": eos.precentre,
            "scans": eos.scans,
        },
        "scf": scf_record(scf, integral),
        "elastic": None if elastic is None else dataclasses.asdict(elastic),
        "elastic_note": elastic_note,
        "symmetry": symmetry_info(final),
        "input_structure": candidate.structure.as_dict(),
        "structure": final.as_dict(),
        "timing": timing,
        "scf_fallbacks": scfs.fallbacks,
        "files": crystal_files(mid),
    }
    atomic_write_text(result_path(out, mid), json.dumps(record, indent=1) + "\n")
    return record
