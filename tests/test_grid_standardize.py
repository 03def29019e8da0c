"""Standardization of densities into fixed tensors: cube and cell modes, channels, errors.

Test densities are physical: a periodic superposition of GPAW free-atom valence densities,
evaluated exactly at each cell's own grid points (reciprocal-space sum folded onto the grid,
one common cutoff), so the primitive cell, conventional cell and supercell carry the same field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from rhoprop.errors import DensityFormatError, SettingsError
from rhoprop.grid import StandardizeSettings, atomic_superposition, free_atom, standardize
from rhoprop.io import Density, read_density

G_CUT = 12.0  # 1/Å: the test field, identical on every cell of the crystal
FIXTURES = Path("/work/shared/fixtures/vasp")
CRYSTALS = {
    "Si": {"name": "Si"},
    "NaCl": {"name": "NaCl", "crystalstructure": "rocksalt", "a": 5.64},
}


def physical_density(structure: Structure, spacing: float = 0.14, **kwargs) -> Density:
    """The free-atom superposition on a native grid finer than ``spacing`` Å."""
    shape = tuple(int(np.ceil(length / spacing)) for length in structure.lattice.abc)
    return Density(total=atomic_superposition(structure, shape, g_cut=G_CUT), structure=structure, **kwargs)


def cells_of(crystal: str) -> dict[str, Structure]:
    kw = CRYSTALS[crystal]
    atoms = {
        "primitive": bulk(**kw),
        "conventional": bulk(**kw, cubic=True),
        "supercell": bulk(**kw).repeat((2, 2, 2)),
        "conventional supercell": bulk(**kw, cubic=True).repeat((2, 2, 2)),
    }
    return {name: AseAtomsAdaptor.get_structure(a) for name, a in atoms.items()}


def exact_field(structure: Structure, points: np.ndarray) -> np.ndarray:
    """Direct real-space sum of free-atom densities (no cutoff in G) at Cartesian ``points``."""
    lattice = structure.lattice.matrix
    images = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), -1).reshape(-1, 3) @ lattice
    out = np.zeros(len(points))
    for site in structure:
        atom = free_atom(site.specie.symbol)
        for p, point in enumerate(points):
            out[p] += atom(np.linalg.norm(point - site.coords - images, axis=1)).sum()
    return out


@pytest.mark.parametrize("crystal", sorted(CRYSTALS))
def test_cube_tensor_is_the_same_for_primitive_conventional_and_supercell(crystal: str) -> None:
    settings = StandardizeSettings(mode="cube", n=32, edge=10.0, transform="none")
    tensors = {}
    for name, structure in cells_of(crystal).items():
        density = physical_density(structure)
        assert density.grid_spacing < 0.15
        tensors[name] = standardize(density, settings).x
    ref = tensors["primitive"]
    assert ref.shape == (1, 32, 32, 32) and ref.dtype == np.float32
    for name in ("conventional", "supercell", "conventional supercell"):
        diff = np.abs(tensors[name] - ref)
        assert diff.max() < 0.02 * ref.max(), (name, diff.max() / ref.max())
        assert diff.mean() < 0.005 * ref.mean(), (name, diff.mean() / ref.mean())


def test_cube_tensor_changes_when_the_crystal_moves_with_corner_origin() -> None:
    """The invariance above is not trivial: with the cube anchored at the Cartesian origin, moving
    the atoms by 0.7 Å changes the tensor."""
    structure = cells_of("NaCl")["primitive"]
    moved = structure.copy()
    moved.translate_sites(range(len(moved)), [0.7, 0.0, 0.0], frac_coords=False)
    settings = StandardizeSettings(transform="none", origin="corner")
    a = standardize(physical_density(structure), settings).x
    b = standardize(physical_density(moved), settings).x
    assert np.abs(a - b).max() > 0.2 * a.max()


@pytest.mark.parametrize("mode", ["cube", "cell"])
def test_site_origin_makes_the_tensor_independent_of_where_the_crystal_sits(mode: str) -> None:
    """origin="site" anchors the grid on a canonical site: the crystal moved by 0.7 Å, or a file
    whose origin is another atom, gives the same tensor."""
    structure = cells_of("NaCl")["primitive"]
    moved = structure.copy()
    moved.translate_sites(range(len(moved)), [0.7, 0.31, -0.2], frac_coords=False)
    settings = StandardizeSettings(mode=mode, n=16, transform="none", origin="site")
    a = standardize(physical_density(structure), settings).x
    b = standardize(physical_density(moved), settings).x
    assert np.abs(a - b).max() < 0.01 * a.max()


def test_cube_samples_the_field_at_corner_anchored_points() -> None:
    """Voxel (i, j, k) holds rho at (i, j, k) * edge / n (+ origin shift), Cartesian, in e/Å³."""
    structure = cells_of("NaCl")["primitive"]
    density = physical_density(structure, spacing=0.1)
    density.total = atomic_superposition(structure, density.shape)  # band-limited to the grid
    settings = StandardizeSettings(n=16, edge=6.0, transform="none", origin="corner")
    shift = np.array([0.1, 0.25, -0.3])
    x = standardize(density, settings, origin_shift=shift).x[0]
    rng = np.random.default_rng(0)
    voxels = rng.integers(0, 16, size=(12, 3))
    points = voxels * 6.0 / 16 + shift @ structure.lattice.matrix
    expected = exact_field(structure, points)
    np.testing.assert_allclose(x[tuple(voxels.T)], expected, rtol=0.01, atol=0.003 * expected.max())


def test_linear_interpolation_reproduces_pyrho_get_data_in_cube() -> None:
    from pyrho.charge_density import ChargeDensity
    from pyrho.pgrid import PGrid

    structure = Structure(Lattice.from_parameters(4.1, 4.6, 5.2, 80, 95, 105), ["Si", "O"], [[0, 0, 0], [0.3, 0.4, 0.6]])
    density = physical_density(structure, spacing=0.2)
    pgrid = PGrid(density.total, structure.lattice.matrix)
    reference = ChargeDensity({"total": pgrid}, structure, normalization=None).get_data_in_cube(7.0, 20)
    ours = standardize(density, StandardizeSettings(n=20, edge=7.0, transform="none", interpolation="linear", origin="corner"))
    np.testing.assert_allclose(ours.x[0], reference, rtol=1e-5, atol=1e-6)


def test_cubic_interpolation_is_more_accurate_than_linear_on_a_015_angstrom_grid() -> None:
    """With edge = a and n = 12 the cube points are the points of a 12^3 grid of the cubic cell,
    where the test field's exact values are known."""
    structure = cells_of("NaCl")["conventional"]
    density = physical_density(structure, spacing=0.149)
    exact = atomic_superposition(structure, (12, 12, 12), g_cut=G_CUT)
    errors = {}
    for method in ("cubic", "linear"):
        settings = StandardizeSettings(
            n=12, edge=structure.lattice.a, transform="none", interpolation=method, origin="corner"
        )
        errors[method] = np.abs(standardize(density, settings).x[0] - exact).max() / exact.max()
    assert errors["cubic"] < 0.005
    assert errors["cubic"] < errors["linear"] / 5


