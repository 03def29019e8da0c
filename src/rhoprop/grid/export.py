"""Standardize one density file into a ``.npy`` tensor with its settings saved beside it."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rhoprop.errors import RhopropError
from rhoprop.grid.plot import plot_slices
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.grid.standardize import StandardizedDensity, standardize
from rhoprop.settings import atomic_write_bytes, atomic_write_text


def _npy_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    if out.suffix != ".npy":
        raise RhopropError(f"the output tensor must be a .npy file (e.g. x.npy), got {out}")
    return out


def save_standardized(
    result: StandardizedDensity,
    out: str | os.PathLike[str],
    settings: StandardizeSettings,
    source: str = "",
) -> tuple[Path, Path]:
    """Write ``result.x`` to ``out`` (``.npy``) and ``out`` with suffix ``.json`` (settings, side
    features, has_spin, source), both atomically; return the two paths."""
    out = _npy_path(out)
    buffer = io.BytesIO()
    np.save(buffer, result.x, allow_pickle=False)
    atomic_write_bytes(out, buffer.getvalue())
    sidecar = out.with_suffix(".json")
    record = {
        "settings": settings.to_dict(),
        "shape": list(result.x.shape),
        "side": [float(v) for v in result.side],
        "has_spin": bool(result.has_spin),
        "source": source,
    }
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
    return out, sidecar


def standardize_file(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: StandardizeSettings,
    species: Sequence[str] | None = None,
    fmt: str | None = None,
    picture: str | os.PathLike[str] | None = None,
) -> tuple[StandardizedDensity, list[Path]]:
    """Read a density file, standardize it, save tensor + sidecar (and a slice picture if asked)."""
    from rhoprop.io import read_density

    _npy_path(out)
    density = read_density(path, species=species, fmt=fmt)
    result = standardize(density, settings)
    written = list(save_standardized(result, out, settings, source=str(path)))
    if picture is not None:
        written.append(
            plot_slices(result, picture, channels=list(settings.channels), title=Path(path).name)
        )
    return result, written
