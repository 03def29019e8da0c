"""Writers of realistic density files and stores for the tests (and bench/preprocess.py, bench/train.py).

Each density is a physical field on a real crystal structure: every atom carries its valence
electrons as a periodic sum of two Gaussians (a compact inner shell and a diffuse outer one),
normalised so the cell holds exactly the valence electron count; magnetic elements add a
magnetization density on the inner shell. Files are written with pymatgen's CHGCAR writer (VASP 5
format, or VASP 4 without the element line), optionally gzipped. This module holds no tests.
"""

from __future__ import annotations

import gzip
import itertools
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase.build import bulk
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Chgcar, Poscar

#: (formula label, ase.build.bulk arguments): real crystal prototypes with experimental lattices.
PROTOTYPES: list[tuple[str, dict]] = [
    ("Si", {"name": "Si", "crystalstructure": "diamond", "a": 5.43}),
    ("C", {"name": "C", "crystalstructure": "diamond", "a": 3.57}),
    ("NaCl", {"name": "NaCl", "crystalstructure": "rocksalt", "a": 5.64}),
    ("MgO", {"name": "MgO", "crystalstructure": "rocksalt", "a": 4.21}),
    ("LiF", {"name": "LiF", "crystalstructure": "rocksalt", "a": 4.03}),
    ("GaAs", {"name": "GaAs", "crystalstructure": "zincblende", "a": 5.65}),
    ("Cu", {"name": "Cu", "crystalstructure": "fcc", "a": 3.61}),
    ("Al", {"name": "Al", "crystalstructure": "fcc", "a": 4.05}),
    ("Fe", {"name": "Fe", "crystalstructure": "bcc", "a": 2.87}),
    ("Ni", {"name": "Ni", "crystalstructure": "fcc", "a": 3.52}),
    ("W", {"name": "W", "crystalstructure": "bcc", "a": 3.16}),
    ("Mg", {"name": "Mg", "crystalstructure": "hcp", "a": 3.21, "c": 5.21}),
    ("CsCl", {"name": "CsCl", "crystalstructure": "cesiumchloride", "a": 4.12}),
]
VALENCE = {"Si": 4, "C": 4, "Na": 7, "Cl": 7, "Mg": 2, "O": 6, "Li": 3, "F": 7, "Ga": 13,
           "As": 5, "Cu": 11, "Al": 3, "Fe": 8, "Ni": 10, "W": 6, "Cs": 9}  # fmt: skip
MOMENT = {"Fe": 2.2, "Ni": 0.6}  # μB per atom
CRYSTAL_SYSTEM = {"Mg": "hexagonal"}
BAND_GAP = {"Si": 1.1, "C": 5.5, "NaCl": 8.5, "MgO": 7.8, "LiF": 13.6, "GaAs": 1.4, "CsCl": 8.3}


def structure_for(index: int, seed: int = 0) -> tuple[str, Structure]:
    """The ``index``-th structure: a prototype with a strained lattice and displaced atoms."""
    label, kwargs = PROTOTYPES[index % len(PROTOTYPES)]
    rng = np.random.default_rng([seed, index])
    atoms = bulk(**kwargs)
    if index % 5 == 4:
        atoms = atoms.repeat((1, 1, 2))
    cell = atoms.get_cell() @ (np.eye(3) + rng.normal(0, 0.01, (3, 3)))
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
    return label, AseAtomsAdaptor.get_structure(atoms)


