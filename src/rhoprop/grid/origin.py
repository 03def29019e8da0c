"""A canonical site of a crystal, so that the standardized tensor does not depend on the cell's
origin.

A charge density file places its atoms relative to an arbitrary origin: the same Si crystal may
have an atom at (0, 0, 0) or at (½, ½, ½). With ``StandardizeSettings.origin = "site"`` the
sampling cube (or the cell grid) is anchored on a site chosen by a rule over the structure alone,
so every origin of the same crystal gives the same tensor up to interpolation error.

The rule (:func:`canonical_site`) picks one orbit of symmetry-equivalent sites, by properties that
do not depend on the origin, the cell choice or the order of the sites in the file:

1. the heaviest element (largest atomic number Z);
2. among its orbits, the smallest multiplicity per formula unit (the most symmetric position);
3. then the orbit whose sorted distances to its 12 nearest neighbours are smallest,
   lexicographically at 0.01 Å;

and the first site of that orbit in file order. Sites of one orbit related by a pure lattice
translation give identical tensors; sites related by a rotation give the tensor rotated by it (the
cubic rotations of training augmentation cover those). Equivalence is spglib's at 0.01 Å.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from rhoprop._spglib import spglib
from rhoprop.errors import SettingsError
from rhoprop.io.density import Density

#: spglib distance tolerance (Å) for deciding which sites are symmetry-equivalent.
SYMPREC = 0.01
#: Neighbours whose distances break ties between orbits of the same element and multiplicity.
NEIGHBOURS = 12


def _equivalent_atoms(structure: Structure) -> np.ndarray:
    """spglib's orbit label of every site (sites of one orbit share a label)."""
    lattice, positions = structure.lattice.matrix.tolist(), structure.frac_coords.tolist()
    cell = (lattice, positions, [site.specie.Z for site in structure])
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    except spglib.error.SpglibError:
        dataset = None
    if dataset is None:  # spglib found no symmetry at all: every site is its own orbit
        return np.arange(len(structure))
    return np.asarray(dataset.equivalent_atoms)


def _neighbour_key(structure: Structure, index: int) -> tuple[float, ...]:
    """Sorted distances (0.01 Å) from site ``index`` to its :data:`NEIGHBOURS` nearest
    neighbours."""
    radius = 4.0
    while True:
        found = structure.get_neighbors(structure[index], radius)
        if len(found) >= NEIGHBOURS or radius > 40:
            break
        radius *= 1.5
    distances = sorted(round(float(n.nn_distance), 2) for n in found)[:NEIGHBOURS]
    return tuple(distances)


def canonical_site(structure: Structure) -> int:
    """Index of the site the standardized tensor is anchored on (see the module docstring)."""
    if len(structure) == 1:
        return 0
    orbits = _equivalent_atoms(structure)
    z = np.array([site.specie.Z for site in structure])
    heaviest = np.flatnonzero(z == z.max())
    labels = sorted(set(orbits[heaviest].tolist()))
    if len(labels) == 1:
        return int(heaviest[0])
    counts = {label: int(np.sum(orbits == label)) for label in labels}
    fewest = min(counts.values())
    labels = [label for label in labels if counts[label] == fewest]
    if len(labels) > 1:
        first = {label: int(np.flatnonzero(orbits == label)[0]) for label in labels}
        labels = [
            min(labels, key=lambda label: (_neighbour_key(structure, first[label]), first[label]))
        ]
    return int(np.flatnonzero(orbits == labels[0])[0])


def canonical_origin(structure: Structure, n: int, edge: float | None) -> np.ndarray:
    """Where the sampling starts so that the canonical site sits at the centre of the grid.

    Mode ``cube`` (``edge`` in Å): the Cartesian position (Å) of the cube's first sample point,
    ``site - (n - 1) / 2 * edge / n`` along each axis, so the site lies at the centre of the cube,
    the point the cubic rotations of :mod:`rhoprop.grid.augment` turn about. Mode ``cell``
    (``edge`` None): the site's fractional coordinates, a shift of the cell grid.
    """
    site = structure[canonical_site(structure)]
    if edge is None:
        return np.asarray(site.frac_coords, dtype=float) % 1.0
    return np.asarray(site.coords, dtype=float) - (n - 1) / 2 * edge / n


def shift_origin(density: Density, shift: Sequence[float]) -> Density:
    """The same crystal described from another origin: every atom and the field moved by the
    fractional vector ``shift`` (what a file with that origin would hold).

    The field is moved exactly as the band-limited interpolant of its grid (a phase factor per
    Fourier component), so the electron count and every grid value's neighbourhood are kept.
    """
    t = np.asarray(shift, dtype=float)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise SettingsError(f"shift must be 3 finite fractional coordinates, got {shift!r}")

    def moved(field: np.ndarray) -> np.ndarray:
        axes = (-3, -2, -1)
        k = np.meshgrid(*(np.fft.fftfreq(n, 1.0 / n) for n in field.shape[-3:]), indexing="ij")
        phase = np.exp(-2j * np.pi * sum(ki * ti for ki, ti in zip(k, t, strict=True)))
        return np.fft.ifftn(np.fft.fftn(field, axes=axes) * phase, axes=axes).real

    structure = density.structure.copy()
    structure.translate_sites(range(len(structure)), t, frac_coords=True, to_unit_cell=True)
    spin = None if density.spin is None else moved(density.spin)
    return dataclasses.replace(density, total=moved(density.total), structure=structure, spin=spin)
