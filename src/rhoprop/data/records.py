"""Reading one density file into a store record: what a build's workers do, in any process.

:func:`read_batch` is the task a build submits (a Dask task, or a plain call when the build reads in
its own process): it reads, standardizes and compresses each file of a batch and returns its
:class:`~rhoprop.data.store.SampleRecord`, or a :class:`~rhoprop.data.report.ReportEntry` saying why
the file was skipped. A bad file never fails the task.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rhoprop.data.report import ReportEntry
from rhoprop.data.store import DatasetError, SampleRecord, StoreSettings, encode_tensor


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """What every reader needs: store settings, species of VASP 4 files, compression level."""

    settings: StoreSettings
    species: tuple[str, ...] | None
    level: int


#: glibc ``mallopt`` parameters (``malloc.h``) and the values :func:`reuse_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES, _MMAP_BYTES = 256 * 2**20, 32 * 2**20
_REUSING: list[bool] = []


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse in this process; False where it cannot.

    Reading one file allocates several arrays of megabytes. By default glibc maps each of them
    afresh and returns it to the system when freed, so every page is faulted in again for the next
    file: 10-20 % of a 1-worker build's time on 6 MB CHGCARs (30 k page faults for 40 files, 6 k
    after).
    Arrays up to 32 MB now come from the heap, which shrinks only once 256 MB at its top are free;
    the process stays at about its peak memory between files. A no-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)
    )


def make_record(
    sample_id: str,
    path: Path,
    settings: StoreSettings,
    species: Sequence[str] | None = None,
    compression_level: int = 1,
) -> SampleRecord:
    """Read, standardize and describe one density file (raises on any problem with it)."""
    from monty.json import MontyEncoder

    from rhoprop.grid import standardize
    from rhoprop.io import read_density

    density = read_density(
        path, species=list(species) if species else None, digest=settings.content_hash
    )
    std = standardize(density, settings.standardize)
    expected = (settings.standardize.n_channels, *(settings.standardize.n,) * 3)
    if std.x.shape != expected:
        raise DatasetError(f"standardized tensor has shape {std.x.shape}, expected {expected}")
    if not np.all(np.isfinite(std.x)):
        raise DatasetError("standardization produced non-finite values (NaN or inf)")
    largest = float(np.abs(std.x).max())
    if settings.dtype != "q16" and largest > float(np.finfo(settings.dtype).max):
        raise DatasetError(
            f"standardized values do not fit {settings.dtype} (max |x| = {largest:.3g}); store as "
            "float32 or use transform asinh"
        )
    x = np.asarray(std.x) if settings.dtype == "q16" else np.asarray(std.x).astype(settings.dtype)
    magnetization = density.total_magnetization()
    structure = density.structure
    return SampleRecord(
        id=sample_id,
        x_chunk=encode_tensor(x, settings.dtype, compression_level, settings.quantum),
        x_shape=tuple(x.shape),
        side=np.asarray(std.side, dtype=np.float32).reshape(-1),
        has_spin=bool(std.has_spin),
        native_shape=density.shape,
        structure=json.dumps(structure.as_dict(), cls=MontyEncoder),
        formula=structure.composition.reduced_formula,
        source=str(path.resolve()),
        content_hash=density.meta[settings.content_hash],
        fmt=density.fmt,
        code=density.code,
        electrons=density.electron_count(),
        magnetization=float(np.linalg.norm(np.atleast_1d(magnetization))),
    )


def reason(exc: BaseException) -> str:
    """A one-line reason from an exception."""
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:1000]


def read_one(task: tuple[str, str], options: ReadOptions) -> SampleRecord | ReportEntry:
    """A record for the file ``task`` = (id, path), or a report entry saying why it was skipped."""
    sample_id, path = task
    try:
        return make_record(sample_id, Path(path), options.settings, options.species, options.level)
    except Exception as exc:  # any failure of one input is reported, never fatal
        return ReportEntry("bad_file", sample_id, path, reason(exc))


def read_batch(
    batch: Sequence[tuple[str, str]], options: ReadOptions
) -> list[SampleRecord | ReportEntry]:
    """The build's task: :func:`read_one` for each (id, path) of ``batch``, in this process (the
    first call makes the process keep freed memory for reuse: :func:`reuse_freed_memory`)."""
    if not _REUSING:
        _REUSING.append(reuse_freed_memory())
    return [read_one(task, options) for task in batch]