def density_on_grid(
    structure: Structure, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Total density and magnetization (e/Å³) of ``structure`` at the points of a cell grid."""
    shape = tuple(int(s) for s in shape)
    frac = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), -1).reshape(
        -1, 3
    )
    lattice = structure.lattice.matrix
    volume = structure.lattice.volume
    voxel = volume / np.prod(shape)
    total = np.zeros(len(frac))
    spin = np.zeros(len(frac))
    images = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    for site in structure:
        delta = frac - site.frac_coords
        delta -= np.round(delta)
        best = np.full(len(frac), np.inf)
        shells = np.zeros((2, len(frac)))
        for image in images:
            r2 = np.sum(((delta + image) @ lattice) ** 2, axis=1)
            shells[0] += np.exp(-r2 / (2 * 0.35**2))
            shells[1] += np.exp(-r2 / (2 * 0.9**2))
            best = np.minimum(best, r2)
        symbol = site.specie.symbol
        z = VALENCE[symbol]
        inner = shells[0] / (shells[0].sum() * voxel)
        outer = shells[1] / (shells[1].sum() * voxel)
        total += z * (0.4 * inner + 0.6 * outer)
        spin += MOMENT.get(symbol, 0.0) * inner
    has_spin = any(site.specie.symbol in MOMENT for site in structure)
    return total.reshape(shape), (spin.reshape(shape) if has_spin else None)


def grid_shape(structure: Structure, spacing: float) -> tuple[int, int, int]:
    """Grid points per lattice vector for about ``spacing`` Å between points (even, >= 8)."""
    n = [max(8, int(np.ceil(a / spacing / 2)) * 2) for a in structure.lattice.abc]
    return n[0], n[1], n[2]


def write_chgcar(
    path: Path, structure: Structure, spacing: float = 0.4, vasp4: bool = False
) -> Path:
    """Write a CHGCAR of ``structure``'s density (gzipped when ``path`` ends in .gz)."""
    total, spin = density_on_grid(structure, grid_shape(structure, spacing))
    volume = structure.lattice.volume
    data = {"total": total * volume}
    if spin is not None:
        data["diff"] = spin * volume
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    Chgcar(Poscar(structure), data).write_file(plain, vasp4_compatible=vasp4)
    if vasp4:
        lines = plain.read_text().splitlines(keepends=True)
        if not lines[5].split()[0].isdigit():  # drop the element line if the writer kept it
            del lines[5]
        plain.write_text("".join(lines))
    if plain != path:
        with open(plain, "rb") as src, gzip.open(path, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
        plain.unlink()
    return path


def labels_row(label: str, structure: Structure, index: int) -> dict[str, object]:
    """Plausible labels of a generated sample (some deliberately missing)."""
    gap = BAND_GAP.get(label, 0.0)
    magnetic = label in MOMENT
    row: dict[str, object] = {
        "band_gap": round(gap + 0.01 * (index % 7), 3),
        "is_metal": int(gap == 0.0),
        "crystal_system": CRYSTAL_SYSTEM.get(label, "cubic"),
        "magnetization": round(MOMENT.get(label, 0.0) * len(structure), 3) if magnetic else 0.0,
        "bulk_modulus": "" if index % 3 else round(50 + 10 * (index % 11), 1),
    }
    return row


def write_dataset_folder(
    root: Path, count: int, seed: int = 0, spacing: float = 0.45, layout: str = "mixed"
) -> tuple[list[str], list[dict[str, object]]]:
    """Write ``count`` CHGCARs under ``root``; returns their ids and label rows (with ``id``).

    ``layout="mixed"`` names files three ways in turn: ``<id>.CHGCAR.gz``, ``<id>/CHGCAR`` and
    ``CHGCAR_<id>``; ``"flat"`` uses ``<id>.CHGCAR`` only.
    """
    ids, rows = [], []
    for i in range(count):
        label, structure = structure_for(i, seed)
        sid = f"gen-{i:04d}"
        if layout == "flat" or i % 3 == 0:
            path = root / (f"{sid}.CHGCAR.gz" if layout == "mixed" else f"{sid}.CHGCAR")
        elif i % 3 == 1:
            path = root / sid / "CHGCAR"
        else:
            path = root / f"CHGCAR_{sid}"
        write_chgcar(path, structure, spacing)
        ids.append(sid)
        rows.append({"id": sid, **labels_row(label, structure, i)})
    return ids, rows


def write_labels_csv(
    path: Path, rows: Sequence[dict[str, object]], extra_lines: Sequence[str] = ()
) -> Path:
    """Write label rows (first key ``id``) as CSV, plus raw ``extra_lines`` appended verbatim."""
    keys = list(rows[0])
    lines = [",".join(keys)]
    lines += [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    lines += list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


_BUILT: dict[tuple, tuple[Path, Path, list[str], list[dict[str, object]]]] = {}


def built_store(
    tmp_path_factory, count: int = 12, n: int = 16, channels: tuple[str, ...] = ("total", "spin")
) -> tuple[Path, Path, list[str], list[dict[str, object]]]:
    """A store built once per session from ``count`` generated files: (store, inputs, ids, rows).

    Tests that use it must not write to it; they copy it first when they need to.
    """
    from rhoprop.data import build_dataset
    from rhoprop.grid.settings import StandardizeSettings

    key = (count, n, channels)
    if key not in _BUILT:
        root = tmp_path_factory.mktemp(f"store{count}")
        ids, rows = write_dataset_folder(root / "in", count)
        labels = write_labels_csv(root / "labels.csv", rows)
        settings = StandardizeSettings(n=n, channels=channels)
        report = build_dataset(
            root / "in", labels, root / "ds", settings, workers=1, progress=False
        )
        assert report.clean, report.entries
        _BUILT[key] = (root / "ds", root / "in", ids, rows)
    return _BUILT[key]


def build_store(root: Path, count: int = 20) -> Path:
    """A store at ``root/ds`` of ``count`` generated densities labelled with exact properties of
    their structures (mass density, volume per atom, valence electron density), split 0.6/0.2/0.2
    as ``default``."""
    from rhoprop.data import DatasetStore, build_dataset, make_split
    from rhoprop.grid.settings import StandardizeSettings

    ids, _ = write_dataset_folder(root / "in", count, layout="flat")
    lines = ["id,density,volume_per_atom,valence_density"]
    for i, sid in enumerate(ids):
        _, s = structure_for(i)
        electrons = sum(VALENCE[str(site.specie)] for site in s)
        lines.append(f"{sid},{s.density:.5f},{s.volume / len(s):.4f},{electrons / s.volume:.5f}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    report = build_dataset(
        root / "in",
        root / "labels.csv",
        root / "ds",
        StandardizeSettings(n=12),
        workers=1,
        progress=False,
    )
    assert report.clean
    make_split(DatasetStore(root / "ds"), fractions=(0.6, 0.2, 0.2), seed=0)
    return root / "ds"
