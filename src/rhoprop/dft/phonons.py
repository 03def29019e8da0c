"""Finite-displacement phonons (phonopy + GPAW forces) of materials that already have a DFT result.

Protocol ``gpaw-phonon-v1`` (:class:`PhononProtocol`). For a material ``<id>`` of a generation
folder ``DIR`` (``gpaw-v1`` or ``gpaw-scf-v1``: the structure, the electronic settings and their
hash are read from ``DIR/results/<id>.json``), outputs go under ``DIR/phonons/``::

    displacements/<id>/disp-003.json  forces of one displaced supercell (written as it finishes)
    logs/<id>.txt                     GPAW text output (appended across resumed runs)
    plots/<id>.png                    band structure and DOS (only with ``plots=True``)
    results/<id>.json                 labels, DOS, band structure, force sets (written last:
                                      presence = done)
    failures.json, protocol.json

A killed run keeps every finished displacement; the rerun computes only the missing ones (a
displacement file is reused only when the displaced supercell, its k-mesh and the DFT protocol hash
are exactly those the rerun would compute).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rhoprop.dft.calc import DFTError, converge, kpoint_mesh, material_scope, prepare_atoms
from rhoprop.dft.generate import (
    THREAD_VARIABLES,
    GenerateReport,
    _kill_workers,
    _terminate,
    failure_record,
    load_failures,
    run_limited,
    select_ids,
)
from rhoprop.dft.material import Candidate, result_path
from rhoprop.dft.protocol import DFTProtocol, protocol_hash_of
from rhoprop.errors import RhopropError, SettingsError
from rhoprop.settings import Settings, atomic_write_text

PHONON_DIR = "phonons"

PHONON_LABEL_SCHEMA: dict[str, dict[str, Any]] = {
    "dynamically_stable": {
        "kind": "binary",
        "unit": "",
        "classes": [0, 1],
        "definition": (
            "1 when no phonon frequency (finite displacements, acoustic sum rule imposed) on "
            "the q-mesh or along the standard band path lies below the protocol's "
            "imaginary_threshold_thz (-0.2 THz); imaginary frequencies count as negative"
        ),
    },
    "min_frequency": {
        "kind": "regression",
        "unit": "THz",
        "definition": (
            "lowest phonon frequency over the q-mesh and the band path (the three acoustic "
            "modes at Γ excluded), capped at 0 from above: negative = imaginary (minus |ν| of "
            "the most unstable mode), 0 when every sampled frequency is real"
        ),
    },
}
"""The phonon label columns ``rhoprop generate --labels`` adds once a folder has phonon results."""


class PhononError(DFTError):
    """The phonons of one material cannot be computed (bad input, too large a supercell)."""


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


@dataclasses.dataclass(frozen=True)
class PhononProtocol(Settings):
    """Finite-displacement phonon protocol (forces from GPAW with the material's own DFT protocol).

    Attributes:
        name: protocol name; results of different names/hashes are never mixed.
        protocol_revision: bumped whenever the procedure (not only a number) changes (2: a
            supercell of N cells gets N times the band count of its cell, not the band count of
            its atoms; see :meth:`accepts` for the revision-1 results still valid).
        min_supercell_edge_a: the supercell is the smallest diagonal multiple n1×n2×n3 of the stored
            (primitive) cell with every edge n_i·|a_i| at least this long (Å) and every n_i at least
            ``min_supercell_multiple`` ...
        min_supercell_multiple: smallest n_i (2: every zone-boundary point with coordinates 0 or ½,
            such as X, L, M, R, N, is commensurate with the supercell, so its frequencies are exact
            rather than interpolated, whatever the size of the cell) ...
        max_atoms: ... unless that has more atoms than this; then the multiple whose reduction keeps
            the shortest edge longest is reduced until it fits (the result says
            ``supercell_capped``).
        displacement_a: atomic displacement (Å) of the finite differences.
        plus_minus: ``"auto"`` (phonopy: ±u only where symmetry does not map +u onto −u) or
            ``"both"`` (always ±u).
        symprec: phonopy's symmetry tolerance (Å) for the displacements and force-constant
        symmetrization. imaginary_threshold_thz: a material is dynamically unstable when some
            frequency (imaginary ones negative) lies below this (THz); the margin absorbs the
            finite-difference noise.
        qmesh_length_a: phonopy's mesh length (Å): a Γ-centred q-mesh of n_i = max(1,
            round(l·|b_i|)) points (|b_i| without 2π) for the DOS and the stability test.
        band_points: q-points per segment of the band path (ASE's standard path of the primitive
        cell). dos_pitch_thz: frequency step of the stored DOS (tetrahedron method).
        smearing_width_ev: Fermi-Dirac width (eV) of the supercell force calculations, replacing the
            DFT protocol's (None: keep it). Every other electronic setting is the DFT protocol's.
            With gpaw-v1's 0.01 eV and its k-point density the forces of metals are Fermi-surface
            sampling noise (Al fcc: X-point TA mode at -1.95 THz instead of 5.8); insulators do not
            notice.
        phonopy_version: phonopy version the protocol was fixed with.
    """

    name: str = "gpaw-phonon-v1"
    protocol_revision: int = 2
    min_supercell_edge_a: float = 5.0
    min_supercell_multiple: int = 2
    max_atoms: int = 64
    displacement_a: float = 0.01
    plus_minus: str = "auto"
    symprec: float = 1e-4
    imaginary_threshold_thz: float = -0.2
    qmesh_length_a: float = 40.0
    band_points: int = 41
    dos_pitch_thz: float = 0.05
    smearing_width_ev: float | None = 0.2
    phonopy_version: str = dataclasses.field(default_factory=lambda: _package_version("phonopy"))

    def __post_init__(self) -> None:
        if not 0.001 <= self.displacement_a <= 0.1:
            raise SettingsError(
                "PhononProtocol.displacement_a must be in [0.001, 0.1] Å, got "
                f"{self.displacement_a}"
            )
        if self.min_supercell_multiple < 1:
            raise SettingsError(
                "PhononProtocol.min_supercell_multiple must be >= 1, got "
                f"{self.min_supercell_multiple}"
            )
        if self.min_supercell_edge_a < 0 or self.max_atoms < 1:
            raise SettingsError(
                "PhononProtocol: min_supercell_edge_a must be >= 0 and max_atoms >= 1, got "
                f"{self.min_supercell_edge_a} and {self.max_atoms}"
            )
        if self.plus_minus not in ("auto", "both"):
            raise SettingsError(
                f"PhononProtocol.plus_minus must be 'auto' or 'both', got {self.plus_minus!r}"
            )
        if self.imaginary_threshold_thz > 0:
            raise SettingsError(
                "PhononProtocol.imaginary_threshold_thz must be <= 0 (a frequency below it means "
                f"unstable), got {self.imaginary_threshold_thz}"
            )
        if self.smearing_width_ev is not None and not 0 < self.smearing_width_ev <= 1.0:
            raise SettingsError(
                "PhononProtocol.smearing_width_ev must be None or in (0, 1] eV, got "
                f"{self.smearing_width_ev}"
            )
        if self.qmesh_length_a <= 0 or self.band_points < 2 or self.dos_pitch_thz <= 0:
            raise SettingsError(
                "PhononProtocol: qmesh_length_a and dos_pitch_thz must be positive and band_points "
                f">= 2, got {self.qmesh_length_a}, {self.dos_pitch_thz}, {self.band_points}"
            )

    def hash(self) -> str:
        """Short, stable hash of every field (a phonon result is reused only when it matches)."""
        return protocol_hash_of(self.to_dict())

    def accepts(self, record: dict[str, Any], source: dict[str, Any]) -> bool:
        """True when the phonon result ``record`` was computed from the DFT result ``source`` (same
        DFT protocol hash) exactly as this protocol would compute it: with this protocol's hash, or
        at revision 1 for a material whose supercell band count revision 2 leaves unchanged
        (:func:`supercell_band_counts`: every material but those whose cell has no empty band
        among its atomic orbitals, such as Ca, Sr and Ba crystals)."""
        if record.get("source", {}).get("protocol_hash") != source.get("protocol_hash"):
            return False
        found = record.get("protocol_hash")
        if found is None:
            return False
        if found == self.hash():
            return True
        if self.protocol_revision != 2:
            return False
        if found != dataclasses.replace(self, protocol_revision=1).hash():
            return False
        cells = int(record.get("natoms_supercell", 0)) // max(1, len(source["structure"]["sites"]))
        old, new = supercell_band_counts(self, source, cells)
        return old == new

    def electronic(self, dft: Any) -> Any:
        """The DFT protocol the force calculations run with: ``dft`` with this protocol's
        smearing."""
        if self.smearing_width_ev is None or self.smearing_width_ev == dft.smearing_width_ev:
            return dft
        return dataclasses.replace(dft, smearing_width_ev=self.smearing_width_ev)


def supercell_band_counts(
    protocol: PhononProtocol, source: dict[str, Any], cells: int
) -> tuple[int | None, int | None]:
    """Band counts of a supercell of ``cells`` copies of the cell of the DFT result ``source``:
    (revision 1's, from the supercell's atoms; revision 2's, ``cells`` times the cell's), None
    where GPAW's default is used."""
    from pymatgen.core import Structure

    symbols = [site.specie.symbol for site in Structure.from_dict(source["structure"])]
    dft = protocol.electronic(source_protocol(source))
    supercell = symbols * max(1, cells)
    return dft.band_count(supercell), dft.band_count(supercell, max(1, cells))


