"""Standardize a :class:`~rhoprop.io.Density` into a fixed ``(C, n, n, n)`` float32 tensor.

Mode ``cube`` samples the periodic field at the points ``x_ijk = origin + (i, j, k) * edge / n``
(``i, j, k = 0 .. n-1``) of a cube of edge ``edge`` Å whose axes are the Cartesian x, y, z of the
density's own frame. With ``origin="site"`` (the default) the cube is centred on a canonical site of
the crystal (:mod:`rhoprop.grid.origin`), so the tensor does not depend on where the file puts its
origin; with ``origin="corner"`` its first sample point sits at the Cartesian origin (plus
``origin_shift``): the points of pyrho's ``ChargeDensity.get_data_in_cube``. Because it
samples the physical field, the primitive cell, the conventional cell and any supercell of the same
crystal (same Cartesian frame) give the same tensor up to interpolation error. Values between
native grid points come from a periodic cubic B-spline fitted through every native point (the
compiled kernels of :mod:`rhoprop.grid._spline`; the values of ``scipy.ndimage``'s
``mode="grid-wrap"`` spline), or trilinear interpolation with ``interpolation="linear"``
(what pyrho does; about 30x less accurate on 0.15 Å grids).

Mode ``cell`` resamples the unit cell to ``n³`` points at fractional coordinates ``(i, j, k) / n``
by Fourier truncation or zero padding (the band-limited interpolant, sampled exactly; the electron
count is kept exactly); lattice parameters ``a, b, c`` (Å) and ``alpha, beta, gamma`` (degrees)
become the side features.

Channels: ``total`` (e/Å³); ``spin``: the magnetization as a scalar field (μB/Å³) -- the collinear
ρ↑ − ρ↓, or for non-collinear densities the signed component of m(r) along the principal
magnetization axis (the eigenvector of ``sum_r m m^T`` with the largest eigenvalue), which equals
``m_z`` when the moments lie along z and the collinear channel for a collinear magnet; its sign is
fixed so that the total moment is >= 0 (spin-flip symmetry); zeros when the density has no spin;
``deformation``: ρ minus the superposition of free-atom valence densities
(:func:`rhoprop.grid.atoms.atomic_superposition`) scaled to the density's own electron count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import ModuleType

import numpy as np
from scipy import ndimage

from rhoprop.errors import DensityFormatError, SettingsError
from rhoprop.grid.atoms import atomic_superposition
from rhoprop.grid.origin import canonical_origin
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.grid.transforms import apply_transform
from rhoprop.io.density import Density

#: Below this total moment (μB per cell) the sign of the spin channel is left as it is.
MOMENT_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class StandardizedDensity:
    """A density on the fixed grid a model reads.

    Attributes:
        x: the channels, shape ``(C, n, n, n)``, float32, after the settings' value transform.
        side: side features, shape ``(S,)``, float32 (lattice parameters in mode ``cell``; empty
            in mode ``cube``).
        has_spin: whether the source density carried spin information.
    """

    x: np.ndarray
    side: np.ndarray
    has_spin: bool


def spin_field(density: Density) -> np.ndarray | None:
    """The magnetization as a scalar field on the native grid (see module docstring), or None."""
    if density.spin is None:
        return None
    spin = density.spin
    if spin.ndim == 4:
        flat = spin.reshape(3, -1)
        _, vectors = np.linalg.eigh(flat @ flat.T)
        axis = vectors[:, -1]
        spin = np.tensordot(axis, spin, axes=1)
    if spin.mean() * density.volume < -MOMENT_TOLERANCE:
        spin = -spin
    return spin


def deformation_field(density: Density) -> np.ndarray:
    """ρ minus the free-atom valence superposition scaled to ρ's electron count, on the native
    grid."""
    atoms = atomic_superposition(
        density.structure, density.shape, electrons=density.electron_count()
    )
    return density.total - atoms


def native_channel(density: Density, name: str) -> np.ndarray:
    """One channel (``total``, ``spin`` or ``deformation``) on the density's native grid,
    float64."""
    if name == "total":
        return density.total
    if name == "spin":
        spin = spin_field(density)
        return np.zeros(density.shape) if spin is None else spin
    if name == "deformation":
        return deformation_field(density)
    raise SettingsError(f"unknown channel {name!r}; expected total, spin or deformation")


def cube_points(n: int, edge: float, origin: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Cartesian coordinates (Å) of the cube's sample points, shape ``(n, n, n, 3)``."""
    g = np.arange(n) * (edge / n)
    points = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1)
    return points + np.asarray(origin, dtype=float)


