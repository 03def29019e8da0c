"""Slice pictures of densities and standardized tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor

from rhoprop.errors import RhopropError
from rhoprop.grid import StandardizeSettings, atomic_superposition, plot_slices, standardize
from rhoprop.io import Density

PNG = b"\x89PNG\r\n\x1a\n"


def spin_density() -> Density:
    structure = AseAtomsAdaptor.get_structure(bulk("Fe", "bcc", a=2.87, cubic=True))
    total = atomic_superposition(structure, (16, 16, 16))
    return Density(total, structure, spin=0.2 * total - 0.02)


def test_plot_slices_of_a_density_and_of_its_standardized_tensor(tmp_path: Path) -> None:
    density = spin_density()
    out = plot_slices(density, tmp_path / "native.png")
    assert out.read_bytes().startswith(PNG)
    std = standardize(density, StandardizeSettings(n=12, channels=("total", "spin", "deformation")))
    big = plot_slices(std, tmp_path / "std.png", channels=["total", "spin", "deformation"])
    assert big.read_bytes().startswith(PNG)
    assert big.stat().st_size > out.stat().st_size  # three channel rows against two
    assert plot_slices(torch.from_numpy(std.x[0]), tmp_path / "one.svg").read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["native.png", "one.svg", "std.png"]


def test_plot_slices_rejects_bad_shapes_names_and_formats(tmp_path: Path) -> None:
    with pytest.raises(RhopropError, match="tensor"):
        plot_slices(np.zeros((4, 4)), tmp_path / "a.png")
    with pytest.raises(RhopropError, match="channel name"):
        plot_slices(np.zeros((2, 4, 4, 4)), tmp_path / "a.png", channels=["total"])
    with pytest.raises(RhopropError, match="picture"):
        plot_slices(np.zeros((4, 4, 4)), tmp_path / "a.notaformat")
    assert not any(tmp_path.iterdir())