# --- paths and source results -----------------------------------------------------------------


def phonon_dir(out_dir: str | Path) -> Path:
    """``DIR/phonons`` of a generation folder."""
    return Path(out_dir) / PHONON_DIR


def phonon_result_path(out_dir: str | Path, material_id: str) -> Path:
    """Where the phonon result of ``material_id`` lives (its presence marks the material done)."""
    return phonon_dir(out_dir) / "results" / f"{material_id}.json"


def displacement_path(out_dir: str | Path, material_id: str, index: int) -> Path:
    """Force file of displacement ``index`` (0 = the undisplaced supercell) of ``material_id``."""
    return phonon_dir(out_dir) / "displacements" / material_id / f"disp-{index:03d}.json"


def load_source(out_dir: str | Path, material_id: str) -> dict[str, Any]:
    """The DFT result record of ``material_id`` (structure, protocol, hash), checked for what
    phonons need."""
    path = result_path(Path(out_dir), material_id)
    if not path.exists():
        raise PhononError(
            f"{path} does not exist: compute the material first "
            f"(`rhoprop generate ... --out {out_dir}`), then its phonons"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PhononError(f"cannot read the DFT result {path}: {exc}") from exc
    missing = [k for k in ("structure", "protocol", "protocol_hash") if k not in record]
    if missing or record.get("kind", "crystal") != "crystal":
        raise PhononError(
            f"{path} is not a crystal result with structure, protocol and protocol_hash "
            f"(missing {missing}, kind {record.get('kind')!r}); phonons need one"
        )
    return record


def source_protocol(record: dict[str, Any]) -> Any:
    """The DFT protocol a result was computed with, as an object (its electronic settings are
    reused): the class its ``name`` says (``gpaw-v1``, ``gpaw-scf-v1``) where
    :mod:`rhoprop.dft.protocol` has tiers (``load_protocol``), else :class:`DFTProtocol`."""
    from rhoprop.dft import protocol as protocols

    loader = getattr(protocols, "load_protocol", DFTProtocol.from_dict)
    try:
        return loader(record["protocol"])
    except SettingsError as exc:
        raise PhononError(
            f"{record.get('id')}: the result's protocol does not parse with this rhoprop's "
            f"DFTProtocol ({exc}); update rhoprop to the version that wrote it"
        ) from exc


# --- supercell and displacements ----------------------------------------------------------------


def supercell_multiples(
    cell: np.ndarray, natoms: int, min_edge: float, max_atoms: int, min_multiple: int = 1
) -> tuple[list[int], bool]:
    """Diagonal multiples (n1, n2, n3), each at least ``min_multiple``, with every edge n_i·|a_i| ≥
    ``min_edge`` Å, reduced to at most ``max_atoms`` atoms (each step reduces the multiples that
    keep the shortest edge longest); returns (multiples, capped). PhononError when even the cell
    itself exceeds ``max_atoms``."""
    if natoms > max_atoms:
        raise PhononError(
            f"the cell has {natoms} atoms, more than max_atoms={max_atoms}; "
            "raise --max-atoms to compute its phonons"
        )
    lengths = np.linalg.norm(np.asarray(cell, dtype=float), axis=1)
    n = [max(1, min_multiple, math.ceil(min_edge / float(length) - 1e-9)) for length in lengths]
    capped = False
    while natoms * math.prod(n) > max_atoms:
        # axes of equal length and multiple are reduced together (a cubic or hexagonal supercell
        # keeps its shape and symmetry); the group whose reduced edge is longest goes first
        groups: dict[tuple[int, float], list[int]] = {}
        for j in range(3):
            if n[j] > 1:
                groups.setdefault((n[j], round(float(lengths[j]), 2)), []).append(j)
        _, axes = max(groups.items(), key=lambda g: ((g[0][0] - 1) * g[0][1], len(g[1])))
        for j in axes:
            n[j] -= 1
        capped = True
    return n, capped


def make_phonopy(atoms: Any, protocol: PhononProtocol) -> tuple[Any, list[int], bool]:
    """A phonopy object for ``atoms`` (ASE) with the protocol's supercell and displacements
    generated.

    The stored cell is the unit cell; where it is not primitive, phonopy finds the primitive cell
    (``primitive_matrix='auto'``) for the band path. Returns (phonopy, multiples, capped).
    """
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell),
        scaled_positions=atoms.get_scaled_positions(),
        masses=atoms.get_masses(),
    )
    n, capped = supercell_multiples(
        np.asarray(atoms.cell),
        len(atoms),
        protocol.min_supercell_edge_a,
        protocol.max_atoms,
        protocol.min_supercell_multiple,
    )
    with warnings.catch_warnings():  # phonopy warns whenever 'auto' is not the identity
        warnings.simplefilter("ignore")
        ph = Phonopy(
            unit, supercell_matrix=np.diag(n), primitive_matrix="auto", symprec=protocol.symprec
        )
    if len(ph.primitive) == len(unit):  # already primitive: keep its own basis for the q-points
        ph = Phonopy(
            unit, supercell_matrix=np.diag(n), primitive_matrix="P", symprec=protocol.symprec
        )
    ph.generate_displacements(
        distance=protocol.displacement_a,
        is_plusminus=True if protocol.plus_minus == "both" else "auto",
    )
    return ph, n, capped


