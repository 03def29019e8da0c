"""The fast tier ``gpaw-scf-v1``: CHGNet relaxation under symmetry, then one GPAW SCF.

Per crystal (:func:`compute_scf`), outputs as in ``gpaw-v1`` (:mod:`rhoprop.dft.material`):

1. the standard primitive cell of the input (spglib at ``input_symprec``);
2. CHGNet (the pretrained model shipped in the chgnet wheel, loaded once per process) relaxes cell
   shape, volume and positions with ASE's ``FixSymmetry`` (the input's space group is kept) and a
   Fréchet cell filter; the relaxed cell is then symmetrized by spglib at ``refine_symprec`` so that
   GPAW finds every symmetry (relaxation round-off made one ZnO SCF use 162 instead of 40
   irreducible k-points);
3. with a :class:`ScreenSettings`, a compound whose CHGNet formation energy (against the CHGNet
   energies of its elements' reference structures) exceeds the threshold is skipped
   (:class:`ScreenedOut`, not a failure), except a fixed pseudo-random fraction that is kept;
4. with ``reduce_cell``, the relaxed cell moves to the Niggli-reduced basis of its lattice where
   that is shorter (:func:`niggli_cell`; body-centred tetragonal and rhombohedral primitive cells);
5. one GPAW SCF with the protocol's electronic settings (those of ``gpaw-v1``): density, energy,
   bands, moments, and the GPAW forces and stress at the CHGNet geometry (recorded, not relaxed).

Molecules (the dimers of H, N, O, F, Cl, Br, I) are relaxed by CHGNet, then by GPAW BFGS in their
box exactly as in ``gpaw-v1`` (:func:`rhoprop.dft.material.compute_molecule`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import math
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import GPa
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from rhoprop.dft.calc import (
    DFTError,
    analyse_scf,
    converge,
    kpoint_mesh,
    material_scope,
    prepare_atoms,
)
from rhoprop.dft.material import (
    Candidate,
    compute_molecule,
    crystal_files,
    crystal_header,
    result_path,
    scf_record,
    symmetry_info,
    write_crystal_outputs,
)
from rhoprop.dft.protocol import SCFProtocol
from rhoprop.errors import RhopropError, SettingsError
from rhoprop.settings import Settings, atomic_write_text

MIN_DISTANCE_A = 0.5
"""Å: a relaxed cell with two atoms closer than this is a CHGNet collapse, recorded as a failure."""


class RelaxationError(DFTError):
    """The CHGNet relaxation did not converge or left an unphysical cell."""


class ScreenedOut(RhopropError):
    """A candidate skipped by the CHGNet screening (recorded in ``skipped.json``, not a failure)."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclasses.dataclass(frozen=True)