#: Gain of the axis filters that :func:`_unscaled_spline_coefficients` leaves out (6 per axis).
_SPLINE_GAIN = 6.0**3


def _kernels() -> ModuleType:
    """The compiled spline kernels, loaded on first use (numba costs about 0.2 s and 100 MB, which
    a process that samples no density, such as a training run over a store, should not pay)."""
    from rhoprop.grid import _spline

    return _spline


def _unscaled_spline_coefficients(field: np.ndarray) -> np.ndarray:
    """Periodic cubic B-spline coefficients of a 3D grid divided by :data:`_SPLINE_GAIN` (a new
    float64 array; the compiled prefilter of :mod:`rhoprop.grid._spline`)."""
    coefficients = np.array(field, dtype=np.float64, copy=True, order="C")
    _kernels().prefilter(coefficients)
    return coefficients


def spline_coefficients(field: np.ndarray) -> np.ndarray:
    """Periodic cubic B-spline coefficients of a 3D grid (what ``scipy.ndimage.spline_filter``
    gives with ``mode="grid-wrap"``, several times faster)."""
    return _unscaled_spline_coefficients(field) * _SPLINE_GAIN


def sample_cube(
    field: np.ndarray,
    lattice: np.ndarray,
    n: int,
    edge: float,
    origin: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    interpolation: str = "cubic",
) -> np.ndarray:
    """Sample a periodic native-grid ``field`` (nx, ny, nz) at the cube points -> (n, n, n) float64.

    ``lattice`` holds the cell vectors as rows (Å); ``origin`` is the Cartesian position (Å) of the
    cube's first sample point; ``interpolation`` is ``"cubic"`` (periodic cubic B-spline) or
    ``"linear"`` (trilinear).
    """
    order = {"cubic": 3, "linear": 1}.get(interpolation)
    if order is None:
        raise SettingsError(f"interpolation must be 'cubic' or 'linear', got {interpolation!r}")
    to_index = np.linalg.inv(lattice) * np.array(
        field.shape, dtype=float
    )  # Cartesian -> grid index
    matrix = (to_index * (edge / n)).T
    offset = np.asarray(origin, dtype=float) @ to_index
    if order == 1:
        return ndimage.affine_transform(
            field, matrix, offset=offset, output_shape=(n, n, n), order=1, mode="grid-wrap",
            prefilter=False,
        )  # fmt: skip
    block, offset = _spline_block(field, matrix, offset, n)
    kernels = _kernels()
    padded = kernels.periodic_pad(_unscaled_spline_coefficients(block))
    return kernels.sample_affine(padded, np.ascontiguousarray(matrix), offset, n)


