"""XCrySDen XSF files of periodic crystals with a 3D data grid (``BEGIN_BLOCK_DATAGRID_3D``).

Conventions: lengths in Å; the values are taken as electrons/Å³ (XSF itself names no unit). XSF
grids are *general* grids: ``n_i`` points spanning the vector ``s_i`` from the first point to the
last, so a periodic grid over the cell repeats its first plane at the far end (``s_i`` equals the
cell vector ``a_i``); the reader drops that duplicated last plane along each axis, giving
``n_i - 1`` points with the first at the cell origin. ASE's ``write_xsf`` instead writes ``n_i``
points without the endpoint and spanning vectors ``a_i·(n_i+1)/n_i``; that layout is recognised and
read without dropping anything. Grids whose spanning vectors are neither (a sub-box of the cell)
are refused. Values run with the first axis fastest. Only the first grid of the first block is read.
"""

from __future__ import annotations

import math
from typing import IO, Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from rhoprop.errors import DensityFormatError
from rhoprop.io import _files
from rhoprop.io.density import Density, check_cell

KEYWORDS = frozenset(
    {
        "CRYSTAL",
        "SLAB",
        "POLYMER",
        "MOLECULE",
        "ATOMS",
        "ANIMSTEPS",
        "PRIMVEC",
        "CONVVEC",
        "PRIMCOORD",
    }
)
_SPAN_ATOL = 1e-4  # Å; ASE writes the spanning vectors with 6 decimals


class _Lines:
    """Content lines of a binary stream (blank and ``#`` lines skipped), with line numbers."""

    def __init__(self, fh: IO[bytes], where: str) -> None:
        self.fh = fh
        self.where = where
        self.lineno = 0

    def next(self, expecting: str) -> str:
        while True:
            raw = self.fh.readline()
            if not raw:
                raise DensityFormatError(
                    f"{self.where}: the file ends at line {self.lineno}, expecting {expecting}"
                )
            self.lineno += 1
            text = raw.decode("latin-1").strip()
            if text and not text.startswith("#"):
                return text

    def numbers(self, count: int, expecting: str) -> list[float]:
        text = self.next(expecting)
        try:
            values = [float(tok) for tok in text.split()]
        except ValueError:
            values = []
        if len(values) < count or not all(math.isfinite(v) for v in values):
            raise DensityFormatError(
                f"{self.where}: line {self.lineno} should hold {expecting} (finite numbers), found "
                f"{text!r}"
            )
        return values


def _species(token: str, where: str, lineno: int) -> Element:
    try:
        return Element.from_Z(int(token)) if token.isdigit() else Element(token.capitalize())
    except (ValueError, KeyError):
        raise DensityFormatError(f"{where}: line {lineno}: {token!r} is not an element") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _skip_block(lines: _Lines, end: str) -> None:
    """Skip the lines of a block this reader does not use (BEGIN_INFO, a 2D grid, a band grid)."""
    while not lines.next(f"the {end} line closing a block").upper().startswith(end):
        pass