def _ase(cell: Any) -> Any:
    """ASE Atoms of a PhonopyAtoms."""
    from ase import Atoms

    return Atoms(
        symbols=list(cell.symbols),
        cell=np.asarray(cell.cell),
        scaled_positions=np.asarray(cell.scaled_positions),
        pbc=True,
    )


def forces_can_be_nonzero(ph: Any) -> bool:
    """True when some atom's site symmetry allows a force (a free internal coordinate, e.g. wurtzite
    u): then the undisplaced supercell's residual forces are computed and subtracted."""
    symmetry = ph.primitive_symmetry
    for i in range(len(ph.primitive)):
        rotations = np.asarray(symmetry.get_site_symmetry(i), dtype=float)
        if np.abs(rotations.mean(axis=0)).max() > 1e-8:
            return True
    return False


def calculation_key(atoms: Any, kpts: Sequence[int], dft_hash: str) -> str:
    """Identity of one force calculation: the supercell geometry, its k-mesh and the DFT protocol
    hash."""
    data = {
        "symbols": atoms.get_chemical_symbols(),
        "cell": np.round(np.asarray(atoms.cell), 8).tolist(),
        "positions": np.round(atoms.get_positions(), 8).tolist(),
        "kpts": [int(k) for k in kpts],
        "dft_protocol_hash": dft_hash,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _cached_forces(path: Path, key: str) -> dict[str, Any] | None:
    """The displacement record at ``path`` if it is complete and was computed for ``key``."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("key") == key and "forces" in data else None


# --- analysis -----------------------------------------------------------------------------------


def band_path(
    primitive_cell: np.ndarray, npoints: int
) -> tuple[list[np.ndarray], list[str], list[bool]]:
    """ASE's standard band path (Setyawan-Curtarolo) of a primitive cell as phonopy segments.

    Returns (segments of q-points in the primitive reciprocal basis, labels, connections).
    """
    from ase.cell import Cell

    bp = Cell(np.asarray(primitive_cell)).bandpath(npoints=0)
    special = bp.special_points
    segments: list[np.ndarray] = []
    labels: list[str] = []
    connections: list[bool] = []
    for part in bp.path.split(","):
        names = _split_labels(part)
        for a, b in itertools.pairwise(names):
            qa, qb = np.asarray(special[a], dtype=float), np.asarray(special[b], dtype=float)
            segments.append(np.linspace(qa, qb, npoints))
            if not labels or not connections or not connections[-1]:
                labels.append(a)
            labels.append(b)
            connections.append(True)
        connections[-1] = False
    return segments, ["Γ" if x == "G" else x for x in labels], connections


def _split_labels(part: str) -> list[str]:
    """'GXW1K' -> ['G', 'X', 'W1', 'K'] (ASE labels are a capital letter plus digits)."""
    names: list[str] = []
    for ch in part:
        if ch.isdigit() and names:
            names[-1] += ch
        else:
            names.append(ch)
    return names


def analyse(ph: Any, protocol: PhononProtocol) -> dict[str, Any]:
    """Labels, Γ frequencies, DOS and band structure of a phonopy object with force constants.

    Frequencies in THz, imaginary ones negative. The three acoustic modes at Γ are excluded from
    ``min_frequency`` (they are zero by the acoustic sum rule, which ``symmetrize_force_constants``
    imposed); their largest magnitude is reported as ``gamma_acoustic_max_abs_thz``.
    """
    gamma = np.sort(np.asarray(ph.get_frequencies([0.0, 0.0, 0.0]), dtype=float))
    acoustic = np.argsort(np.abs(gamma))[:3]
    ph.run_mesh(protocol.qmesh_length_a, is_gamma_center=True)
    mesh = ph.get_mesh_dict()
    mesh_min, mesh_q = _lowest(mesh["qpoints"], mesh["frequencies"])
    segments, labels, connections = band_path(np.asarray(ph.primitive.cell), protocol.band_points)
    ph.run_band_structure(segments, labels=labels, path_connections=connections)
    bands = ph.get_band_structure_dict()
    path_min, path_q = _lowest(
        np.concatenate(bands["qpoints"]), np.concatenate(bands["frequencies"])
    )
    where, minimum, q_min = (
        ("mesh", mesh_min, mesh_q) if mesh_min <= path_min else ("path", path_min, path_q)
    )
    ph.run_total_dos(freq_pitch=protocol.dos_pitch_thz)
    dos = ph.get_total_dos_dict()
    return {
        "dynamically_stable": bool(minimum >= protocol.imaginary_threshold_thz),
        "min_frequency_thz": minimum,
        "min_frequency_q": q_min,
        "min_frequency_where": where,
        "mesh_min_frequency_thz": mesh_min,
        "path_min_frequency_thz": path_min,
        "gamma_frequencies_thz": _r(gamma),
        "gamma_acoustic_max_abs_thz": float(np.abs(gamma[acoustic]).max()),
        "mesh": [int(x) for x in ph.mesh.mesh_numbers],
        "dos": {"frequency_thz": _r(dos["frequency_points"]), "dos": _r(dos["total_dos"])},
        "band_structure": {
            "labels": labels,
            "connections": connections,
            "qpoints": [_r(q, 5) for q in bands["qpoints"]],
            "distances": [_r(d, 5) for d in bands["distances"]],
            "frequencies_thz": [_r(f) for f in bands["frequencies"]],
        },
    }


def _lowest(qpoints: Any, frequencies: Any) -> tuple[float, list[float] | None]:
    """(lowest frequency, its q-point) over q-points, without the three acoustic modes at Γ."""
    best, where = math.inf, None
    for q, f in zip(
        np.asarray(qpoints, dtype=float), np.asarray(frequencies, dtype=float), strict=True
    ):
        if np.all(np.abs(q - np.round(q)) < 1e-9):
            f = np.delete(f, np.argsort(np.abs(f))[:3])
        if f.size and float(f.min()) < best:
            best, where = float(f.min()), [float(x) for x in q]
    return best, where


def _r(values: Any, digits: int = 4) -> list:
    """Nested lists of floats rounded to ``digits`` (compact JSON)."""
    return np.round(np.asarray(values, dtype=float), digits).tolist()


def special_point_frequencies(record: dict[str, Any]) -> dict[str, list[float]]:
    """Frequencies (THz, sorted) at the labelled special points of a phonon result's band path."""
    bands = record["band_structure"]
    labels = bands["labels"]
    out: dict[str, list[float]] = {}
    at = 0
    for freqs, connected in zip(bands["frequencies_thz"], bands["connections"], strict=True):
        out.setdefault(labels[at], sorted(float(x) for x in freqs[0]))
        out.setdefault(labels[at + 1], sorted(float(x) for x in freqs[-1]))
        at += 1 if connected else 2
    return out


# --- one material -------------------------------------------------------------------------------


def compute_phonons(
    material_id: str,
    out_dir: str | Path,
    protocol: PhononProtocol | None = None,
    plots: bool = False,
) -> dict[str, Any]:
    """Compute (or finish) the phonons of one material of ``out_dir`` and write its phonon result.

    Each displaced supercell's forces are saved as soon as they are computed; saved ones are reused.
    Raises a :class:`~rhoprop.dft.calc.DFTError` subclass (or any exception) on failure; the result
    JSON is written only when every force is there.
    """
    protocol = protocol or PhononProtocol()
    out = Path(out_dir)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    source = load_source(out, material_id)
    dft = protocol.electronic(source_protocol(source))
    forces_hash = (
        dft.hash()
        if dft.smearing_width_ev != source["protocol"].get("smearing_width_ev")
        else source["protocol_hash"]
    )
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(source["structure"]))
    ph, multiples, capped = make_phonopy(atoms, protocol)
    displaced = [_ase(c) for c in ph.supercells_with_displacements]
    perfect = _ase(ph.supercell)
    kpts = kpoint_mesh(perfect, dft)
    cells = len(perfect) // len(atoms)
    old_bands, bands = supercell_band_counts(protocol, source, cells)
    if bands != old_bands:  # forces of revision 1's band count are not reused
        forces_hash = f"{forces_hash}/nbands={bands}"
    residual = forces_can_be_nonzero(ph)
    tasks = ([(0, perfect)] if residual else []) + [(i + 1, a) for i, a in enumerate(displaced)]
    log_path = phonon_dir(out) / "logs" / f"{material_id}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    computed, reused, forces_by_index, disp_cpu = [], [], {}, 0.0
    with open(log_path, "a") as txt, material_scope() as scfs:
        for index, cell in tasks:
            path = displacement_path(out, material_id, index)
            key = calculation_key(cell, kpts, forces_hash)
            cached = _cached_forces(path, key)
            if cached is None:
                txt.write(
                    f"\n=== rhoprop phonons {material_id} disp-{index:03d} ({len(cell)} atoms, "
                    f"k-mesh {kpts}) {time.strftime('%Y-%m-%dT%H:%M:%S')} ===\n"
                )
                txt.flush()
                t, cpu = time.perf_counter(), time.process_time()
                a, spinpol = prepare_atoms(cell, dft)
                energy = converge(a, dft, kpts, txt, spinpol, cells=cells)
                forces = np.asarray(a.get_forces(), dtype=float)
                cached = {
                    "id": material_id,
                    "index": index,
                    "key": key,
                    "natoms": len(cell),
                    "kpts": list(kpts),
                    "energy": energy,
                    "forces": forces.tolist(),
                    "cpu_s": time.process_time() - cpu,
                    "wall_s": time.perf_counter() - t,
                    "electronic_protocol_hash": forces_hash,
                }
                atomic_write_text(path, json.dumps(cached) + "\n")
                computed.append(index)
            else:
                reused.append(index)
            forces_by_index[index] = np.asarray(cached["forces"], dtype=float)
            disp_cpu += float(cached.get("cpu_s", 0.0))
    reference = forces_by_index.get(0)
    sets = np.array(
        [
            forces_by_index[i + 1] - (reference if reference is not None else 0.0)
            for i in range(len(displaced))
        ]
    )
    drift = float(np.abs(sets.sum(axis=1)).max())
    ph.forces = sets
    ph.produce_force_constants(show_drift=False)
    ph.symmetrize_force_constants(show_drift=False)
    analysis = analyse(ph, protocol)
    dataset = ph.dataset
    lengths = np.linalg.norm(np.asarray(ph.supercell.cell), axis=1)
    record: dict[str, Any] = {
        "id": material_id,
        "kind": "phonon",
        "formula": source.get("formula"),
        "prototype": source.get("prototype"),
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash(),
        "source": {
            "protocol_name": source["protocol"].get("name"),
            "protocol_hash": source["protocol_hash"],
            "result": f"results/{material_id}.json",
        },
        "electronic_protocol": dft.to_dict(),
        "electronic_protocol_hash": forces_hash,
        "dynamically_stable": analysis.pop("dynamically_stable"),
        "min_frequency_thz": analysis.pop("min_frequency_thz"),
        "natoms": len(atoms),
        "natoms_primitive": len(ph.primitive),
        "supercell_multiples": multiples,
        "supercell_capped": capped,
        "supercell_edges_a": [float(x) for x in lengths],
        "natoms_supercell": len(ph.supercell),
        "kpts_supercell": list(kpts),
        "spin_polarized": bool(dft.is_magnetic(atoms.get_chemical_symbols())),
        "n_displacements": len(displaced),
        "residual_forces_subtracted": residual,
        "max_residual_force": None if reference is None else float(np.abs(reference).max()),
        "max_force_drift": drift,
        "displacements": [
            {
                "atom": int(d["number"]),
                "vector": [float(x) for x in d["displacement"]],
                "forces": _r(f, 6),
            }
            for d, f in zip(dataset["first_atoms"], sets, strict=True)
        ],
        **analysis,
        "timing": {
            "total_s": time.perf_counter() - t_start,
            "cpu_s": time.process_time() - cpu_start,
            "displacements_cpu_s": disp_cpu,
            "computed": computed,
            "reused": reused,
        },
        "scf_fallbacks": scfs.fallbacks,
        "files": {
            "log": f"{PHONON_DIR}/logs/{material_id}.txt",
            "displacements": f"{PHONON_DIR}/displacements/{material_id}/",
        },
    }
    if plots:
        record["files"]["plot"] = f"{PHONON_DIR}/plots/{material_id}.png"
        plot_phonons(record, phonon_dir(out) / "plots" / f"{material_id}.png")
    atomic_write_text(phonon_result_path(out, material_id), json.dumps(record, indent=1) + "\n")
    return record


