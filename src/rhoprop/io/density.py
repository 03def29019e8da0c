"""The :class:`Density` object every reader returns and every later stage consumes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

import rhoprop._spglib  # noqa: F401  (pymatgen brought spglib in: switch it to raising errors)
from rhoprop.errors import DensityFormatError

MAX_CELL_LENGTH = 1e4
"""Å: a cell vector component beyond this is taken as corruption, not a cell."""


def check_cell(matrix: np.ndarray, where: str) -> None:
    """Raise DensityFormatError unless the rows of ``matrix`` (Å) are three finite vectors spanning
    a volume.

    ``where`` names the file and the lines that hold the cell, for the message.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise DensityFormatError(
            f"{where}: the cell vectors are not three finite 3-vectors: {m.tolist()}"
        )
    if np.abs(m).max() > MAX_CELL_LENGTH:
        raise DensityFormatError(
            f"{where}: the cell vectors {m.tolist()} hold a component beyond {MAX_CELL_LENGTH:g} "
            "Å, no periodic cell of a density grid; the file is corrupt"
        )
    lengths = np.linalg.norm(m, axis=1)
    volume = abs(float(np.linalg.det(m)))
    if lengths.min() <= 0.0 or volume <= 1e-6 * float(lengths.prod()):
        raise DensityFormatError(
            f"{where}: the cell vectors {np.round(m, 6).tolist()} Å span no volume ({volume:.3g} "
            "Å³: a zero vector or vectors in one plane); the file is corrupt"
        )


def check_positions(structure: Structure, where: str, first_line: int | None = None) -> None:
    """Raise DensityFormatError naming the first atoms whose positions are not finite numbers.

    ``first_line``: the file's line (1-based) holding the first atom, to name each bad atom's line.
    """
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(frac), axis=1))
    if bad.size == 0:
        return
    named = [
        f"atom {i + 1} ({structure[int(i)].species_string})"
        + (f" on line {first_line + int(i)}" if first_line is not None else "")
        for i in bad[:5]
    ]
    raise DensityFormatError(
        f"{where}: {bad.size} atom position(s) are not finite numbers (NaN or inf): "
        f"{', '.join(named)}" + (" ..." if bad.size > 5 else "") + "; the file is corrupt"
    )