@pytest.mark.parametrize("shape", [(30, 30, 30), (27, 33, 41)])
@pytest.mark.parametrize("n", [16, 48])
def test_cell_mode_preserves_the_electron_count(shape: tuple[int, int, int], n: int) -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64))
    density = Density(total=atomic_superposition(structure, shape), structure=structure)
    result = standardize(density, StandardizeSettings(mode="cell", n=n, transform="none"))
    electrons = result.x[0].astype(np.float64).mean() * structure.volume
    assert electrons == pytest.approx(density.electron_count(), rel=0.005)
    assert density.electron_count() == pytest.approx(14.0, rel=1e-6)


def test_cell_mode_side_features_are_the_lattice_parameters() -> None:
    structure = Structure(Lattice.from_parameters(3.0, 4.0, 5.0, 70, 80, 100), ["Li"], [[0, 0, 0]])
    result = standardize(physical_density(structure, spacing=0.3), StandardizeSettings(mode="cell", n=8))
    assert result.side.dtype == np.float32
    np.testing.assert_allclose(result.side, [3.0, 4.0, 5.0, 70.0, 80.0, 100.0], rtol=1e-6)
    cube = standardize(physical_density(structure, spacing=0.3), StandardizeSettings(mode="cube", n=8))
    assert cube.side.shape == (0,)


