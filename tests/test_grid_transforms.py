"""Value transforms on data with the negative values of PAW pseudo densities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from rhoprop.errors import SettingsError
from rhoprop.grid import StandardizeSettings, apply_transform, inverse_transform, standardize
from rhoprop.io import Density

# GPAW pseudo densities reach about -1.1 e/Å³ near cores (SiC); densities span 1e-6 .. 1e3 e/Å³
VALUES = np.concatenate([-np.logspace(-6, np.log10(1.1), 50)[::-1], [0.0], np.logspace(-6, 3, 80)])


@pytest.mark.parametrize("transform", ["none", "scale", "asinh"])
def test_transform_is_finite_monotonic_and_invertible_on_negative_values(transform: str) -> None:
    settings = StandardizeSettings(transform=transform, scale=0.05)
    y = apply_transform(VALUES, settings)
    assert np.all(np.isfinite(y))
    assert np.all(np.diff(y) > 0)
    np.testing.assert_allclose(inverse_transform(y, settings), VALUES, rtol=1e-9, atol=1e-15)
    t = apply_transform(torch.from_numpy(VALUES), settings)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), y, rtol=1e-12)
    np.testing.assert_allclose(inverse_transform(t, settings).numpy(), VALUES, rtol=1e-9, atol=1e-15)


def test_asinh_is_linear_for_small_and_logarithmic_for_large_densities() -> None:
    settings = StandardizeSettings(transform="asinh", scale=0.05)
    assert apply_transform(np.array(1e-4), settings) == pytest.approx(1e-4 / 0.05, rel=1e-6)
    big = apply_transform(np.array([100.0, 1000.0]), settings)
    assert big[1] - big[0] == pytest.approx(np.log(10.0), rel=1e-6)


def test_standardized_density_with_negative_pockets_inverts_to_the_raw_tensor() -> None:
    structure = Structure(Lattice.cubic(4.0), ["Si", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    g = np.meshgrid(*[np.arange(24) / 24] * 3, indexing="ij")
    total = 0.3 + 0.9 * np.cos(2 * np.pi * g[0]) * np.cos(2 * np.pi * g[1]) - 0.5 * np.sin(2 * np.pi * g[2]) ** 2
    assert total.min() < -1.0
    density = Density(total, structure)
    raw = standardize(density, StandardizeSettings(n=12, transform="none")).x
    settings = StandardizeSettings(n=12, transform="asinh", scale=0.05)
    x = standardize(density, settings).x
    assert np.all(np.isfinite(x)) and raw.min() < -1.0
    np.testing.assert_allclose(inverse_transform(x.astype(np.float64), settings), raw, rtol=1e-5, atol=1e-6)


def test_unknown_transform_or_bad_scale_is_rejected() -> None:
    with pytest.raises(SettingsError, match="transform"):
        apply_transform(VALUES, "log")
    with pytest.raises(SettingsError, match="scale"):
        inverse_transform(VALUES, "asinh", scale=0.0)
    with pytest.raises(SettingsError, match="scale"):
        StandardizeSettings(scale=-1.0)
