"""Value transforms applied to every channel of a standardized tensor, and their inverses.

``"none"`` keeps densities in e/Å³; ``"scale"`` divides by ``scale``; ``"asinh"`` maps
``x -> asinh(x / scale)``: linear below ``scale``, logarithmic above, and (unlike a plain log)
defined, finite and monotonic for the negative values of PAW pseudo densities near cores (GPAW's
reach about -1.1 e/Å³ in SiC) and of the spin and deformation channels. All three are invertible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from rhoprop.errors import SettingsError
from rhoprop.grid.settings import TRANSFORMS, StandardizeSettings

if TYPE_CHECKING:
    import torch
    from typing_extensions import TypeIs

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor", float)


def _is_numpy(x: object) -> TypeIs[np.ndarray | np.generic | float | int]:
    """True for numpy arrays and scalars; torch tensors use their own methods (no torch import)."""
    return isinstance(x, (np.ndarray, np.generic, float, int))


def _check(transform: str, scale: float) -> None:
    if transform not in TRANSFORMS:
        raise SettingsError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    if not scale > 0:
        raise SettingsError(f"transform scale must be > 0, got {scale!r}")


def _unpack(settings: StandardizeSettings | str, scale: float | None) -> tuple[str, float]:
    if isinstance(settings, StandardizeSettings):
        return settings.transform, settings.scale if scale is None else scale
    return settings, 1.0 if scale is None else scale


def apply_transform(
    x: ArrayT, settings: StandardizeSettings | str, scale: float | None = None
) -> ArrayT:
    """Map densities ``x`` (numpy or torch) to network inputs with the settings' transform."""
    transform, scale = _unpack(settings, scale)
    _check(transform, scale)
    if transform == "none":
        return x
    if transform == "scale":
        return x / scale
    return np.arcsinh(x / scale) if _is_numpy(x) else (x / scale).asinh()


def inverse_transform(
    y: ArrayT, settings: StandardizeSettings | str, scale: float | None = None
) -> ArrayT:
    """Undo :func:`apply_transform`: network inputs ``y`` back to densities (e/Å³)."""
    transform, scale = _unpack(settings, scale)
    _check(transform, scale)
    if transform == "none":
        return y
    if transform == "scale":
        return y * scale
    unscaled: ArrayT = np.sinh(y) if _is_numpy(y) else y.sinh()
    return unscaled * scale
