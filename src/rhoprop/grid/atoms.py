"""Free-atom valence densities (GPAW PAW setups) and their periodic superposition on a grid.

The radial densities come from the PAW setups shipped by the ``gpaw-data`` package (gzipped XML,
read with :mod:`xml.etree` and numpy only; GPAW itself is not imported). For each element we use
the setup's ``pseudo_valence_density`` where the file has one, else the same quantity built from
its occupied pseudo partial waves, ``sum_j f_j phi~_j(r)^2 / 4 pi`` (identical to within 1e-6 where
both exist). Each atom's density is normalised to integrate to the setup's valence count ``Z_val``.

The superposition over a periodic cell is evaluated in reciprocal space: the radial Fourier
transform of each element times the structure factor, summed over all reciprocal vectors up to a
cutoff where the dropped shells change the density by < 1e-4 of the atom's peak, folded onto the
grid's frequencies (so the result is the field's point values at the grid points, aliasing included)
and transformed back with one FFT. No real-space image sums, no dependence on cell shape.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from scipy.interpolate import CubicSpline

from rhoprop.errors import RhopropError

BOHR = 0.529177210903  # Å
#: Reciprocal vectors are cut where the dropped shells change the density by less than this
#: fraction of the atom's peak density (the pseudo densities have small cusps at the nucleus).
G_TOLERANCE = 1e-4
_DR = 0.004  # Å, uniform radial grid of the Fourier-Bessel transform
_DG_TABLE = 0.05  # 1/Å, spacing at which the transform is computed (then spline-interpolated)
_DG = 0.005  # 1/Å, spacing of the stored table
_GMAX = 60.0  # 1/Å, largest tabulated |G|


@dataclasses.dataclass(frozen=True)
class FreeAtom:
    """Spherical free-atom valence density of one element.

    Attributes:
        symbol: element symbol.
        z_valence: valence electrons of the setup (the density integrates to this).
        r: uniform radial grid in Å (spacing 0.004 Å), shape ``(m,)``.
        density: electrons/Å³ on ``r``, shape ``(m,)``.
        g: reciprocal-space grid in 1/Å, shape ``(k,)``.
        transform: radial Fourier transform ``4 pi int r^2 n(r) sin(gr)/(gr) dr`` on ``g``
            (electrons).
        g_cut: |G| (1/Å) beyond which the dropped reciprocal shells change the real-space density
            by less than ``G_TOLERANCE`` times its peak.
        source: the setup file it was read from.
    """

    symbol: str
    z_valence: float
    r: np.ndarray
    density: np.ndarray
    g: np.ndarray
    transform: np.ndarray
    g_cut: float
    source: str

    def __call__(self, radius: np.ndarray) -> np.ndarray:
        """Density (electrons/Å³) at distances ``radius`` (Å); zero beyond the tabulated range."""
        return np.interp(radius, self.r, self.density, right=0.0)

    def fourier(self, g: np.ndarray) -> np.ndarray:
        """Radial Fourier transform (electrons) at reciprocal lengths ``g`` (1/Å); zero beyond the
        table."""
        position = np.asarray(g, dtype=float) / (self.g[1] - self.g[0])
        index = np.minimum(position.astype(np.intp), self.g.size - 2)
        weight = position - index
        values = (1.0 - weight) * self.transform[index] + weight * self.transform[index + 1]
        return np.where(position <= self.g.size - 1, values, 0.0)


def _sinc(x: np.ndarray) -> np.ndarray:
    """sin(x)/x with the limit 1 at x = 0."""
    out = np.ones_like(x)
    nonzero = x != 0
    out[nonzero] = np.sin(x[nonzero]) / x[nonzero]
    return out


def setup_dir() -> Path:
    """Directory of the GPAW PAW setups (from the ``gpaw-data`` package)."""
    try:
        import gpaw_data
    except ImportError as exc:
        raise RhopropError(
            "the 'deformation' channel needs free-atom densities from the gpaw-data package, which "
            "is not installed; install it with `pip install gpaw-data` (or `pip install "
            "rhoprop[dft]`)"
        ) from exc
    return Path(gpaw_data.datapath())


def _attribute(element: ET.Element, name: str, path: Path) -> str:
    """Attribute ``name`` of ``element`` of the setup file ``path``, which must have it."""
    value = element.get(name)
    if value is None:
        raise RhopropError(
            f"{path}: <{element.tag}> has no {name!r} attribute; not a PAW setup file"
        )
    return value


#: The radial-grid equations of PAW setup files (GPAW's XML format) that :func:`free_atom` reads.
RADIAL_GRIDS = ("r=a*i/(n-i)", "r=a*i/(1-b*i)")


def _radial(root: ET.Element, element: ET.Element, path: Path) -> tuple[np.ndarray, np.ndarray]:
    grid_id = element.get("grid")
    grid = next((g for g in root.iter("radial_grid") if g.get("id") == grid_id), None)
    eq = None if grid is None else grid.get("eq")
    if grid is None or eq not in RADIAL_GRIDS:
        raise RhopropError(
            f"{path}: unsupported radial grid {grid_id!r} ({eq}; expected one of {RADIAL_GRIDS})"
        )
    a = float(_attribute(grid, "a", path))
    start, end = int(_attribute(grid, "istart", path)), int(_attribute(grid, "iend", path))
    i = np.arange(start, end + 1).astype(float)
    values = np.array((element.text or "").split(), dtype=float)
    if values.shape != i.shape:
        raise RhopropError(f"{path}: <{element.tag}> has {values.size} values, grid has {i.size}")
    if eq == "r=a*i/(n-i)":
        r = a * i / (int(_attribute(grid, "n", path)) - i)
    else:  # r=a*i/(1-b*i): GPAW's AERadialGridDescriptor (La, Cr, Br, I, ... in gpaw-data 1.2)
        r = a * i / (1 - float(_attribute(grid, "b", path)) * i)
    return r * BOHR, values


@functools.cache
def free_atom(symbol: str, xc: str = "PBE") -> FreeAtom:
    """Load (once per element, cached) the free-atom valence density of ``symbol`` from its
    setup."""
    path = setup_dir() / f"{symbol}.{xc}.gz"
    if not path.is_file():
        raise RhopropError(
            f"no GPAW {xc} setup for element {symbol!r} in {path.parent}; the 'deformation' "
            "channel needs one per element (drop that channel for structures containing it)"
        )
    root = ET.fromstring(gzip.decompress(path.read_bytes()))
    atom = root.find("atom")
    if atom is None:
        raise RhopropError(f"{path}: no <atom> element; not a PAW setup file")
    z_valence = float(_attribute(atom, "valence", path))
    valence = root.find("pseudo_valence_density")
    if valence is not None:
        r, values = _radial(root, valence, path)
        density = values / np.sqrt(4 * np.pi)
    else:
        occupations = {s.get("id"): float(s.get("f", 0)) for s in root.iter("state")}
        wave_r, density = None, 0.0
        for wave in root.iter("pseudo_partial_wave"):
            f = occupations.get(wave.get("state"), 0.0)
            if f > 0:
                wave_r, phi = _radial(root, wave, path)
                density = density + f * phi**2 / (4 * np.pi)
        if wave_r is None:
            raise RhopropError(
                f"{path}: neither a pseudo valence density nor occupied partial waves"
            )
        r = wave_r
    density = np.asarray(density) / BOHR**3
    keep = np.nonzero(np.abs(density) > 1e-10 * np.abs(density).max())[0][-1] + 2
    r_log, density_log = r[:keep], density[:keep]
    r = np.arange(0.0, r_log[-1], _DR)
    density = CubicSpline(r_log, density_log)(r)
    weight = 4 * np.pi * r**2 * density * _DR
    g_coarse = np.arange(0.0, _GMAX + _DG_TABLE, _DG_TABLE)
    transform = _sinc(np.outer(g_coarse, r)) @ weight
    scale = z_valence / transform[0]
    g = np.arange(0.0, g_coarse[-1] + _DG / 2, _DG)
    transform = CubicSpline(g_coarse, transform * scale)(g)
    density = density * scale
    # smallest cutoff whose dropped shells change the real-space density by < G_TOLERANCE * max
    shell = 4 * np.pi * g**2 * np.abs(transform) * _DG / (2 * np.pi) ** 3
    dropped = np.cumsum(shell[::-1])[::-1]
    ok = np.nonzero(dropped < G_TOLERANCE * np.abs(density).max())[0]
    g_cut = float(g[ok[0]] if ok.size else g[-1])
    return FreeAtom(symbol, z_valence, r, density, g, transform, g_cut, str(path))


def _structure_factor(frac: np.ndarray, ms: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_atoms exp(-2 pi i m . f)`` on the box ``ms[0] x ms[1] x ms[2]`` of integer triples."""
    phases = [np.exp(-2j * np.pi * np.outer(frac[:, j], ms[j])) for j in range(3)]  # (atoms, m_j)
    inner = (phases[1][:, :, None] * phases[2][:, None, :]).reshape(len(frac), -1)
    return (phases[0].T @ inner).reshape(len(ms[0]), len(ms[1]), len(ms[2]))


