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
  is cell-invariant;
* ``density+structure+tier``: also which data tier (the protocol that computed the material, e.g.
  ``gpaw-v1`` or ``gpaw-scf-v1``) the sample comes from, one-hot over the tiers the model was
  trained on. Tiers label the same quantities with small systematic offsets (CHGNet volumes about
  1 % below the EOS tier's, Fermi levels about 0.15 eV apart; ``docs/data.md``); with the tier as an
  input the network (through its wide linear path, one weight per tier and target) can learn those
  offsets instead of averaging them. A prediction is made as one chosen tier would label it (the
  first, the reference tier, unless told otherwise).

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

INPUTS = ("density", "density+structure", "density+structure+tier")
TIER_SUFFIX = "+tier"
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


def reads_tier(inputs: str) -> bool:
    """Whether a model of ``inputs`` reads the data tier of a sample."""
    return inputs.endswith(TIER_SUFFIX)


def base_inputs(inputs: str) -> str:
    """``inputs`` without the tier: what the features other than the tier's are computed from."""
    return inputs.removesuffix(TIER_SUFFIX)


def tier_features(sample_tiers: Sequence[str], tiers: Sequence[str]) -> np.ndarray:
    """(B, K) one-hot float32 of each sample's tier among the model's ``tiers``."""
    index = {t: k for k, t in enumerate(tiers)}
    unknown = sorted({t for t in sample_tiers if t not in index})
    if unknown:
        raise SettingsError(
            f"tier(s) {unknown} are not among the tiers this model was trained on {list(tiers)}; "
            "choose one of those (e.g. `rhoprop predict --as-tier NAME`)"
        )
    out = np.zeros((len(sample_tiers), len(tiers)), dtype=np.float32)
    for row, tier in enumerate(sample_tiers):
        out[row, index[tier]] = 1.0
    return out


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


def extra_feature_names(
    inputs: str, settings: StandardizeSettings, tiers: Sequence[str] = ()
) -> list[str]:
    """Names of the columns of :func:`extra_features` (``tiers``: the model's, for ``+tier``)."""
    check_inputs(inputs)
    names = invariant_names(settings)
    if base_inputs(inputs) == "density+structure":
        names += [
            "electrons_per_atom",
            "log10_electrons_per_atom",
            *composition_names(),
            *DERIVED_NAMES,
        ]
    if reads_tier(inputs):
        names += [f"tier={t}" for t in tiers]
    return names


def extra_features(
    x: torch.Tensor | np.ndarray,
    settings: StandardizeSettings,
    inputs: str,
    structures: Sequence[Structure] = (),
    electrons: Sequence[float] = (),
    sample_tiers: Sequence[str] = (),
    tiers: Sequence[str] = (),
) -> np.ndarray:
    """(B, C, n, n, n) tensors (+ their structures and electron counts) -> (B, E) float32 features.

    ``structures`` and ``electrons`` (one per tensor) are needed for ``density+structure`` (and
    ``+tier``) only; ``sample_tiers`` (one per tensor) and the model's ``tiers`` for ``+tier``.
    NaN (an element property pymatgen lacks) becomes 0 after standardization in the model.
    """
    check_inputs(inputs)
    if reads_tier(inputs):
        if len(sample_tiers) != len(x) or not tiers:
            raise SettingsError(
                f"inputs {inputs!r} need the model's tiers and one tier per tensor: {len(x)} "
                f"tensors, {len(sample_tiers)} tiers given, model tiers {list(tiers)}"
            )
        base = extra_features(x, settings, base_inputs(inputs), structures, electrons)
        return np.concatenate([base, tier_features(sample_tiers, tiers)], axis=1)
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