def plot_phonons(record: dict[str, Any], path: str | Path) -> None:
    """Band structure and DOS of a phonon result as a PNG (written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rhoprop.settings import atomic_write_bytes

    bands = record["band_structure"]
    fig, (ax, ax_dos) = plt.subplots(
        1, 2, figsize=(8, 4), sharey=True, gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05}
    )
    ticks: list[float] = []
    tick_labels: list[str] = []
    labels = list(bands["labels"])
    for d, f, connected in zip(
        bands["distances"], bands["frequencies_thz"], bands["connections"], strict=True
    ):
        ax.plot(d, f, color="C0", lw=1)
        if not ticks or abs(ticks[-1] - d[0]) > 1e-9:
            ticks.append(d[0])
            tick_labels.append(labels.pop(0))
        ticks.append(d[-1])
        tick_labels.append(labels.pop(0))
        if not connected and labels:
            tick_labels[-1] = f"{tick_labels[-1]}|{labels[0]}"
            labels.pop(0)
    ax.set_xticks(ticks, tick_labels)
    for t in ticks:
        ax.axvline(t, color="0.8", lw=0.5)
    ax.axhline(0, color="k", lw=0.5)
    ax.axhline(record["protocol"]["imaginary_threshold_thz"], color="r", lw=0.5, ls="--")
    ax.set_xlim(bands["distances"][0][0], bands["distances"][-1][-1])
    ax.set_ylabel("frequency (THz)")
    state = "stable" if record["dynamically_stable"] else "unstable"
    ax.set_title(f"{record['id']}: {state}, min {record['min_frequency_thz']:.2f} THz", fontsize=10)
    ax_dos.plot(record["dos"]["dos"], record["dos"]["frequency_thz"], color="C0", lw=1)
    ax_dos.set_xlabel("DOS")
    ax_dos.set_xticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# --- batch --------------------------------------------------------------------------------------


def phonon_candidates(
    out_dir: str | Path, protocol: PhononProtocol | None = None
) -> list[Candidate]:
    """The crystals of ``out_dir`` whose DFT result its protocol accepts, cheapest first: by
    supercell atoms, then by the CPU seconds of the material's own DFT result (a supercell SCF costs
    what the cell's SCF costs, times the supercell's size; spin, heavy elements and metals' k-points
    show in both), then by id. Candidates whose cell alone exceeds ``max_atoms`` come last."""
    from pymatgen.core import Structure

    from rhoprop.dft.labels import load_results

    protocol = protocol or PhononProtocol()
    keyed = []
    for rec in load_results(out_dir):
        if rec.get("kind", "crystal") != "crystal":
            continue
        structure = Structure.from_dict(rec["structure"])
        try:
            n, _ = supercell_multiples(
                structure.lattice.matrix,
                len(structure),
                protocol.min_supercell_edge_a,
                protocol.max_atoms,
                protocol.min_supercell_multiple,
            )
            size: float = len(structure) * math.prod(n)
        except PhononError:
            size = math.inf
        cpu = float((rec.get("timing") or {}).get("cpu_s") or math.inf)
        keyed.append(
            (size, cpu, rec["id"], Candidate(rec["id"], structure, rec.get("prototype", "user")))
        )
    return [c for *_, c in sorted(keyed, key=lambda t: (t[0], t[1], t[2]))]


def is_phonon_done(out_dir: str | Path, material_id: str, protocol: PhononProtocol) -> bool:
    """True when the material's phonon result has this protocol's hash and was computed from the DFT
    result now in the folder (same DFT protocol hash)."""
    path = phonon_result_path(out_dir, material_id)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
        source = json.loads(result_path(Path(out_dir), material_id).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return protocol.accepts(record, source)


def _phonon_work(
    material_id: str, out_dir: str, protocol: dict[str, Any], max_seconds: int, plots: bool
) -> dict[str, Any]:
    """Worker: the phonons of one material under a CPU-time limit
    (:func:`~rhoprop.dft.generate.run_limited`); never raises."""

    def task() -> dict[str, Any]:
        record = compute_phonons(material_id, out_dir, PhononProtocol.from_dict(protocol), plots)
        return {
            "status": "done",
            "natoms": record["natoms_supercell"],
            "stable": record["dynamically_stable"],
            "min_frequency": record["min_frequency_thz"],
        }

    return run_limited(material_id, task, max_seconds)


def generate_phonons(
    out_dir: str | Path,
    ids: Sequence[str] | None = None,
    workers: int = 1,
    protocol: PhononProtocol | None = None,
    retry_failed: bool = False,
    max_minutes: float = 240.0,
    plots: bool = False,
    progress: bool = True,
) -> GenerateReport:
    """Compute the phonons of the crystals of ``out_dir`` (all, or ``ids`` in that order) not yet
    done.

    One process per material (``workers`` at a time), each under a CPU-time limit of
    ``max_minutes``; failures are recorded in ``DIR/phonons/failures.json`` and skipped on reruns
    unless ``retry_failed`` (a retried material keeps its finished displacements).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if workers < 1:
        raise RhopropError(f"workers must be at least 1, got {workers}")
    protocol = protocol or PhononProtocol()
    out = Path(out_dir)
    candidates = phonon_candidates(out, protocol)
    if ids:
        candidates = select_ids(candidates, list(ids))
    pdir = phonon_dir(out)
    pdir.mkdir(parents=True, exist_ok=True)
    protocol.to_json(pdir / "protocol.json")
    phash = protocol.hash()
    failures = load_failures(pdir)
    report = GenerateReport()
    todo = []
    for c in candidates:
        old = failures.get(c.id)
        if is_phonon_done(out, c.id, protocol) or (
            not retry_failed and old is not None and old.get("protocol_hash") == phash
        ):
            report.skipped.append(c.id)
        else:
            todo.append(c.id)
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"

    def record(res: dict[str, Any]) -> str:
        mid = res["id"]
        report.seconds[mid] = res["seconds"]
        if res["status"] == "done":
            report.computed.append(mid)
            if failures.pop(mid, None) is not None:
                atomic_write_text(
                    pdir / "failures.json", json.dumps(failures, indent=1, sort_keys=True)
                )
            state = "stable" if res["stable"] else "UNSTABLE"
            return (
                f"{mid} {res['seconds']:.0f} s ({res['natoms']} atoms) {state}, "
                f"min {res['min_frequency']:.2f} THz"
            )
        report.failed[mid] = res["reason"]
        failures[mid] = failure_record(res, phash)
        atomic_write_text(pdir / "failures.json", json.dumps(failures, indent=1, sort_keys=True))
        return f"[red]{mid} failed[/red]: {res['reason'][:120]}"

    context = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1)
    pending = list(reversed(todo))
    running: dict[cf.Future[dict[str, Any]], str] = {}
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    columns = (
        TextColumn("[bold]phonons"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
    )
    try:
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("phonons", total=len(todo), last="")
            while pending or running:
                while pending and len(running) < workers:
                    mid = pending.pop()
                    running[
                        pool.submit(
                            _phonon_work,
                            mid,
                            str(out),
                            protocol.to_dict(),
                            int(max_minutes * 60),
                            plots,
                        )
                    ] = mid
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                broken = False
                for fut in finished:
                    mid = running.pop(fut)
                    try:
                        res = fut.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        res = {
                            "id": mid,
                            "status": "failed",
                            "seconds": 0.0,
                            "reason": (
                                "worker process died (crash or out of memory); its finished "
                                "displacements are kept"
                            ),
                        }
                    line = record(res)
                    bar.update(task, advance=1, last=line.split(" ")[0])
                    bar.console.print(f"{time.strftime('%H:%M:%S')} {line}")
                if broken:
                    pending.extend(running.values())
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = cf.ProcessPoolExecutor(
                        max_workers=workers, mp_context=context, max_tasks_per_child=1
                    )
    except BaseException:
        _kill_workers(pool)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        pool.shutdown(wait=False, cancel_futures=True)
    return report


# --- labels -------------------------------------------------------------------------------------


def phonon_labels(out_dir: str | Path, records: Sequence[dict[str, Any]]) -> Any:
    """``dynamically_stable`` and ``min_frequency`` of the crystals in ``records`` (DFT results)
    whose phonon result in ``DIR/phonons`` has the folder's phonon protocol and was computed from
    that very DFT result; a DataFrame indexed by id (empty when there are none)."""
    import pandas as pd

    pdir = phonon_dir(out_dir)
    columns = list(PHONON_LABEL_SCHEMA)
    if not (pdir / "results").is_dir():
        return pd.DataFrame(columns=columns)
    protocol = (
        PhononProtocol.from_json(pdir / "protocol.json")
        if (pdir / "protocol.json").exists()
        else PhononProtocol()
    )
    sources = {r["id"]: r for r in records if r.get("kind", "crystal") == "crystal"}
    rows = []
    for path in sorted((pdir / "results").glob("*.json")):
        rec = json.loads(path.read_text())
        mid = rec.get("id")
        if mid in sources and protocol.accepts(rec, sources[mid]):
            rows.append(
                {
                    "id": mid,
                    "dynamically_stable": int(bool(rec["dynamically_stable"])),
                    "min_frequency": min(0.0, float(rec["min_frequency_thz"])),
                }
            )
    frame = pd.DataFrame(rows, columns=["id", *columns]).set_index("id")
    frame["dynamically_stable"] = frame["dynamically_stable"].astype("Int64")
    return frame