@dataclasses.dataclass
class Density:
    """A periodic electronic charge density on a regular grid over one unit cell.

    Attributes:
        total: total (valence) electron density, shape ``(nx, ny, nz)``, in electrons/Å³.
            Grid point ``(i, j, k)`` sits at fractional coordinates ``(i/nx, j/ny, k/nz)``.
        structure: the crystal structure (lattice in Å, Cartesian frame of the file).
        spin: magnetization density in μB/Å³ (equivalently electrons/Å³, ρ↑ − ρ↓): shape
            ``(nx, ny, nz)`` for collinear spin, ``(3, nx, ny, nz)`` for non-collinear (x, y, z
            components); ``None`` where the file has no spin information.
        source: where the density came from (a path, or a description).
        fmt: the file format it was read from (``"chgcar"``, ``"cube"``, ``"xsf"``, ``"gpaw"``...).
        code: the code that produced it when known (``"vasp"``, ``"gpaw"``), else ``"unknown"``.
        meta: anything else worth keeping (e.g. valence electrons per species).
    """

    total: np.ndarray
    structure: Structure
    spin: np.ndarray | None = None
    source: str = ""
    fmt: str = ""
    code: str = "unknown"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.total = np.asarray(self.total, dtype=np.float64)
        where = f" in {self.source}" if self.source else ""
        check_cell(self.structure.lattice.matrix, f"cell{where}")
        check_positions(self.structure, f"structure{where}")
        if self.total.ndim != 3 or min(self.total.shape) < 1:
            raise DensityFormatError(
                f"density grid{where} must be 3-dimensional (nx, ny, nz), got shape "
                f"{self.total.shape}"
            )
        if not np.all(np.isfinite(self.total)):
            bad = int(np.count_nonzero(~np.isfinite(self.total)))
            raise DensityFormatError(
                f"density grid{where} has {bad} non-finite value(s) (NaN or inf) out of "
                f"{self.total.size}; the file is corrupt"
            )
        if self.spin is not None:
            self.spin = np.asarray(self.spin, dtype=np.float64)
            ok = self.spin.shape in (self.total.shape, (3, *self.total.shape))
            if not ok:
                raise DensityFormatError(
                    f"spin grid{where} has shape {self.spin.shape}; expected {self.total.shape} "
                    f"(collinear) or {(3, *self.total.shape)} (non-collinear)"
                )
            if not np.all(np.isfinite(self.spin)):
                raise DensityFormatError(f"spin grid{where} has non-finite values (NaN or inf)")

    @property
    def lattice(self) -> Lattice:
        """The lattice (Å) of the cell the grid spans."""
        return self.structure.lattice

    @property
    def shape(self) -> tuple[int, int, int]:
        """The native grid shape ``(nx, ny, nz)``."""
        return tuple(int(n) for n in self.total.shape)  # type: ignore[return-value]

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return float(self.structure.lattice.volume)

    @property
    def is_spin_polarized(self) -> bool:
        """True when a magnetization grid is present."""
        return self.spin is not None

    @property
    def is_noncollinear(self) -> bool:
        """True when the magnetization grid has three components."""
        return self.spin is not None and self.spin.ndim == 4

    @property
    def grid_spacing(self) -> float:
        """Largest distance (Å) between neighbouring grid points along a lattice vector."""
        return float(max(self.lattice.abc[i] / self.total.shape[i] for i in range(3)))

    def electron_count(self) -> float:
        """Number of electrons in the cell: the mean density times the volume."""
        return float(self.total.mean() * self.volume)

    def total_magnetization(self) -> float | np.ndarray:
        """Total moment in μB per cell (a 3-vector when non-collinear); 0.0 without spin."""
        if self.spin is None:
            return 0.0
        if self.spin.ndim == 4:
            return np.asarray(self.spin.reshape(3, -1).mean(axis=1) * self.volume, dtype=float)
        return float(self.spin.mean() * self.volume)

    def summary(self) -> dict[str, str]:
        """Human-readable facts about the density (label -> text), as shown by
        ``rhoprop inspect``."""
        lattice = self.lattice
        structure = self.structure
        spacing = ", ".join(f"{lattice.abc[i] / self.shape[i]:.4f}" for i in range(3))
        magnetization = np.atleast_1d(self.total_magnetization())
        moments = ", ".join(f"{round(float(m), 4) + 0.0:.4f}" for m in magnetization)
        if self.spin is None:
            moment = "none (no spin block)"
        elif self.is_noncollinear:
            moment = f"({moments}) μB, non-collinear"
        else:
            absolute = float(np.abs(self.spin).mean() * self.volume)
            moment = f"{moments} μB (collinear; ∫|m| = {absolute:.4f} μB)"
        details = ", ".join(
            f"{key}={value}"
            for key, value in self.meta.items()
            if not isinstance(value, list | dict)
        )
        return {
            "file": self.source or "-",
            "format": self.fmt or "-",
            "code": self.code,
            "formula": (
                f"{structure.composition.reduced_formula} ({structure.composition.formula}, "
                f"{len(structure)} atoms)"
            ),
            "lattice a, b, c": ", ".join(f"{x:.4f}" for x in lattice.abc) + " Å",
            "angles α, β, γ": ", ".join(f"{x:.3f}" for x in lattice.angles) + "°",
            "volume": f"{self.volume:.4f} Å³",
            "grid": " × ".join(str(n) for n in self.shape) + f" ({self.total.size} points)",
            "spacing": f"{spacing} Å",
            "electrons": f"{self.electron_count():.4f}",
            "magnetization": moment,
            "density min, max": f"{self.total.min():.6g}, {self.total.max():.6g} e/Å³",
            "details": details or "-",
        }

    def __repr__(self) -> str:
        spin = (
            "none"
            if self.spin is None
            else ("non-collinear" if self.is_noncollinear else "collinear")
        )
        return (
            f"Density({self.structure.composition.reduced_formula}, grid={self.shape}, "
            f"electrons={self.electron_count():.3f}, spin={spin}, fmt={self.fmt!r}, "
            f"source={self.source!r})"
        )