def test_cell_mode_resamples_a_band_limited_field_exactly_at_shifted_points() -> None:
    def field(f: list[np.ndarray]) -> np.ndarray:
        x, y, z = f
        return 0.2 + 0.05 * np.cos(2 * np.pi * (x + 2 * y)) + 0.03 * np.sin(2 * np.pi * (3 * z - x))

    structure = Structure(Lattice.cubic(4.0), ["H"], [[0, 0, 0]])
    native = field(np.meshgrid(*[np.arange(k) / k for k in (17, 20, 23)], indexing="ij"))
    shift = (0.03, -0.5, 0.77)
    for n in (10, 40):
        out = standardize(Density(native, structure), StandardizeSettings(mode="cell", n=n, transform="none"), origin_shift=shift)
        expected = field(np.meshgrid(*[np.arange(n) / n + s for s in shift], indexing="ij"))
        np.testing.assert_allclose(out.x[0], expected, atol=1e-6)


def test_collinear_spin_channel_is_the_magnetization_with_nonnegative_total_moment() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("Fe", "bcc", a=2.87, cubic=True))
    density = physical_density(structure, spacing=0.2)
    magnetization = -0.3 * density.total  # total moment negative: the channel flips its sign
    spin_density = Density(density.total, structure, spin=magnetization)
    settings = StandardizeSettings(mode="cell", n=12, channels=("total", "spin"), transform="none")
    result = standardize(spin_density, settings)
    assert result.has_spin
    np.testing.assert_allclose(result.x[1], 0.3 * result.x[0], rtol=1e-5, atol=1e-7)
    assert result.x[1].mean() * structure.volume == pytest.approx(-spin_density.total_magnetization(), rel=1e-3)


def test_spin_channel_is_zero_and_has_spin_false_without_spin() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("Si"))
    result = standardize(physical_density(structure, spacing=0.2), StandardizeSettings(channels=("spin", "total")))
    assert not result.has_spin
    assert np.all(result.x[0] == 0) and result.x[1].max() > 0


def test_noncollinear_spin_channel_is_the_component_along_the_principal_axis() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("Fe", "bcc", a=2.87, cubic=True))
    density = physical_density(structure, spacing=0.2)
    collinear = 0.2 * density.total - 0.05 * density.total.mean()
    axis = np.array([1.0, -2.0, 2.0]) / 3.0
    vector = axis[:, None, None, None] * collinear[None]
    settings = StandardizeSettings(mode="cube", n=10, edge=4.0, channels=("spin",), transform="none")
    a = standardize(Density(density.total, structure, spin=collinear), settings).x
    b = standardize(Density(density.total, structure, spin=vector), settings).x
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_deformation_of_a_free_atom_superposition_is_near_zero_and_integrates_to_zero() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64))
    shape = (36, 36, 36)
    # a code counting 9 electrons for Na+Cl (e.g. VASP's Na with 1 valence electron + Cl 7 + 1 extra)
    total = atomic_superposition(structure, shape, electrons=9.0)
    density = Density(total=total, structure=structure)
    settings = StandardizeSettings(mode="cell", n=24, channels=("total", "deformation"), transform="none")
    result = standardize(density, settings)
    assert abs(result.x[1].mean()) * structure.volume < 1e-4
    assert np.abs(result.x[1]).max() < 1e-3 * result.x[0].max()


def test_transform_is_applied_to_every_channel() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("Si"))
    density = physical_density(structure, spacing=0.2)
    raw = standardize(density, StandardizeSettings(transform="none", n=8)).x
    scaled = standardize(density, StandardizeSettings(transform="scale", scale=0.5, n=8)).x
    asinh = standardize(density, StandardizeSettings(transform="asinh", scale=0.05, n=8)).x
    np.testing.assert_allclose(scaled, raw / 0.5, rtol=1e-6)
    np.testing.assert_allclose(asinh, np.arcsinh(raw / 0.05), rtol=1e-5)


