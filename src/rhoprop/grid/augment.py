"""Tensor-level augmentation: periodic rolls and point-group operations of standardized densities.

Conventions (``x`` is ``(..., n, n, n)``, numpy or torch; the last three axes are spatial):

* :func:`roll` moves the sampling origin by whole voxels, ``x'[g] = x[g + shift]``. In mode ``cell``
  this is exact: it equals ``standardize(..., origin_shift=shift / n)``. In mode ``cube`` the cube
  is not periodic, so a translated origin needs ``standardize(..., origin_shift=...)`` instead.
* :func:`apply_op` applies a rotation ``R`` that is a signed permutation matrix (one of the 48
  :data:`CUBIC_OPS`) as an axis permutation plus flips: ``x'`` is the field rotated by ``R`` about
  the grid's centre point (mode ``cube``: reflection ``i -> n-1-i``), or about the first grid point
  of the periodic cell grid (mode ``cell``: ``i -> -i mod n``). Exact, no interpolation.
* Rotating by any cubic op gives the tensor of the crystal rotated about the cube centre (a valid
  augmentation for scalar properties). When ``(R, t)`` is a symmetry operation of the crystal
  (:func:`symmetry_ops`), the rotated tensor is the tensor of the *same* crystal in the same
  orientation with its origin moved (:func:`equivalent_origin_shift`): an exact, interpolation-free
  origin translation even in mode ``cube``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from rhoprop.errors import RhopropError, SettingsError
from rhoprop.grid.settings import MODES, StandardizeSettings

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _cubic_ops() -> np.ndarray:
    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3), dtype=int)
            matrix[np.arange(3), perm] = signs
            ops.append(matrix)
    return np.stack(ops)


#: The 48 signed permutation matrices (the cube's point group m-3m); ``CUBIC_OPS[0]`` is the
#: identity.
CUBIC_OPS: np.ndarray = _cubic_ops()


@dataclasses.dataclass(frozen=True)
class SymmetryOp:
    """A space-group operation ``r -> rotation @ r + translation`` that maps the grid onto itself.

    Attributes:
        rotation: ``(3, 3)`` int signed permutation matrix, Cartesian (mode ``cube``) or
            fractional (mode ``cell``).
        translation: ``(3,)`` float, Cartesian Å (mode ``cube``) or fractional (mode ``cell``).
    """

    rotation: np.ndarray
    translation: np.ndarray


def _signed_permutation(
    rotation: np.ndarray | Sequence[Sequence[int]],
) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.asarray(rotation)
    rounded = np.rint(matrix).astype(int)
    ok = (
        rounded.shape == (3, 3)
        and np.allclose(matrix, rounded, atol=1e-6)
        and np.all(np.abs(rounded).sum(axis=0) == 1)
        and np.all(np.abs(rounded).sum(axis=1) == 1)
    )
    if not ok:
        raise RhopropError(
            "rotation must be a 3x3 signed permutation matrix (one of the 48 cubic ops), got "
            f"{matrix.tolist()}"
        )
    perm = np.argmax(np.abs(rounded), axis=1)
    return perm, rounded[np.arange(3), perm]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise SettingsError(f"mode must be one of {MODES}, got {mode!r}")


def apply_op(
    x: ArrayT, rotation: np.ndarray | Sequence[Sequence[int]], mode: str = "cube"
) -> ArrayT:
    """Rotate the field in ``x`` (..., n, n, n) by the signed permutation ``rotation`` (see module
    doc)."""
    _check_mode(mode)
    if x.ndim < 3 or len(set(x.shape[-3:])) != 1:
        raise RhopropError(f"apply_op needs a tensor (..., n, n, n), got shape {tuple(x.shape)}")
    perm, signs = _signed_permutation(rotation)
    lead = x.ndim - 3
    axes = list(range(lead)) + [lead + int(p) for p in perm]
    flips = [lead + i for i in range(3) if signs[i] < 0]
    if isinstance(x, torch.Tensor):
        y = x.permute(*axes)
        if flips:
            y = torch.flip(y, flips)
            if mode == "cell":
                y = torch.roll(y, [1] * len(flips), flips)
        return y.contiguous()
    y = np.transpose(x, axes)
    if flips:
        y = np.flip(y, tuple(flips))
        if mode == "cell":
            y = np.roll(y, 1, tuple(flips))
    return np.ascontiguousarray(y)


def roll(x: ArrayT, shift: Sequence[int]) -> ArrayT:
    """Move the sampling origin by ``shift`` whole voxels: ``x'[g] = x[(g + shift) mod n]``."""
    if x.ndim < 3 or len(shift) != 3:
        raise RhopropError(
            f"roll needs a tensor (..., n, n, n) and 3 shifts, got {tuple(x.shape)}, {shift}"
        )
    dims = (x.ndim - 3, x.ndim - 2, x.ndim - 1)
    minus = tuple(-int(s) for s in shift)
    if isinstance(x, torch.Tensor):
        return torch.roll(x, minus, dims)
    return np.roll(x, minus, dims)