def read_xsf(source: _files.Source) -> Density:
    """Read the first 3D data grid of a periodic (CRYSTAL) XSF file as a density."""
    where = str(source.path)
    with source.open() as raw, _files.decompression_errors(source):
        lines = _Lines(raw, where)
        cell: np.ndarray | None = None
        species: list[Element] = []
        coords: list[list[float]] = []
        periodic = False
        last_key = "the start of the file"
        while True:
            text = lines.next("a BEGIN_BLOCK_DATAGRID_3D block")
            key = text.split()[0].upper()
            if _is_number(key):
                raise DensityFormatError(
                    f"{where}: line {lines.lineno}: numbers {text!r} where a keyword was expected "
                    f"(after {last_key}): a line too many, or a count line that does not match its "
                    "lines"
                )
            last_key = f"{key} on line {lines.lineno}"
            if key.startswith(("BEGIN_INFO", "BEGIN_BLOCK_")) and not (
                key.startswith("BEGIN_BLOCK_DATAGRID") and "3D" in key
            ):
                _skip_block(lines, "END_INFO" if key.startswith("BEGIN_INFO") else "END_BLOCK_")
            elif key == "CRYSTAL":
                periodic = True
            elif key in ("SLAB", "POLYMER", "MOLECULE", "ATOMS", "ANIMSTEPS"):
                raise DensityFormatError(
                    f"{where}: line {lines.lineno}: {key} files are not supported; a density needs "
                    "a single 3D-periodic CRYSTAL structure"
                )
            elif key == "PRIMVEC":
                cell = np.array(
                    [lines.numbers(3, "a lattice vector (3 numbers)")[:3] for _ in range(3)]
                )
            elif key == "CONVVEC":
                for _ in range(3):
                    lines.numbers(3, "a lattice vector (3 numbers)")
            elif key == "PRIMCOORD":
                count_line = lines.numbers(1, "the atom count and 1")
                if len(count_line) > 2 or count_line[0] != int(count_line[0]) or count_line[0] < 1:
                    raise DensityFormatError(
                        f"{where}: line {lines.lineno}: expected the atom count and 1 after "
                        f"PRIMCOORD, found {count_line}"
                    )
                n_atoms = int(count_line[0])
                for _ in range(n_atoms):
                    parts = lines.next("an atom line (symbol or Z, x, y, z)").split()
                    if len(parts) < 4:
                        raise DensityFormatError(
                            f"{where}: line {lines.lineno}: expected 'Z x y z', found {parts}"
                        )
                    species.append(_species(parts[0], where, lines.lineno))
                    try:
                        coords.append([float(x) for x in parts[1:4]])
                    except ValueError:
                        raise DensityFormatError(
                            f"{where}: line {lines.lineno}: bad coordinates {parts[1:4]}"
                        ) from None
            elif key.startswith("BEGIN_BLOCK_DATAGRID") and "3D" in key:
                break
        if not periodic or cell is None or not species:
            raise DensityFormatError(
                f"{where}: a CRYSTAL keyword, a PRIMVEC cell and PRIMCOORD atoms must precede the "
                "data grid"
            )
        check_cell(cell, f"{where} (PRIMVEC)")
        lines.next("the name of the data block")
        begin = lines.next("BEGIN_DATAGRID_3D")
        if not begin.upper().startswith(("BEGIN_DATAGRID_3D", "DATAGRID_3D")):
            raise DensityFormatError(
                f"{where}: line {lines.lineno}: expected BEGIN_DATAGRID_3D, found {begin!r}"
            )
        dims = lines.numbers(3, "the grid size (3 integers)")[:3]
        n = [int(x) for x in dims]
        if any(x < 2 or x != y for x, y in zip(n, dims, strict=True)):
            raise DensityFormatError(f"{where}: line {lines.lineno}: bad grid size {dims}")
        origin = np.array(lines.numbers(3, "the grid origin")[:3])
        span = np.array([lines.numbers(3, "a spanning vector")[:3] for _ in range(3)])
        first_data_line = lines.lineno + 1
        count = int(np.prod(n))
        fh = _files.as_bytes_stream(raw, source)
        values, got = _files.parse_doubles(fh, count)
        end = b""
        while not end and (raw_line := fh.readline()):
            end = raw_line.strip()
    if (
        got != count
        or not end.upper().startswith(b"END_DATAGRID")
        or not np.all(np.isfinite(values))
    ):
        raise _located(source, first_data_line, count, got)
    grid = values.reshape(n[::-1]).transpose()
    with_endpoint = np.allclose(span, cell, atol=_SPAN_ATOL, rtol=0)
    ase_layout = np.allclose(
        span, cell * ((np.array(n) + 1) / np.array(n))[:, None], atol=_SPAN_ATOL, rtol=0
    )
    meta: dict[str, Any] = {
        "origin": [float(x) for x in origin],
        "compression": source.compression,
    }
    if with_endpoint:
        first_plane_gap = max(
            float(np.abs(grid[-1] - grid[0]).max()),
            float(np.abs(grid[:, -1] - grid[:, 0]).max()),
            float(np.abs(grid[:, :, -1] - grid[:, :, 0]).max()),
        )
        grid = grid[:-1, :-1, :-1]
        meta.update(grid_layout="periodic endpoint dropped", endpoint_max_abs_diff=first_plane_gap)
    elif ase_layout:
        meta.update(grid_layout="ase (no endpoint)")
    else:
        raise DensityFormatError(
            f"{where}: the grid's spanning vectors {span.round(6).tolist()} are not the cell "
            f"vectors {cell.round(6).tolist()}: the grid does not cover exactly one periodic cell"
        )
    structure = Structure(
        Lattice(cell), species, np.array(coords) - origin, coords_are_cartesian=True
    )
    return Density(
        total=np.ascontiguousarray(grid),
        structure=structure,
        source=where,
        fmt="xsf",
        code="unknown",
        meta=meta,
    )


def _located(source: _files.Source, first_line: int, count: int, got: int) -> DensityFormatError:
    """Describe a value-count or non-finite problem in the data grid with its line number."""
    lines = _files.text_lines(source.read_all())
    bad = _files.first_bad_value(lines, first_line - 1, stop_prefixes=("END_DATAGRID",))
    end = next(
        (
            i + 1
            for i in range(first_line - 1, len(lines))
            if lines[i].strip().upper().startswith("END_DATAGRID")
        ),
        None,
    )
    if bad is not None:
        lineno, token = bad
        return DensityFormatError(
            f"{source.path}: {_files.describe_line(lines, lineno)}: {token!r} is not a finite "
            f"number (grid of {count} values from line {first_line})"
        )
    if end is None:
        return DensityFormatError(
            f"{source.path}: the data grid from line {first_line} has no END_DATAGRID_3D; the file "
            f"ends at line {len(lines)} after {got} of {count} values (truncated?)"
        )
    n_values = sum(len(line.split()) for line in lines[first_line - 1 : end - 1])
    return DensityFormatError(
        f"{source.path}: the data grid from line {first_line} to line {end} holds {n_values} "
        f"values; its size line says {count}"
    )
