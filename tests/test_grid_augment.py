"""Augmentation: periodic rolls and point-group operations applied to standardized tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from rhoprop.errors import RhopropError
from rhoprop.grid import StandardizeSettings, atomic_superposition, standardize
from rhoprop.grid.augment import (
    CUBIC_OPS,
    RandomAugment,
    apply_op,
    equivalent_origin_shift,
    roll,
    symmetry_ops,
)
from rhoprop.io import Density

G_CUT = 12.0


def physical_density(structure: Structure, spacing: float = 0.14) -> Density:
    shape = tuple(int(np.ceil(length / spacing)) for length in structure.lattice.abc)
    return Density(total=atomic_superposition(structure, shape, g_cut=G_CUT), structure=structure)


def silicon() -> Structure:
    return AseAtomsAdaptor.get_structure(bulk("Si"))


def test_cubic_ops_are_the_48_distinct_signed_permutations_identity_first() -> None:
    assert CUBIC_OPS.shape == (48, 3, 3)
    assert len({op.tobytes() for op in CUBIC_OPS}) == 48
    np.testing.assert_array_equal(CUBIC_OPS[0], np.eye(3))
    for op in CUBIC_OPS:
        np.testing.assert_array_equal(op @ op.T, np.eye(3))


@pytest.mark.parametrize("mode", ["cube", "cell"])
def test_apply_op_moves_each_voxel_where_the_rotation_sends_it(mode: str) -> None:
    n = 5
    x = np.random.default_rng(0).random((2, n, n, n))
    centre = (n - 1) / 2 if mode == "cube" else 0.0
    for rotation in CUBIC_OPS[::5]:
        y = apply_op(x, rotation, mode)
        for g in [(0, 1, 2), (4, 0, 3), (2, 2, 2)]:
            source = rotation.T @ (np.array(g) - centre) + centre  # x'(r) = x(R^-1 r)
            source = np.rint(source).astype(int) % n
            np.testing.assert_array_equal(y[:, g[0], g[1], g[2]], x[:, source[0], source[1], source[2]])


@pytest.mark.parametrize("mode", ["cube", "cell"])
def test_apply_op_composes_like_the_rotations_and_agrees_for_numpy_and_torch(mode: str) -> None:
    x = np.random.default_rng(1).random((1, 6, 6, 6)).astype(np.float32)
    a, b = CUBIC_OPS[7], CUBIC_OPS[29]
    np.testing.assert_array_equal(apply_op(apply_op(x, a, mode), b, mode), apply_op(x, b @ a, mode))
    t = apply_op(torch.from_numpy(x), b, mode)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), apply_op(x, b, mode))


def test_apply_op_rejects_a_rotation_that_is_not_a_signed_permutation() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    with pytest.raises(RhopropError, match="signed permutation"):
        apply_op(np.zeros((4, 4, 4)), [[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_silicon_has_all_48_cubic_ops_and_wurtzite_only_a_few() -> None:
    assert len(symmetry_ops(silicon(), "cube")) == 48
    wurtzite = AseAtomsAdaptor.get_structure(bulk("ZnO", "wurtzite", a=3.25, c=5.2))
    ops = symmetry_ops(wurtzite, "cube")
    assert 1 < len(ops) < 12
    np.testing.assert_array_equal(ops[0].rotation, np.eye(3))
    for op in ops:  # every returned op maps the crystal onto itself
        moved = wurtzite.copy()
        moved.apply_operation(_symmop(op))
        assert wurtzite.matches(moved, primitive_cell=False, scale=False)


def _symmop(op):  # noqa: ANN001, ANN202 - small local adapter
    from pymatgen.core.operations import SymmOp

    return SymmOp.from_rotation_and_translation(op.rotation, op.translation)


def test_symmetry_op_on_the_silicon_tensor_equals_the_tensor_of_the_rotated_crystal() -> None:
    """Rotating the crystal by R about the cube centre c gives the tensor apply_op(x, R)."""
    settings = StandardizeSettings(n=24, edge=8.0, transform="none")
    structure = silicon()
    x = standardize(physical_density(structure), settings).x
    centre = np.full(3, (settings.n - 1) * settings.edge / settings.n / 2)
    ops = [op for op in symmetry_ops(structure, "cube") if np.abs(apply_op(x, op.rotation) - x).max() > 0.2 * x.max()]
    assert len(ops) > 20  # most ops move the tensor (those whose axis or plane holds the cube centre do not)
    for op in ops[::10]:
        rotation = op.rotation.astype(float)
        rotated = Structure(
            Lattice(structure.lattice.matrix @ rotation.T),
            structure.species,
            (structure.cart_coords - centre) @ rotation.T + centre,
            coords_are_cartesian=True,
        )
        y = standardize(physical_density(rotated), settings).x
        expected = apply_op(x, op.rotation)
        assert np.abs(y - expected).max() < 0.02 * x.max()
        assert np.abs(y - expected).mean() < 0.005 * x.mean()


@pytest.mark.parametrize("mode", ["cube", "cell"])
def test_every_symmetry_op_equals_an_origin_shift_of_the_same_crystal(mode: str) -> None:
    settings = StandardizeSettings(mode=mode, n=16, edge=6.0, transform="none", origin="corner")
    structure = AseAtomsAdaptor.get_structure(bulk("ZnO", "wurtzite", a=3.25, c=5.2))
    density = physical_density(structure)
    base = np.array([0.1, 0.05, 0.2])
    x = standardize(density, settings, origin_shift=base).x
    for op in symmetry_ops(structure, mode):
        shift = equivalent_origin_shift(op, structure, settings, origin_shift=base)
        z = standardize(density, settings, origin_shift=shift).x
        assert np.abs(apply_op(x, op.rotation, mode) - z).max() < 0.02 * x.max()


def test_roll_equals_a_whole_voxel_origin_shift_in_cell_mode() -> None:
    settings = StandardizeSettings(mode="cell", n=12, transform="none")
    density = physical_density(silicon(), spacing=0.2)
    x = standardize(density, settings).x
    shifted = standardize(density, settings, origin_shift=np.array([3, -2, 5]) / 12).x
    np.testing.assert_allclose(roll(x, [3, -2, 5]), shifted, atol=1e-5 * x.max())
    t = roll(torch.from_numpy(x), [3, -2, 5])
    np.testing.assert_array_equal(t.numpy(), roll(x, [3, -2, 5]))


def test_random_augment_is_reproducible_and_only_moves_voxels() -> None:
    x = np.random.default_rng(2).random((2, 8, 8, 8)).astype(np.float32)
    a = RandomAugment("cube", seed=3)
    b = RandomAugment("cube", seed=3)
    outs = [a(x) for _ in range(6)]
    for out, again in zip(outs, (b(x) for _ in range(6))):
        np.testing.assert_array_equal(out, again)
        assert out.shape == x.shape
        np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(x, axis=None))
    assert any(not np.array_equal(out, x) for out in outs)
    cell = RandomAugment("cell", seed=0)
    np.testing.assert_array_equal(np.sort(cell(x), axis=None), np.sort(x, axis=None))


def test_random_augment_from_symmetry_uses_the_crystal_ops() -> None:
    wurtzite = AseAtomsAdaptor.get_structure(bulk("ZnO", "wurtzite", a=3.25, c=5.2))
    augment = RandomAugment.from_symmetry(wurtzite, StandardizeSettings(), seed=0)
    assert len(augment.rotations) == len(symmetry_ops(wurtzite, "cube"))
    with pytest.raises(RhopropError, match="signed permutation"):
        RandomAugment("cube", rotations=np.ones((1, 3, 3)))


def test_random_augment_survives_pickling_for_dataloader_workers() -> None:
    import pickle

    x = np.random.default_rng(5).random((1, 6, 6, 6)).astype(np.float32)
    augment = RandomAugment("cell", seed=1)
    augment(x)
    clone = pickle.loads(pickle.dumps(augment))
    fresh = RandomAugment("cell", seed=1)
    fresh(x)
    np.testing.assert_array_equal(clone(x), fresh(x))