def symmetry_ops(
    structure: Structure, mode: str = "cube", symprec: float = 0.01, angle_tolerance: float = 5.0
) -> list[SymmetryOp]:
    """The crystal's space-group operations whose rotation maps the ``mode`` grid onto itself.

    Mode ``cube``: Cartesian rotations that are signed permutations (those of the crystal's point
    group among the 48 cubic ops); mode ``cell``: fractional rotations that are signed
    permutations of the lattice vectors. One operation per rotation (identity first); spglib
    finds them (via pymatgen) with tolerances ``symprec`` (Å) and ``angle_tolerance`` (degrees).
    """
    _check_mode(mode)
    analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    found: dict[bytes, SymmetryOp] = {}
    for op in analyzer.get_symmetry_operations(cartesian=mode == "cube"):
        rotation = op.rotation_matrix
        rounded = np.rint(rotation).astype(int)
        if np.abs(rotation - rounded).max() > 1e-3:
            continue
        if not (
            np.all(np.abs(rounded).sum(axis=0) == 1) and np.all(np.abs(rounded).sum(axis=1) == 1)
        ):
            continue
        key = rounded.tobytes()
        if key not in found:
            translation = np.array(op.translation_vector, dtype=float)
            found[key] = SymmetryOp(rotation=rounded, translation=translation)
    identity = np.eye(3, dtype=int).tobytes()
    return sorted(
        found.values(), key=lambda s: (s.rotation.tobytes() != identity, s.rotation.tobytes())
    )


def equivalent_origin_shift(
    op: SymmetryOp,
    structure: Structure,
    settings: StandardizeSettings,
    origin_shift: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Fractional origin shift ``s`` with
    ``apply_op(standardize(d, st, origin_shift=o).x, op.rotation)`` equal to
    ``standardize(d, st, origin_shift=s).x`` for a symmetry ``op`` of ``d``'s crystal.

    With ``c`` the rotation centre (the cube's centre point, or the cell grid's first point) and the
    symmetry ``rho(R r + t) = rho(r)``, the rotated tensor samples ``rho`` at
    ``x_g + t + (R - 1) c``.
    """
    lattice = structure.lattice.matrix
    shift = np.asarray(origin_shift, dtype=float)
    rotation = np.asarray(op.rotation, dtype=float)
    if settings.mode == "cube":
        centre = shift @ lattice + (settings.n - 1) * settings.edge / settings.n / 2
        origin = shift @ lattice + op.translation + (rotation - np.eye(3)) @ centre
        return origin @ np.linalg.inv(lattice)
    return rotation @ shift + op.translation


@dataclasses.dataclass
class RandomAugment:
    """Random label-preserving augmentation ``x (C, n, n, n) -> x'`` for
    ``DensityDataset(augment=...)``.

    Each call applies one rotation drawn from ``rotations`` (default: all 48 cubic ops in mode
    ``cube``, i.e. the crystal rotated about the cube centre; none in mode ``cell``, where axis
    permutations and flips would disagree with the lattice side features) and, in mode ``cell``
    with ``roll=True``, a uniformly random periodic roll (an exact origin translation). Each
    DataLoader worker and distributed rank draws its own reproducible stream from
    ``(seed, RANK, worker id)``.
    """

    mode: str = "cube"
    rotations: np.ndarray | None = None
    roll: bool = True
    seed: int | None = None
    _rng: np.random.Generator | None = dataclasses.field(default=None, init=False, repr=False)
    _key: tuple[int, int] | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_mode(self.mode)
        if self.rotations is None:
            self.rotations = CUBIC_OPS if self.mode == "cube" else CUBIC_OPS[:1]
        self.rotations = np.asarray(self.rotations, dtype=int).reshape(-1, 3, 3)
        for rotation in self.rotations:
            _signed_permutation(rotation)

    @classmethod
    def from_symmetry(
        cls,
        structure: Structure,
        settings: StandardizeSettings,
        roll: bool = True,
        seed: int | None = None,
    ) -> RandomAugment:
        """Augmentation restricted to ``structure``'s own grid-compatible point-group operations."""
        ops = symmetry_ops(structure, settings.mode)
        return cls(settings.mode, np.stack([op.rotation for op in ops]), roll, seed)

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = (int(os.environ.get("RANK", 0)), -1 if info is None else info.id)
        if self._rng is None or self._key != key:
            self._rng = np.random.default_rng(
                None if self.seed is None else [self.seed, key[0], key[1] + 1]
            )
            self._key = key
        return self._rng

    def __call__(self, x: ArrayT) -> ArrayT:
        """Return an augmented copy of ``x`` (..., n, n, n)."""
        rng = self._generator()
        assert self.rotations is not None  # __post_init__ filled it in
        y = apply_op(x, self.rotations[rng.integers(len(self.rotations))], self.mode)
        if self.roll and self.mode == "cell":
            y = roll(y, [int(s) for s in rng.integers(0, x.shape[-1], 3)])
        return y
