"""Gaussian cube files of periodic densities.

Convention (Gaussian, VESTA, ASE, pymatgen): line 3 holds the atom count and the grid origin (and,
optionally, the number of values per point); lines 4-6 hold ``N_i`` and the voxel vector ``v_i``.
A positive ``N_i`` means lengths in Bohr, a negative one lengths in Å. The grid has ``N_i`` points
along axis ``i`` at ``origin + i·v_1 + j·v_2 + k·v_3`` for ``i = 0 .. N_1 - 1``: the periodic cell
is ``a_i = N_i·v_i`` and the grid does **not** repeat its first plane at the far end (files written
with the endpoint repeated, such as CASTEP's castep2cube output, are refused). Values run with the
last axis fastest (x outer, z inner) and are densities in electrons/Bohr³ (atomic units), which the
reader converts to electrons/Å³. A non-zero origin is removed by shifting the atoms, so grid point
``(0, 0, 0)`` sits at the cell origin as :class:`Density` requires; the origin is kept in ``meta``.

Spin: a cube with 2 values per point (line 3 field 5 = 2) holds the total density and the
magnetization (ρ↑ − ρ↓) at each point; 4 values per point hold the total density and the x, y, z
magnetization. :func:`write_cube` writes these layouts, ASE's ``read_cube`` reads them as ``datas``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.core.units import bohr_to_ang

from rhoprop.errors import DensityFormatError
from rhoprop.io import _files
from rhoprop.io.density import Density, check_cell

BOHR3_PER_ANG3 = 1.0 / bohr_to_ang**3  # (e/Bohr³) * this = e/Å³
_SPIN_FOR_NVAL = {1: "none", 2: "collinear", 4: "non-collinear"}


def _numbers(line: bytes, count: int, lineno: int, where: str, what: str) -> list[float]:
    tokens = line.split()
    try:
        values = [float(tok) for tok in tokens]
    except ValueError:
        values = []
    if len(values) < count or not all(math.isfinite(v) for v in values):
        raise DensityFormatError(
            f"{where}: line {lineno} of the cube header should hold {what} (finite numbers), found "
            f"{line.decode('latin-1').strip()!r}"
        )
    return values


def read_cube(source: _files.Source) -> Density:
    """Read a periodic Gaussian cube file (see the module docstring for the conventions)."""
    where = str(source.path)
    with source.open() as raw, _files.decompression_errors(source):
        comment1 = raw.readline().decode("latin-1").strip()
        comment2 = raw.readline().decode("latin-1").strip()
        if "castep2cube" in comment1 + comment2:
            raise DensityFormatError(
                f"{where} was written by castep2cube, whose grids repeat the first plane at the "
                "far end; convert it with a writer that omits the periodic endpoint"
            )
        if (
            "LOOP" in comment2.upper()
            and "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z" not in comment2.upper()
        ):
            raise DensityFormatError(
                f"{where}: unsupported loop order {comment2!r}; expected x outer, z inner"
            )
        head = _numbers(raw.readline(), 4, 3, where, "the atom count and the origin")
        n_atoms = int(head[0])
        n_val = int(head[4]) if len(head) > 4 else 1
        if n_atoms < 0:
            raise DensityFormatError(
                f"{where} is a molecular-orbital cube (negative atom count on line 3), not a "
                "density"
            )
        if n_val not in _SPIN_FOR_NVAL:
            raise DensityFormatError(
                f"{where} holds {n_val} values per grid point (line 3); a density cube holds 1 "
                "(total), 2 (total, magnetization) or 4 (total, mx, my, mz)"
            )
        shape: list[int] = []
        voxels = np.empty((3, 3))
        units = set()
        for axis in range(3):
            values = _numbers(
                raw.readline(), 4, 4 + axis, where, "a point count and a voxel vector"
            )
            n = int(values[0])
            if n == 0 or n != values[0]:
                raise DensityFormatError(
                    f"{where}: line {4 + axis} gives {values[0]} grid points along axis {axis}"
                )
            shape.append(abs(n))
            units.add("bohr" if n > 0 else "angstrom")
            voxels[axis] = np.asarray(values[1:4]) * (bohr_to_ang if n > 0 else 1.0)
        if len(units) > 1:
            raise DensityFormatError(
                f"{where}: lines 4-6 mix Bohr (positive) and Å (negative) point counts"
            )
        check_cell(
            voxels * np.asarray(shape)[:, None],
            f"{where} (lines 4-6: point counts and voxel vectors)",
        )
        to_ang = bohr_to_ang if "bohr" in units else 1.0
        numbers: list[int] = []
        coords = np.empty((n_atoms, 3))
        for index in range(n_atoms):
            lineno = 7 + index
            values = _numbers(raw.readline(), 5, lineno, where, "an atom (Z, charge, x, y, z)")
            numbers.append(int(values[0]))
            coords[index] = np.asarray(values[2:5]) * to_ang
        bad = [z for z in numbers if not 1 <= z <= 118]
        if bad:
            raise DensityFormatError(
                f"{where}: atomic number(s) {bad} in the atom lines are not elements"
            )
        origin = np.asarray(head[1:4]) * to_ang
        count = int(np.prod(shape)) * n_val
        first_data_line = 7 + n_atoms
        fh = _files.as_bytes_stream(raw, source)
        data, got = _files.parse_doubles(fh, count)
        extra = _files.parse_doubles(fh, 1)[1] if got == count else 0
    if got != count or extra:
        raise _located(source, first_data_line, count, got, extra)
    if not np.all(np.isfinite(data)):
        raise _located(source, first_data_line, count, got, 0)
    data *= BOHR3_PER_ANG3
    grid = data.reshape(*shape, n_val)
    lattice = Lattice(voxels * np.asarray(shape)[:, None])
    structure = Structure(
        lattice,
        [Element.from_Z(z) for z in numbers],
        coords - origin,
        coords_are_cartesian=True,
    )
    total = grid[..., 0]
    spin = None
    if n_val == 2:
        spin = grid[..., 1]
    elif n_val == 4:
        spin = np.moveaxis(grid[..., 1:], -1, 0)
    meta = {
        "cube_units": "bohr" if to_ang != 1.0 else "angstrom",
        "origin": [float(x) for x in origin],
        "values_per_point": n_val,
        "title": comment1,
        "compression": source.compression,
    }
    return Density(
        total=np.ascontiguousarray(total),
        structure=structure,
        spin=None if spin is None else np.ascontiguousarray(spin),
        source=where,
        fmt="cube",
        code="unknown",
        meta=meta,
    )


def _located(
    source: _files.Source, first_line: int, count: int, got: int, extra: int
) -> DensityFormatError:
    """Describe a value-count or non-finite problem in a cube file with its line number."""
    lines = _files.text_lines(source.read_all())
    bad = _files.first_bad_value(lines, first_line - 1)
    if extra:
        n_values = sum(len(line.split()) for line in lines[first_line - 1 :])
        return DensityFormatError(
            f"{source.path}: expected {count} values after the header (grid and values per point "
            f"of lines 3-6), found {n_values}; the header's grid does not match the data"
        )
    if bad is not None:
        lineno, token = bad
        return DensityFormatError(
            f"{source.path}: {_files.describe_line(lines, lineno)}: {token!r} is not a finite "
            f"number (value {got + 1} of {count})"
        )
    short = _short_line(lines, first_line, count)
    if short is not None:
        lineno, found, expected = short
        return DensityFormatError(
            f"{source.path}: line {lineno} holds {found} value(s) where the lines around it hold "
            f"{expected}: a value is missing there (expected {count} values after the header, got "
            f"{got})"
        )
    return DensityFormatError(
        f"{source.path}: expected {count} values after the header (grid of lines 4-6), got {got}; "
        f"the file ends at line {len(lines)} (truncated?)"
    )


def _grid_of(lines: list[str]) -> tuple[int, int, int] | None:
    """The grid ``(N1, N2, N3)`` of a cube header (lines 4-6), None when unreadable."""
    try:
        return tuple(abs(int(float(lines[i].split()[0]))) for i in (3, 4, 5))  # type: ignore[return-value]
    except (IndexError, ValueError):
        return None


def _short_line(lines: list[str], first_line: int, count: int) -> tuple[int, int, int] | None:
    """(line number, values on it, values expected) of a data line short of values before the last
    one, in a cube whose data from ``first_line`` on should hold ``count`` values.

    Writers put a fixed number of values per line (6 for Gaussian, VESTA, ASE and rhoprop), either
    restarting a line for each z-row or running on; a line with fewer values than that layout has
    at its place, and not the last, lost a value. None when no layout points at such a line.
    """
    grid = _grid_of(lines)
    data = [
        (i + 1, len(line.split()))
        for i, line in enumerate(lines)
        if i >= first_line - 1 and line.strip()
    ]
    if grid is None or len(data) < 2 or count % (grid[0] * grid[1]):
        return None
    width = max(n for _, n in data)
    row = count // (grid[0] * grid[1])  # values per z-row: N3 times the values per point
    by_row = [width] * (row // width) + ([row % width] if row % width else [])
    for layout in (by_row, [width]):
        for k, (lineno, found) in enumerate(data[:-1]):
            expected = layout[k % len(layout)]
            if found != expected:
                if found < expected:
                    return lineno, found, expected
                break
    return None


def write_cube(density: Density, path: str | os.PathLike[str]) -> Path:
    """Write ``density`` as a cube file (Bohr, e/Bohr³, 11 significant digits; spin as extra
    values).

    The name decides compression (``.gz``, ``.bz2``, ``.xz``). Spin-polarized densities are written
    with 2 (collinear) or 4 (non-collinear) values per grid point, see the module docstring.
    """
    path = Path(path)
    fields = [density.total]
    if density.spin is not None:
        fields.extend(density.spin if density.spin.ndim == 4 else [density.spin])
    n_val = len(fields)
    nx, ny, nz = density.shape
    structure = density.structure
    voxels = structure.lattice.matrix / np.asarray(density.shape)[:, None] / bohr_to_ang
    kind = {1: "total density", 2: "total density, magnetization", 4: "total density, mx, my, mz"}[
        n_val
    ]
    lines = [
        f"{structure.composition.reduced_formula} {kind} (e/Bohr^3) written by rhoprop\n",
        "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z\n",
        f"{len(structure):5d} {0.0:19.12f} {0.0:19.12f} {0.0:19.12f}"
        + (f" {n_val:4d}\n" if n_val > 1 else "\n"),
    ]
    for axis in range(3):
        lines.append(
            f"{density.shape[axis]:5d} " + " ".join(f"{x:19.12f}" for x in voxels[axis]) + "\n"
        )
    for site in structure:
        z = site.specie.Z
        x, y, zc = site.coords / bohr_to_ang
        lines.append(f"{z:5d} {float(z):19.12f} {x:19.12f} {y:19.12f} {zc:19.12f}\n")
    per_row = nz * n_val
    row_format = "".join(
        " %.10E" + ("\n" if (i + 1) % 6 == 0 or i + 1 == per_row else "") for i in range(per_row)
    )
    stacked = np.stack(fields, axis=-1) if n_val > 1 else density.total[..., None]
    rows = (stacked * (1.0 / BOHR3_PER_ANG3)).reshape(nx * ny, per_row)
    with (
        _files.atomic_output(path) as tmp,
        _files.open_for_writing(tmp, _files.compression_for_name(path)) as out,
    ):
        out.writelines(lines)
        for row in rows.tolist():
            out.write(row_format % tuple(row))
    return path