class ScreenSettings(Settings):
    """Which enumerated compounds are worth an SCF: skip those far above plausible stability.

    Attributes:
        max_chgnet_formation_energy_ev: skip a compound whose CHGNet formation energy (eV/atom,
            against the lowest CHGNet energy per atom of each element's reference structures: its
            seven elemental structures, or the dimer of a gas; the hull of the elements alone) is
            above this.
        keep_fraction: fraction of those kept anyway (chosen by a hash of seed and id: the same
            candidates on every run, in any order), so the model also sees unstable materials.
        seed: seed of that choice.
    """

    max_chgnet_formation_energy_ev: float = 1.0
    keep_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep_fraction <= 1.0:
            raise SettingsError(
                f"ScreenSettings.keep_fraction must be in [0, 1], got {self.keep_fraction}"
            )
        if math.isnan(self.max_chgnet_formation_energy_ev):
            raise SettingsError(
                "ScreenSettings.max_chgnet_formation_energy_ev must be a number (inf: no screening)"
            )

    def keeps(self, material_id: str) -> bool:
        """True for the fixed fraction of candidates kept although above the threshold."""
        digest = hashlib.sha256(f"{self.seed}:{material_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.keep_fraction


@functools.lru_cache(maxsize=2)
def chgnet_calculator(model_name: str) -> Any:
    """The pretrained CHGNet model as an ASE calculator on the CPU, loaded once per process (the
    weights ship in the chgnet wheel; nothing is downloaded). One torch thread."""
    import torch
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CHGNet.load(model_name=model_name, verbose=False)
        return CHGNetCalculator(model, use_device="cpu", on_isolated_atoms="ignore")


@dataclasses.dataclass
class Relaxation:
    """A CHGNet relaxation: final atoms (symmetrized, no calculator), energy of the cell (eV),
    optimizer steps, largest force (eV/Å), stress (GPa, Voigt), space groups before and after,
    CPU seconds."""

    atoms: Atoms
    energy: float
    steps: int
    max_force: float
    stress_gpa: list[float]
    spacegroup_input: int
    spacegroup_relaxed: int
    cpu_s: float

    def as_record(self) -> dict[str, Any]:
        """The relaxation as a JSON-ready dict (no atoms)."""
        natoms = len(self.atoms)
        return {
            "energy": self.energy,
            "energy_per_atom": self.energy / natoms,
            "steps": self.steps,
            "max_force": self.max_force,
            "stress_gpa": self.stress_gpa,
            "spacegroup_input": self.spacegroup_input,
            "spacegroup_relaxed": self.spacegroup_relaxed,
            "cpu_s": self.cpu_s,
        }


def _symmetry(atoms: Atoms, symprec: float) -> Any:
    """spglib's symmetry dataset of ``atoms``, or None where spglib finds none."""
    from rhoprop._spglib import spglib

    cell = (atoms.cell[:].tolist(), atoms.get_scaled_positions().tolist(), atoms.numbers.tolist())
    try:
        return spglib.get_symmetry_dataset(cell, symprec=symprec)
    except spglib.error.SpglibError:
        return None


def _spacegroup(atoms: Atoms, symprec: float) -> int:
    data = _symmetry(atoms, symprec)
    return int(data.number) if data is not None else 0


def relax_chgnet(atoms: Atoms, protocol: SCFProtocol, cell: bool = True) -> Relaxation:
    """Relax ``atoms`` (a copy) with CHGNet keeping its symmetry (``FixSymmetry`` at
    ``input_symprec``): positions, and with ``cell`` the cell shape and volume (Fréchet filter);
    then symmetrize at ``refine_symprec``. RelaxationError when it does not converge in
    ``chgnet_steps`` or collapses."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE
    from ase.spacegroup.symmetrize import refine_symmetry

    cpu = time.process_time()
    a = atoms.copy()
    a.set_initial_magnetic_moments(None)
    a.calc = chgnet_calculator(protocol.chgnet_model)
    sg_in = _spacegroup(a, protocol.input_symprec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.set_constraint(FixSymmetry(a, symprec=protocol.input_symprec))
        target = FrechetCellFilter(a) if cell else a
        optimizer = {"FIRE": FIRE, "BFGS": BFGS}[protocol.chgnet_optimizer](target, logfile=None)
        converged = bool(optimizer.run(fmax=protocol.chgnet_fmax, steps=protocol.chgnet_steps))
        a.set_constraint()
        refine_symmetry(a, symprec=protocol.refine_symprec, verbose=False)
    if not converged:
        raise RelaxationError(
            f"CHGNet relaxation did not reach fmax {protocol.chgnet_fmax} eV/Å in "
            f"{protocol.chgnet_steps} steps"
        )
    if len(a) > 1:
        distances = a.get_all_distances(mic=True) + np.eye(len(a)) * 1e9
        if distances.min() < MIN_DISTANCE_A:
            raise RelaxationError(
                f"CHGNet relaxation collapsed the cell: two atoms {distances.min():.2f} Å apart"
            )
    energy = float(a.get_potential_energy())
    forces = a.get_forces()
    stress = [float(x) for x in a.get_stress() / GPa] if cell else []
    result = Atoms(a.get_chemical_symbols(), cell=a.cell, positions=a.positions, pbc=a.pbc)
    return Relaxation(
        result,
        energy,
        int(optimizer.nsteps),
        float(np.sqrt((forces**2).sum(axis=1)).max()),
        stress,
        sg_in,
        _spacegroup(result, protocol.refine_symprec),
        time.process_time() - cpu,
    )


_REFERENCES: dict[tuple[str, str], tuple[float, str]] = {}


def chgnet_references(
    elements: Iterable[str], protocol: SCFProtocol
) -> dict[str, tuple[float, str]]:
    """Element → (lowest CHGNet energy per atom, id) over its reference structures (the seven
    elemental structures, or the dimer of a gas) relaxed like any candidate; once per process."""
    from rhoprop.dft.enumerate import SCF_ELEMENTAL_TYPES, build_any, scf_material_id
    from rhoprop.dft.prototypes import GASES, build_dimer, dimer_id

    out = {}
    for el in elements:
        key = (protocol.hash(), el)
        if key not in _REFERENCES:
            best = (math.inf, "")
            if el in GASES:
                structures = [(dimer_id(el), build_dimer(el), False)]
            else:
                structures = [
                    (scf_material_id(p, (el,)), build_any(p, (el,)), True)
                    for p in SCF_ELEMENTAL_TYPES
                ]
            for mid, structure, cell in structures:
                try:
                    relaxed = relax_chgnet(
                        AseAtomsAdaptor.get_atoms(structure), protocol, cell=cell
                    )
                except RelaxationError:
                    continue
                best = min(best, (relaxed.energy / len(relaxed.atoms), mid))
            if not math.isfinite(best[0]):
                raise RelaxationError(f"no CHGNet reference structure of {el} relaxed")
            _REFERENCES[key] = best
        out[el] = _REFERENCES[key]
    return out


def chgnet_formation_energy(
    relaxed: Relaxation, protocol: SCFProtocol
) -> tuple[float, dict[str, Any]]:
    """CHGNet formation energy (eV/atom) of a relaxed cell, and the references used."""
    symbols = relaxed.atoms.get_chemical_symbols()
    refs = chgnet_references(sorted(set(symbols)), protocol)
    ef = (relaxed.energy - sum(refs[s][0] for s in symbols)) / len(symbols)
    return float(ef), {el: {"energy_per_atom": e, "id": mid} for el, (e, mid) in refs.items()}


def symmetric_kpoint_mesh(atoms: Atoms, protocol: SCFProtocol) -> tuple[int, int, int]:
    """The protocol's Γ-centred mesh (:func:`~rhoprop.dft.calc.kpoint_mesh`), every size raised to
    the largest when ``symmetric_kpoints`` and some rotation of the crystal (spglib at
    ``refine_symprec``) does not map the mesh onto itself."""
    kpts = kpoint_mesh(atoms, protocol)
    if not protocol.symmetric_kpoints or len(set(kpts)) == 1:
        return kpts
    data = _symmetry(atoms, protocol.refine_symprec)
    n = np.array(kpts, dtype=float)
    for rotation in [] if data is None else data.rotations:
        reciprocal = np.linalg.inv(rotation).T  # the rotation on fractional reciprocal coordinates
        mapped = n[:, None] * reciprocal / n[None, :]
        if not np.allclose(mapped, np.round(mapped)):
            return (max(kpts),) * 3
    return kpts


def niggli_cell(atoms: Atoms) -> Atoms | None:
    """A copy of ``atoms`` on the Niggli-reduced basis of its lattice, in the same Cartesian frame
    (positions kept, then wrapped into the new cell), or None where the basis already is as short
    (sum of the vector lengths within 1e-6 Å), so that a reduced cell is never touched."""
    from ase.build.tools import niggli_reduce_cell

    old = np.array(atoms.cell[:])
    _, op = niggli_reduce_cell(old)
    cell = np.asarray(op).T @ old
    if np.linalg.det(cell) < 0:  # keep a right-handed basis (−1 times a lattice basis is one too)
        cell = -cell
    if np.linalg.norm(cell, axis=1).sum() >= np.linalg.norm(old, axis=1).sum() - 1e-6:
        return None
    reduced = atoms.copy()
    reduced.set_cell(cell, scale_atoms=False)
    reduced.wrap(eps=1e-9)
    return reduced


def primitive_cell(structure: Structure, symprec: float) -> Structure:
    """The standard primitive cell of ``structure`` (spglib at ``symprec``; cubic axes on xyz)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()


def compute_scf(
    candidate: Candidate,
    out_dir: str | Path,
    protocol: SCFProtocol | None = None,
    screen: ScreenSettings | None = None,
) -> dict[str, Any]:
    """Compute a candidate with the fast tier and write its files (result JSON last); return the
    result record.

    Raises :class:`ScreenedOut` when ``screen`` skips it, a :class:`~rhoprop.dft.calc.DFTError`
    subclass (or any exception) when it fails; the result JSON is only written on success.
    """
    protocol = protocol or SCFProtocol()
    out = Path(out_dir)
    mid = candidate.id
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if candidate.prototype == "dimer":
        relaxed = relax_chgnet(AseAtomsAdaptor.get_atoms(candidate.structure), protocol, cell=False)
        start = AseAtomsAdaptor.get_structure(relaxed.atoms)
        moved = Candidate(mid, start, candidate.prototype, candidate.source)
        return compute_molecule(
            moved,
            out,
            protocol,
            extra={"chgnet": relaxed.as_record(), "input_structure": candidate.structure.as_dict()},
        )
    relaxed = relax_chgnet(
        AseAtomsAdaptor.get_atoms(primitive_cell(candidate.structure, protocol.input_symprec)),
        protocol,
    )
    chgnet = relaxed.as_record()
    if screen is not None and len(candidate.structure.composition) > 1:
        ef, refs = chgnet_formation_energy(relaxed, protocol)
        above = ef > screen.max_chgnet_formation_energy_ev
        chgnet.update(formation_energy=ef, references=refs, kept_above_threshold=above)
        if above and not screen.keeps(mid):
            raise ScreenedOut(
                f"CHGNet formation energy {ef:.3f} eV/atom above "
                f"{screen.max_chgnet_formation_energy_ev} eV/atom",
                {
                    "chgnet": chgnet,
                    "formula": candidate.structure.composition.reduced_formula,
                    "prototype": candidate.prototype,
                    "natoms": len(relaxed.atoms),
                },
            )
    t_chgnet = time.perf_counter() - t_start
    log_path = out / "logs" / f"{mid}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    reduced = niggli_cell(relaxed.atoms) if protocol.reduce_cell else None
    scf_atoms = relaxed.atoms if reduced is None else reduced
    with open(log_path, "w") as txt, material_scope() as scfs:
        atoms, spinpol = prepare_atoms(scf_atoms, protocol)
        kpts = symmetric_kpoint_mesh(atoms, protocol)
        t = time.perf_counter()
        converge(atoms, protocol, kpts, txt, spinpol)
        forces = atoms.get_forces()
        scf = analyse_scf(
            atoms, protocol, spinpol, 0, float(np.sqrt((forces**2).sum(axis=1)).max())
        )
        n_ibz = len(atoms.calc.get_ibz_k_points())
        t_scf = time.perf_counter() - t
    final, integral = write_crystal_outputs(out, mid, scf)
    record: dict[str, Any] = {
        **crystal_header(candidate, final, scf, protocol),
        "kpts": list(kpts),
        "kpts_from_density": list(kpoint_mesh(scf_atoms, protocol)),
        "cell_reduced": reduced is not None,
        "ibz_kpoints": n_ibz,
        "chgnet": chgnet,
        "scf": scf_record(scf, integral),
        "symmetry": symmetry_info(final),
        "input_structure": candidate.structure.as_dict(),
        "structure": final.as_dict(),
        "timing": {
            "chgnet_s": t_chgnet,
            "scf_s": t_scf,
            "total_s": time.perf_counter() - t_start,
            "cpu_s": time.process_time() - cpu_start,
        },
        "scf_fallbacks": scfs.fallbacks,
        "files": crystal_files(mid),
    }
    atomic_write_text(result_path(out, mid), json.dumps(record, indent=1) + "\n")
    return record
