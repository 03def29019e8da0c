"""What a model reads besides the density image: its invariants, and what the file's structure says.

A density file (CHGCAR, cube, XSF) carries the crystal structure and, through its integral, the
number of valence electrons. The model option ``inputs`` says what is used:

* ``density`` (the paper's setting): the standardized tensor and its invariants
  (:func:`rhoprop.models.invariants.density_invariants`), nothing from the structure;
* ``density+structure``: also the valence electrons per atom (with the mean density it fixes the
  volume per atom: V/N = (N_e/N) / mean ρ) and the composition features of the composition
  baseline (:func:`rhoprop.models.baselines.composition_features`), and four quantities derived
  from them that a network would otherwise have to learn as products and quotients: the volume per
  atom the density implies, ``V/N = (N_e/N) / mean ρ`` (Å³), its log10, the mass density it implies
  (mean atomic mass / (V/N), g/cm³) and log10 of the mean atomic mass. They are exact for the cell
  the density came from, up to the sampling of the mean density by the standardized cube. The
  atom count of the cell is not used: a supercell of the same crystal has another, and the tensor
  is cell-invariant.

:func:`extra_features` builds the ``(B, E)`` matrix in natural units; the model standardizes it
with statistics fitted on its training set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure

from rhoprop.errors import SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.models.baselines import composition_features
from rhoprop.models.baselines import feature_names as composition_names
from rhoprop.models.invariants import density_invariants, invariant_names

INPUTS = ("density", "density+structure")
DERIVED_NAMES = (
    "volume_per_atom_from_density",
    "log10_volume_per_atom_from_density",
    "mass_density_from_density",
    "log10_mean_atomic_mass",
)
"""Columns :func:`derived_features` appends for ``density+structure``."""
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def check_inputs(inputs: str) -> None:
    """Raise SettingsError unless ``inputs`` is one of :data:`INPUTS`."""
    if inputs not in INPUTS:
        raise SettingsError(f"inputs must be one of {INPUTS}, got {inputs!r}")


def structure_features(structure: Structure, electrons: float) -> np.ndarray:
    """Valence electrons per atom, its log10, and the composition features, float64
    ``(2 + 45,)``."""
    per_atom = float(electrons) / len(structure)
    return np.concatenate(
        [[per_atom, np.log10(max(per_atom, 1e-3))], composition_features(structure)]
    )


def derived_features(log10_mean_rho: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(B,) log10 mean density in e/Å³ and (B, 47) :func:`structure_features` -> (B, 4)
    :data:`DERIVED_NAMES`: the volume per atom and mass density that the density's mean and the
    structure's electrons and composition imply."""
    electrons_per_atom = side[:, 0]
    mean_mass = side[:, 2 + composition_names().index("mean_atomic_mass")]
    volume = electrons_per_atom / np.power(10.0, log10_mean_rho)
    volume = np.clip(volume, 1e-3, None)
    mass_density = mean_mass / volume * AMU_PER_A3_TO_G_PER_CM3
    return np.stack(
        [volume, np.log10(volume), mass_density, np.log10(np.clip(mean_mass, 1e-3, None))], axis=1
    )


def extra_feature_names(inputs: str, settings: StandardizeSettings) -> list[str]:
    """Names of the columns of :func:`extra_features`."""
    check_inputs(inputs)
    names = invariant_names(settings)
    if inputs == "density+structure":
        names += [
            "electrons_per_atom",
            "log10_electrons_per_atom",
            *composition_names(),
            *DERIVED_NAMES,
        ]
    return names


def extra_features(
    x: torch.Tensor | np.ndarray,
    settings: StandardizeSettings,
    inputs: str,
    structures: Sequence[Structure] = (),
    electrons: Sequence[float] = (),
) -> np.ndarray:
    """(B, C, n, n, n) tensors (+ their structures and electron counts) -> (B, E) float32 features.

    ``structures`` and ``electrons`` (one per tensor) are needed for ``density+structure`` only.
    NaN (an element property pymatgen lacks) becomes 0 after standardization in the model.
    """
    check_inputs(inputs)
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    out = density_invariants(tensor, settings).numpy().astype(np.float64)
    if inputs == "density+structure":
        if len(structures) != len(out) or len(electrons) != len(out):
            raise SettingsError(
                f"inputs 'density+structure' need one structure and one electron count per tensor: "
                f"{len(out)} tensors, {len(structures)} structures, {len(electrons)} electron "
                "counts"
            )
        side = np.stack(
            [structure_features(s, e) for s, e in zip(structures, electrons, strict=True)]
        )
        log10_mean_rho = out[:, invariant_names(settings).index("log10_mean_rho")]
        out = np.concatenate([out, side, derived_features(log10_mean_rho, side)], axis=1)
    return out.astype(np.float32)