def test_real_vasp_spin_chgcar_standardizes_in_both_modes() -> None:
    density = read_density(FIXTURES / "CHGCAR.LiCoO2_spin.gz")
    channels = ("total", "spin", "deformation")
    cube = standardize(density, StandardizeSettings(mode="cube", n=16, channels=channels))
    cell = standardize(density, StandardizeSettings(mode="cell", n=16, channels=channels, transform="none"))
    for result in (cube, cell):
        assert result.x.shape == (3, 16, 16, 16) and result.has_spin and np.all(np.isfinite(result.x))
    assert cell.x[0].mean() * density.volume == pytest.approx(48.0, rel=0.005)
    assert abs(cell.x[2].mean() * density.volume) < 0.01


def test_bad_inputs_raise_clear_errors() -> None:
    structure = AseAtomsAdaptor.get_structure(bulk("Si"))
    density = physical_density(structure, spacing=0.3)
    with pytest.raises(SettingsError, match="origin_shift"):
        standardize(density, origin_shift=[0.1, 0.2])
    with pytest.raises(SettingsError, match="Density"):
        standardize(density.total)  # type: ignore[arg-type]
    with pytest.raises(DensityFormatError, match="at least 2 points"):
        standardize(Density(np.ones((1, 4, 4)), structure))
    with pytest.raises(SettingsError, match="interpolation"):
        StandardizeSettings(interpolation="quadratic")
    with pytest.raises(SettingsError, match="edge"):
        StandardizeSettings.from_dict({"edge": "ten"})
    with pytest.raises(SettingsError, match="unknown key"):
        StandardizeSettings.from_dict({"edges": 10.0})


def test_settings_round_trip_through_json(tmp_path: Path) -> None:
    settings = StandardizeSettings(mode="cell", n=24, channels=("total", "spin"), transform="scale", scale=0.2)
    settings.to_json(tmp_path / "s.json")
    assert StandardizeSettings.from_json(tmp_path / "s.json") == settings
    assert StandardizeSettings(channels="spin").channels == ("spin",)


@pytest.mark.parametrize("shape", [(20, 21, 22), (56, 32, 60), (2, 3, 5)])
def test_spline_coefficients_match_scipy_periodic_spline_filter(shape: tuple[int, int, int]) -> None:
    from scipy import ndimage

    from rhoprop.grid.standardize import spline_coefficients

    field = np.random.default_rng(3).random(shape)
    expected = ndimage.spline_filter(field, order=3, mode="grid-wrap")
    np.testing.assert_allclose(spline_coefficients(field), expected, rtol=0, atol=1e-11)


def test_cubic_sampling_of_a_cell_larger_than_the_cube_matches_the_whole_grid_spline() -> None:
    """Only the stretch of a large cell the cube needs is prefiltered; values must not change."""
    from scipy import ndimage

    from rhoprop.grid.standardize import sample_cube

    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.random((90, 96, 150)), 2.0, mode="wrap")
    lattice = Lattice.from_parameters(18.0, 19.0, 30.0, 82, 97, 104).matrix
    origin = np.array([-2.0, 5.0, 11.0])
    ours = sample_cube(field, lattice, 16, 8.0, origin)
    to_index = np.linalg.inv(lattice) * np.array(field.shape, dtype=float)
    grid = np.stack(np.meshgrid(*[np.arange(16) * 0.5] * 3, indexing="ij"), -1)
    points = (grid + origin) @ to_index
    whole = ndimage.map_coordinates(field, np.moveaxis(points, -1, 0), order=3, mode="grid-wrap")
    np.testing.assert_allclose(ours, whole, rtol=0, atol=1e-9 * np.abs(whole).max())


