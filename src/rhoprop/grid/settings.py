"""Settings of the standardization Density -> fixed tensor, recorded with every dataset and
model."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rhoprop.errors import SettingsError
from rhoprop.settings import Settings

MODES = ("cube", "cell")
CHANNELS = ("total", "spin", "deformation")
TRANSFORMS = ("none", "asinh", "scale")
INTERPOLATIONS = ("cubic", "linear")
ORIGINS = ("site", "corner")

#: Bumped whenever a change to rhoprop.grid changes the tensors produced for the same settings.
STANDARDIZE_VERSION = 1


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclasses.dataclass(frozen=True)
class StandardizeSettings(Settings):
    """How a :class:`~rhoprop.io.Density` becomes a ``(C, n, n, n)`` float32 tensor.

    Attributes:
        mode: ``"cube"`` samples the periodic field on a fixed physical cube of edge ``edge`` Å,
            axes along Cartesian x, y, z, at the points ``(i, j, k) * edge / n`` (the cube's
            corner, its first sample point, at the Cartesian origin; pyrho's convention);
            ``"cell"`` Fourier resamples the unit cell to ``n³`` points (lattice parameters
            become side features).
        n: points per edge of the output tensor.
        edge: cube edge in Å (mode ``cube`` only).
        channels: which channels, in order: ``"total"`` (ρ, e/Å³), ``"spin"`` (ρ↑ − ρ↓; for
            non-collinear input the component along the principal magnetization axis; sign such
            that the total moment is >= 0; zeros when the input has none), ``"deformation"``
            (ρ minus the free-atom valence superposition scaled to ρ's electron count).
        transform: value transform applied to every channel: ``"none"``; ``"scale"``
            (x / scale); ``"asinh"`` (asinh(x / scale), defined for the negative pockets of PAW
            pseudo densities, log-like for large x).
        scale: the fixed scale (e/Å³) of the transform.
        interpolation: how mode ``cube`` interpolates between native grid points: ``"cubic"``
            (periodic cubic B-spline through every native point) or ``"linear"`` (trilinear, as
            pyrho's ``get_data_in_cube``; faster, about 30x larger errors on 0.15 Å grids).
        origin: where the sampling is anchored: ``"site"`` on a canonical site of the crystal
            (:func:`rhoprop.grid.origin.canonical_site`: the cube is centred on it, or the cell grid
            starts at it), so the tensor does not depend on the origin the file happens to use;
            ``"corner"``: the cube's first point at the Cartesian origin, the cell grid at the
            file's origin (what every store written before this setting existed used, and what
            settings without an ``origin`` key read as).
        version: version of the standardization code that produced the tensor.
    """

    mode: str = "cube"
    n: int = 32
    edge: float = 10.0
    channels: tuple[str, ...] = ("total",)
    transform: str = "asinh"
    scale: float = 0.05
    interpolation: str = "cubic"
    origin: str = "site"
    version: int = STANDARDIZE_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandardizeSettings:
        """Settings from a dict; one written before ``origin`` existed reads as ``"corner"``."""
        if isinstance(data, dict) and "origin" not in data:
            data = {**data, "origin": "corner"}
        return super().from_dict(data)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingsError(
                f"StandardizeSettings.mode must be one of {MODES}, got {self.mode!r}"
            )
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 4:
            raise SettingsError(f"StandardizeSettings.n must be an int >= 4, got {self.n!r}")
        if not _positive_number(self.edge):
            raise SettingsError(
                f"StandardizeSettings.edge must be a number > 0 (Å), got {self.edge!r}"
            )
        channels = (self.channels,) if isinstance(self.channels, str) else self.channels
        if not isinstance(channels, (tuple, list)):
            raise SettingsError(
                f"StandardizeSettings.channels must be a list of names, got {channels!r}"
            )
        channels = tuple(channels)
        object.__setattr__(self, "channels", channels)
        if (
            not channels
            or any(c not in CHANNELS for c in channels)
            or len(set(channels)) != len(channels)
        ):
            raise SettingsError(
                f"StandardizeSettings.channels must be distinct names from {CHANNELS}, got "
                f"{channels!r}"
            )
        if self.transform not in TRANSFORMS:
            raise SettingsError(
                f"StandardizeSettings.transform must be one of {TRANSFORMS}, got {self.transform!r}"
            )
        if not _positive_number(self.scale):
            raise SettingsError(
                f"StandardizeSettings.scale must be a number > 0 (e/Å³), got {self.scale!r}"
            )
        if self.origin not in ORIGINS:
            raise SettingsError(
                f"StandardizeSettings.origin must be one of {ORIGINS}, got {self.origin!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise SettingsError(
                f"StandardizeSettings.interpolation must be one of {INTERPOLATIONS}, got "
                f"{self.interpolation!r}"
            )

    @property
    def n_channels(self) -> int:
        """Number of output channels C."""
        return len(self.channels)

    @property
    def n_side_features(self) -> int:
        """Number of side features (lattice a, b, c in Å and α, β, γ in degrees in mode
        ``cell``)."""
        return 6 if self.mode == "cell" else 0