def atomic_superposition(
    structure: Structure,
    shape: Sequence[int],
    electrons: float | None = None,
    valence: Mapping[str, float] | None = None,
    g_cut: float | None = None,
) -> np.ndarray:
    """Periodic sum of free-atom valence densities (electrons/Å³) at the points of a cell grid.

    Grid point ``(i, j, k)`` sits at fractional coordinates ``(i/nx, j/ny, k/nz)`` of
    ``structure``'s lattice. Each atom integrates to its valence count (``valence[element]`` if
    given, else the GPAW setup's ``Z_val``); with ``electrons`` the whole superposition is then
    scaled to integrate to ``electrons`` over the cell (codes count valence electrons differently).
    Reciprocal vectors with ``|G| <= g_cut`` (1/Å) are kept; the default is the smaller of the
    atoms' own cutoffs and the grid's Nyquist radius ``pi / spacing`` (the field band-limited like a
    DFT density on that grid). An explicit ``g_cut`` gives the same smooth field on any cell of the
    crystal: components beyond the grid's Nyquist box are folded, so values are exact point values.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise RhopropError(f"atomic_superposition: shape must be 3 positive ints, got {shape}")
    lattice = structure.lattice.matrix
    symbols = [site.specie.symbol for site in structure]
    species = sorted(set(symbols))
    atoms = {s: free_atom(s) for s in species}
    counts = {s: float((valence or {}).get(s, atoms[s].z_valence)) for s in species}
    lengths = np.linalg.norm(lattice, axis=1)
    m_max = None
    if g_cut is None:  # band-limited to the grid: |m_j| < n_j / 2, no folding needed
        g_cut = max(atoms[s].g_cut for s in species)
        m_max = (np.array(shape) - 1) // 2
    box = np.floor(g_cut * lengths / (2 * np.pi)).astype(int)
    m_max = box if m_max is None else np.minimum(box, m_max)
    # real field: the half space m_2 >= 0 suffices when nothing folds (irfftn restores the rest)
    half = bool(np.all(2 * m_max + 1 <= np.array(shape)))
    ms = [np.arange(-m_max[0], m_max[0] + 1), np.arange(-m_max[1], m_max[1] + 1)]
    ms.append(np.arange(0 if half else -m_max[2], m_max[2] + 1))
    metric = (2 * np.pi) ** 2 * np.linalg.inv(lattice @ lattice.T)  # G.G = m^T metric m
    g_sq = _metric_square(metric, ms)
    g_len = np.sqrt(g_sq)
    inside = g_len <= g_cut
    coefficients = np.zeros(g_len.shape, dtype=complex)
    frac = structure.frac_coords
    for s in species:
        f = frac[[i for i, sym in enumerate(symbols) if sym == s]]
        form = atoms[s].fourier(g_len) * (counts[s] / atoms[s].z_valence)
        coefficients += np.where(inside, form, 0.0) * _structure_factor(f, ms)
    coefficients /= structure.lattice.volume
    if electrons is not None:
        coefficients *= electrons / sum(counts[s] * symbols.count(s) for s in species)
    size = int(np.prod(shape))
    if half:
        spectrum = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), dtype=complex)
        spectrum[np.ix_(ms[0] % shape[0], ms[1] % shape[1], ms[2])] = coefficients
        return np.fft.irfftn(spectrum, s=shape, axes=(0, 1, 2)) * size
    flat = np.ravel_multi_index(
        np.meshgrid(ms[0] % shape[0], ms[1] % shape[1], ms[2] % shape[2], indexing="ij"), shape
    ).ravel()
    values = coefficients.ravel()
    binned = np.bincount(flat, values.real, size) + 1j * np.bincount(flat, values.imag, size)
    return np.fft.ifftn(binned.reshape(shape)).real * size


def _metric_square(metric: np.ndarray, ms: Sequence[np.ndarray]) -> np.ndarray:
    """``m^T metric m`` on the box ``ms[0] x ms[1] x ms[2]``, shape ``(len(ms[0]), ...)``."""
    axes = [
        m.reshape([-1 if k == j else 1 for k in range(3)]).astype(float) for j, m in enumerate(ms)
    ]
    total = np.zeros([len(m) for m in ms])
    for i in range(3):
        for j in range(i, 3):
            total = total + (1.0 if i == j else 2.0) * metric[i, j] * axes[i] * axes[j]
    return total