@pytest.mark.parametrize(
    ("shape", "dtype"), [((12, 14, 17), np.float64), ((7, 9, 4), np.float32), ((30, 31, 32), np.float64)]
)
def test_compiled_cubic_sampling_matches_scipy_where_the_cube_wraps_around_small_cells(
    shape: tuple[int, int, int], dtype: type
) -> None:
    """The cube covers several periods of a triclinic cell, from a negative origin: every sample's
    4 x 4 x 4 stencil wraps, on every axis, in both directions."""
    from scipy import ndimage

    from rhoprop.grid.standardize import sample_cube

    rng = np.random.default_rng(11)
    field = rng.random(shape).astype(dtype)
    lattice = Lattice.from_parameters(3.1, 3.4, 2.9, 71, 103, 118).matrix
    origin = np.array([-4.3, 7.9, -0.2])
    ours = sample_cube(field, lattice, 12, 9.0, origin)
    to_index = np.linalg.inv(lattice) * np.array(shape, dtype=float)
    grid = np.stack(np.meshgrid(*[np.arange(12) * 0.75] * 3, indexing="ij"), -1)
    points = (grid + origin) @ to_index
    expected = ndimage.map_coordinates(
        field.astype(np.float64), np.moveaxis(points, -1, 0), order=3, mode="grid-wrap"
    )
    assert ours.dtype == np.float64 and ours.shape == (12, 12, 12)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_numba_loads_only_when_a_density_is_read_or_sampled() -> None:
    """Stores, training and the CLI import rhoprop.grid and rhoprop.io; the compiled kernels (about
    100 MB of LLVM) must wait until a file is read or a cube sampled."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import rhoprop.io, rhoprop.grid, rhoprop.data, rhoprop.cli\n"
        "assert 'numba' not in sys.modules, 'numba imported eagerly'\n"
        "from rhoprop.grid.standardize import sample_cube\n"
        "sample_cube(np.ones((4, 4, 4)), np.eye(3) * 2.0, 4, 2.0)\n"
        "assert 'numba' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_kernels_compile_in_memory_where_numba_cannot_write_a_cache(monkeypatch) -> None:
    """A read-only install with no writable cache folder makes ``njit(cache=True)`` raise; the
    kernels must still compile (checked by hand on a read-only bind mount with HOME unwritable)."""
    from rhoprop import _jit

    real = _jit.njit

    def njit_without_cache_folder(*args, **kwargs):
        if kwargs.get("cache"):
            def fail(func):
                raise RuntimeError(f"cannot cache function {func.__name__!r}: no locator available")
            return fail
        return real(*args, **kwargs)

    monkeypatch.setattr(_jit, "njit", njit_without_cache_folder)

    def add(a, b):
        return a + b

    assert _jit.jit("i8(i8, i8)")(add)(2, 3) == 5

    def broken(*args, **kwargs):
        def fail(func):
            raise RuntimeError("something else")
        return fail

    monkeypatch.setattr(_jit, "njit", broken)
    with pytest.raises(RuntimeError, match="something else"):
        _jit.jit("i8(i8, i8)")(add)


def test_settings_written_before_the_origin_setting_read_as_corner_and_new_ones_default_to_site() -> None:
    old = StandardizeSettings().to_dict()
    del old["origin"]
    assert StandardizeSettings.from_dict(old).origin == "corner"
    assert StandardizeSettings().origin == "site"
    with pytest.raises(SettingsError, match="origin must be one of"):
        StandardizeSettings(origin="centre")


def test_canonical_site_ignores_the_site_order_and_the_cell_choice() -> None:
    """The heaviest element's most symmetric orbit, whatever the file's order or cell."""
    from rhoprop.grid.origin import canonical_site

    cells = cells_of("NaCl")
    for structure in cells.values():
        assert structure[canonical_site(structure)].specie.symbol == "Cl"
    reversed_sites = Structure.from_sites(list(cells["primitive"])[::-1])
    assert reversed_sites[canonical_site(reversed_sites)].specie.symbol == "Cl"


def test_a_real_density_seen_from_random_origins_gives_the_same_site_anchored_tensor(fixtures_dir) -> None:
    """VASP LiCoO2 moved by random fractional vectors (exact band-limited shifts): with the site
    origin the tensors agree to interpolation error, with the corner origin they do not."""
    from rhoprop.grid import shift_origin

    density = read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz")
    site = StandardizeSettings(n=24, channels=("total", "spin"))
    corner = StandardizeSettings(n=24, channels=("total", "spin"), origin="corner")
    ref_site, ref_corner = standardize(density, site).x, standardize(density, corner).x
    rng = np.random.default_rng(7)
    for shift in rng.random((2, 3)):
        moved = shift_origin(density, shift)
        assert moved.electron_count() == pytest.approx(density.electron_count(), rel=1e-9)
        assert np.abs(standardize(moved, site).x - ref_site).max() < 0.005 * np.abs(ref_site).max()
        assert np.abs(standardize(moved, corner).x - ref_corner).max() > 0.2 * np.abs(ref_corner).max()
