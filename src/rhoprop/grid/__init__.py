"""Standardization of densities into fixed tensors, value transforms, augmentation and pictures.

``standardize(density, settings) -> StandardizedDensity(x (C, n, n, n) float32, side (S,),
has_spin)``; ``rhoprop.grid.augment`` holds the tensor-level augmentations (periodic rolls,
point-group ops).
"""

from types import ModuleType

from rhoprop.grid.atoms import atomic_superposition, free_atom
from rhoprop.grid.export import save_standardized, standardize_file
from rhoprop.grid.origin import canonical_site, shift_origin
from rhoprop.grid.plot import plot_slices
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.grid.standardize import StandardizedDensity, standardize
from rhoprop.grid.transforms import apply_transform, inverse_transform


def __getattr__(name: str) -> ModuleType:
    """Import ``rhoprop.grid.augment`` (which needs torch) only when it is used."""
    if name == "augment":
        import importlib

        return importlib.import_module("rhoprop.grid.augment")
    raise AttributeError(f"module 'rhoprop.grid' has no attribute {name!r}")


__all__ = [
    "StandardizeSettings",
    "StandardizedDensity",
    "apply_transform",
    "atomic_superposition",
    "augment",
    "canonical_site",
    "free_atom",
    "inverse_transform",
    "plot_slices",
    "save_standardized",
    "shift_origin",
    "standardize",
    "standardize_file",
]
