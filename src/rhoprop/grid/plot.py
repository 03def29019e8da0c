"""Pictures of densities and standardized tensors: three orthogonal central slices per channel."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rhoprop.errors import RhopropError
from rhoprop.grid.standardize import StandardizedDensity, spin_field
from rhoprop.io.density import Density
from rhoprop.settings import atomic_write_bytes

if TYPE_CHECKING:
    import torch

_PLANES = ("(1st axis fixed)", "(2nd axis fixed)", "(3rd axis fixed)")


def _as_channels(
    obj: Density | StandardizedDensity | np.ndarray | torch.Tensor, names: Sequence[str] | None
) -> tuple[np.ndarray, list[str], str]:
    if isinstance(obj, Density):
        fields, labels = [obj.total], ["total (e/Å³)"]
        spin = spin_field(obj)
        if spin is not None:
            fields.append(spin)
            labels.append("spin (μB/Å³)")
        return (
            np.stack(fields),
            labels,
            f"{obj.structure.composition.reduced_formula}: native grid {obj.shape}",
        )
    if isinstance(obj, StandardizedDensity):
        obj = obj.x
    if hasattr(obj, "detach"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    x = np.asarray(obj, dtype=float)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise RhopropError(
            f"plot_slices needs a Density or a (C, n, n, n) / (n, n, n) tensor, got shape {x.shape}"
        )
    labels = list(names) if names is not None else [f"channel {i}" for i in range(len(x))]
    if len(labels) != len(x):
        raise RhopropError(f"plot_slices got {len(labels)} channel name(s) for {len(x)} channel(s)")
    return x, labels, f"standardized tensor {tuple(x.shape)}"


def plot_slices(
    obj: Density | StandardizedDensity | np.ndarray | torch.Tensor,
    path: str | os.PathLike[str],
    channels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save the central slice through each axis of every channel as a picture (format from suffix).

    ``obj`` is a :class:`Density` (its native grid: total and spin), a :class:`StandardizedDensity`,
    or a ``(C, n, n, n)`` / ``(n, n, n)`` array or tensor; ``channels`` names the tensor's channels.
    Signed channels use a diverging colour map centred on zero. The file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, labels, default_title = _as_channels(obj, channels)
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig, axes = plt.subplots(len(x), 3, figsize=(10, 3.2 * len(x)), squeeze=False)
    for c, (field, label) in enumerate(zip(x, labels, strict=True)):
        lo, hi = float(field.min()), float(field.max())
        signed = lo < 0 < hi and abs(lo) > 0.05 * abs(hi)
        limit = max(abs(lo), abs(hi)) or 1.0
        for axis in range(3):
            plane = np.take(field, field.shape[axis] // 2, axis=axis)
            ax = axes[c, axis]
            kwargs = (
                {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit} if signed else {"cmap": "viridis"}
            )
            image = ax.imshow(plane.T, origin="lower", **kwargs)
            ax.set_title(f"{label} {_PLANES[axis]}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title or default_title)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=fmt, dpi=110)
    except ValueError as exc:
        raise RhopropError(f"cannot save a picture as {path.name!r}: {exc}") from exc
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
