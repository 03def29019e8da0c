"""Free-atom valence densities read from the GPAW setups and their periodic superposition."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from rhoprop.errors import RhopropError
from rhoprop.grid import atomic_superposition, free_atom
from rhoprop.grid.atoms import setup_dir


@pytest.mark.parametrize(("symbol", "valence"), [("Si", 4), ("Na", 7), ("Cl", 7), ("O", 6), ("Fe", 8)])
def test_free_atom_density_integrates_to_the_setup_valence(symbol: str, valence: int) -> None:
    atom = free_atom(symbol)
    assert atom.z_valence == valence
    integral = np.trapezoid(4 * np.pi * atom.r**2 * atom.density, atom.r)
    assert integral == pytest.approx(valence, rel=1e-4)
    assert atom.fourier(np.array([0.0]))[0] == pytest.approx(valence, rel=1e-6)
    assert atom.density.max() > 0.1  # e/Å³: a real valence density, not an empty table


def test_free_atom_uses_the_setup_pseudo_valence_density_where_present() -> None:
    """Si's file has <pseudo_valence_density>; its shape (up to the Z_val normalisation) is ours."""
    root = ET.fromstring(gzip.decompress((setup_dir() / "Si.PBE.gz").read_bytes()))
    grid = root.find("radial_grid").attrib
    i = np.arange(int(grid["istart"]), int(grid["iend"]) + 1)
    r = float(grid["a"]) * i / (int(grid["n"]) - i) * 0.529177210903
    values = np.array(root.find("pseudo_valence_density").text.split(), float)
    atom = free_atom("Si")
    mask = (r > 0.2) & (r < 3.0)
    ratio = atom(r[mask]) / values[mask]
    assert np.ptp(ratio) < 1e-3 * ratio.mean()


@pytest.mark.parametrize("symbol", ["La", "Cr", "I", "Si"])
def test_both_radial_grid_kinds_of_gpaw_data_give_gpaws_own_radii(symbol: str) -> None:
    """gpaw-data writes r = a i / (n - i) (Si) or r = a i / (1 - b i) (La, Cr, Br, I, ...); both
    are read to GPAW's own radii, and the free atom of each loads."""
    from rhoprop.grid.atoms import BOHR, _radial

    setup_data = pytest.importorskip("gpaw.setup_data", reason="GPAW is not installed").SetupData
    path = setup_dir() / f"{symbol}.PBE.gz"
    root = ET.fromstring(gzip.decompress(path.read_bytes()))
    r, _ = _radial(root, next(root.iter("pseudo_partial_wave")), path)
    assert np.allclose(r, setup_data(symbol, "PBE").rgd.r_g * BOHR, rtol=1e-10, atol=1e-12)
    atom = free_atom(symbol)
    assert atom.density.max() > 0.01 and atom.fourier(np.array([0.0]))[0] == pytest.approx(atom.z_valence)


def test_free_atoms_are_cached_per_element() -> None:
    assert free_atom("Cl") is free_atom("Cl")


def test_element_without_a_setup_is_a_clear_error() -> None:
    with pytest.raises(RhopropError, match="Tc"):
        free_atom("Tc")


def _rocksalt() -> Structure:
    return AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64))


def _triclinic() -> Structure:
    return Structure(Lattice.from_parameters(4.1, 4.6, 5.2, 80, 95, 105), ["Si", "O"], [[0, 0, 0], [0.3, 0.4, 0.6]])


@pytest.mark.parametrize("make", [_rocksalt, _triclinic])
@pytest.mark.parametrize("g_cut", [None, 40.0])
def test_superposition_matches_a_real_space_sum_of_atoms(make, g_cut: float | None) -> None:  # noqa: ANN001
    """Both the grid-band-limited default (fine grid) and an explicit cutoff (folded) give point values."""
    structure = make()
    shape = tuple(int(np.ceil(length / 0.08)) for length in structure.lattice.abc)
    rho = atomic_superposition(structure, shape, g_cut=g_cut)
    lattice = structure.lattice.matrix
    images = np.stack(np.meshgrid(*[np.arange(-5, 6)] * 3, indexing="ij"), -1).reshape(-1, 3) @ lattice
    rng = np.random.default_rng(4)
    for voxel in rng.integers(0, shape, size=(5, 3)):
        point = (voxel / np.array(shape)) @ lattice
        direct = sum(
            free_atom(site.specie.symbol)(np.linalg.norm(point - site.coords - images, axis=1)).sum()
            for site in structure
        )
        assert rho[tuple(voxel)] == pytest.approx(direct, rel=2e-3, abs=1e-3)


def test_superposition_integrates_to_the_requested_electron_count() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("Si", cubic=True))
    rho = atomic_superposition(structure, (20, 24, 28))
    assert rho.mean() * structure.volume == pytest.approx(32.0, rel=1e-9)
    scaled = atomic_superposition(structure, (20, 24, 28), electrons=40.0)
    np.testing.assert_allclose(scaled, rho * 40.0 / 32.0, rtol=1e-9, atol=1e-12)
    per_species = atomic_superposition(structure, (20, 24, 28), valence={"Si": 2.0})
    np.testing.assert_allclose(per_species, rho / 2.0, rtol=1e-9, atol=1e-12)


def test_superposition_is_the_same_field_on_a_supercell_grid() -> None:
    primitive = AseAtomsAdaptor.get_structure(bulk("Si"))
    supercell = AseAtomsAdaptor.get_structure(bulk("Si").repeat((2, 2, 2)))
    a = atomic_superposition(primitive, (15, 15, 15), g_cut=12.0)
    b = atomic_superposition(supercell, (30, 30, 30), g_cut=12.0)
    np.testing.assert_allclose(b[:15, :15, :15], a, atol=1e-9)
    np.testing.assert_allclose(b[15:, 15:, 15:], a, atol=1e-9)