def _spline_block(
    field: np.ndarray, matrix: np.ndarray, offset: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a periodic ``field`` a cubic spline needs at the points
    ``matrix @ ijk + offset``.

    Along an axis where the points, their 4-point stencils and
    :data:`rhoprop.grid._spline.INIT_TERMS` points of margin on each side span fewer points than the
    cell, only that periodic stretch is kept (the prefilter's response decays as ``|pole|^d``, below
    1e-13 beyond the margin, so the values do not change); elsewhere the whole axis. Returns the
    block and the offset in its indices.
    """
    corners = matrix @ np.array(np.meshgrid(*[[0, n - 1]] * 3, indexing="ij")).reshape(3, -1)
    margin = _kernels().INIT_TERMS
    low = np.floor(corners.min(axis=1) + offset).astype(int) - 1 - margin
    high = np.floor(corners.max(axis=1) + offset).astype(int) + 2 + margin
    block, new_offset = field, offset.copy()
    for axis, size in enumerate(field.shape):
        if high[axis] - low[axis] + 1 < size:
            block = np.take(block, np.arange(low[axis], high[axis] + 1) % size, axis=axis)
            new_offset[axis] -= low[axis]
    return block, new_offset


def fourier_resample_matrix(n_in: int, n_out: int, shift: float = 0.0) -> np.ndarray:
    """Real ``(n_out, n_in)`` matrix resampling one periodic axis by Fourier truncation/padding.

    Row ``g`` gives the band-limited interpolant of the ``n_in`` samples at fractional position
    ``g / n_out + shift``, keeping frequencies ``|k| <= n_out / 2`` (an even ``n_in``'s Nyquist term
    split evenly between ``+-n_in/2``), so the output is real and its mean equals the input's.
    """
    k = np.arange(-(n_in // 2), (n_in - 1) // 2 + 1).astype(float)
    weight = np.ones_like(k)
    if n_in % 2 == 0:  # the Nyquist term cos(pi x) split as +-n_in/2 halves
        k = np.append(k, n_in / 2)
        weight[0] = 0.5
        weight = np.append(weight, 0.5)
    keep = np.abs(k) <= n_out / 2
    k, weight = k[keep], weight[keep]
    x_out = np.arange(n_out) / n_out + shift
    x_in = np.arange(n_in) / n_in
    synthesis = np.exp(2j * np.pi * np.outer(x_out, k)) * weight
    analysis = np.exp(-2j * np.pi * np.outer(k, x_in))
    return (synthesis @ analysis).real / n_in


def resample_cell(
    field: np.ndarray, n: int, origin_shift: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """Fourier-resample a periodic ``field`` (nx, ny, nz) to (n, n, n) at ``(i, j, k) / n + shift``.

    Applied as three real ``(n, n_axis)`` matrices (:func:`fourier_resample_matrix`), one per axis.
    """
    n0, n1, n2 = field.shape
    m0, m1, m2 = (
        fourier_resample_matrix(m, n, float(s))
        for m, s in zip((n0, n1, n2), origin_shift, strict=True)
    )
    a = (field.reshape(-1, n2) @ m2.T).reshape(n0, n1, n)
    a = np.matmul(m1, a)
    return (m0 @ a.reshape(n0, -1)).reshape(n, n, n)


def lattice_features(density: Density) -> np.ndarray:
    """Side features of mode ``cell``: ``a, b, c`` (Å), ``alpha, beta, gamma`` (degrees),
    float32."""
    lattice = density.structure.lattice
    return np.array([*lattice.abc, *lattice.angles], dtype=np.float32)


def standardize(
    density: Density,
    settings: StandardizeSettings | None = None,
    *,
    origin_shift: Sequence[float] | None = None,
) -> StandardizedDensity:
    """Turn ``density`` into the ``(C, n, n, n)`` float32 tensor and side features ``settings``
    define.

    The sampling starts at the canonical site's anchor (``settings.origin == "site"``, see
    :mod:`rhoprop.grid.origin`) or at the file's origin (``"corner"``). ``origin_shift`` (fractional
    coordinates of the cell) moves it further: the cube's corner by ``origin_shift @ lattice`` in
    mode ``cube`` (a re-sampling), the first cell-grid point by ``origin_shift`` in mode ``cell``
    (exact; a shift of ``k / n`` equals a roll by ``k`` voxels).
    """
    settings = settings or StandardizeSettings()
    if not isinstance(density, Density):
        raise SettingsError(
            f"standardize expects a rhoprop.io.Density, got {type(density).__name__}"
        )
    shift = np.zeros(3) if origin_shift is None else np.asarray(origin_shift, dtype=float)
    if shift.shape != (3,) or not np.all(np.isfinite(shift)):
        raise SettingsError(
            f"origin_shift must be 3 finite fractional coordinates, got {origin_shift!r}"
        )
    if min(density.shape) < 2:
        raise DensityFormatError(
            f"density grid of {density.source or 'the input'} is {density.shape}; standardize "
            "needs at least 2 points along each lattice vector"
        )
    lattice = density.structure.lattice.matrix
    if settings.origin == "site":
        anchor = canonical_origin(
            density.structure, settings.n, settings.edge if settings.mode == "cube" else None
        )
        shift = shift + (np.linalg.solve(lattice.T, anchor) if settings.mode == "cube" else anchor)
    x = np.empty((settings.n_channels, settings.n, settings.n, settings.n), dtype=np.float32)
    for c, name in enumerate(settings.channels):
        field = native_channel(density, name)
        if settings.mode == "cube":
            values = sample_cube(
                field, lattice, settings.n, settings.edge, shift @ lattice, settings.interpolation
            )
        else:
            values = resample_cell(field, settings.n, shift)
        x[c] = apply_transform(values, settings)
    side = lattice_features(density) if settings.mode == "cell" else np.zeros(0, dtype=np.float32)
    return StandardizedDensity(x=x, side=side, has_spin=density.spin is not None)
