"""Building (and resuming, and appending to) a dataset store from a folder of density files.

``build_dataset`` matches the density files under an input folder to ids and labels, has them read
and standardized (:mod:`rhoprop.data.dispatch`: in this process, or as Dask tasks on a local cluster
or a running scheduler's workers), and appends the results to the store in shards of
``shard_size`` samples, each written atomically by this process, the store's only writer. Memory
stays bounded whatever the number of files: at most two batches of files per worker thread are in
flight and at most one shard is buffered. A killed build is resumed by running it again: ids
already in a complete shard are not read again, and nothing else was ever visible.

Bad inputs never stop a build: a file that fails to read or standardize (or kills the worker
reading it twice), an id that maps to two files, a file whose id is not in the labels, an id of
the labels with no file, duplicate label ids and cells that do not parse are skipped and listed in
``report.csv`` / ``report.json`` (:mod:`rhoprop.data.report`); label merging is in
:mod:`rhoprop.data.label_merge`, the reading of one file in :mod:`rhoprop.data.records`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import rhoprop
from rhoprop.data.dispatch import read_files
from rhoprop.data.inputs import find_density_files, id_from_path
from rhoprop.data.label_merge import prepare_labels, write_labels
from rhoprop.data.records import ReadOptions, make_record, reuse_freed_memory
from rhoprop.data.report import EXIT_SKIPPED, BuildReport, ReportEntry, write_report
from rhoprop.data.store import (
    DatasetError,
    SampleRecord,
    StoreSettings,
    open_shard,
    read_store_settings,
    remove_stale_temporaries,
    shard_paths,
    store_lock,
    write_shard,
)
from rhoprop.errors import SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.settings import atomic_write_text

__all__ = [
    "DEFAULT_QUANTUM",
    "EXIT_SKIPPED",
    "BuildReport",
    "ReportEntry",
    "build_dataset",
    "make_record",
    "reuse_freed_memory",
    "settings_with_options",
    "write_report",
]

_FLUSH_SECONDS = 120.0
_MAX_BUFFER_BYTES = 256 * 2**20

#: Quantum of a new ``q16`` store when none is given (asinh units: density error at most 1.5 %).
DEFAULT_QUANTUM = 0.03


def _resolve_settings(
    out: Path,
    settings: StandardizeSettings | None,
    dtype: str | None,
    content_hash: str | None,
    quantum: float | None = None,
) -> tuple[StoreSettings, bool]:
    """The store's settings (creating none yet): given ones must match an existing store's."""
    if (out / "settings.json").is_file():
        current = read_store_settings(out)
        problems = []
        if settings is not None and settings != current.standardize:
            mine, theirs = settings.to_dict(), current.standardize.to_dict()
            diff = [
                f"{k}: store {theirs[k]!r}, given {mine[k]!r}"
                for k in theirs
                if mine[k] != theirs[k]
            ]
            problems.append("standardization differs (" + "; ".join(diff) + ")")
        if dtype is not None and dtype != current.dtype:
            problems.append(f"dtype: store {current.dtype!r}, given {dtype!r}")
        if quantum is not None and quantum != current.quantum:
            problems.append(f"quantum: store {current.quantum!r}, given {quantum!r}")
        if content_hash is not None and content_hash != current.content_hash:
            problems.append(f"content hash: store {current.content_hash!r}, given {content_hash!r}")
        if problems:
            raise SettingsError(
                f"dataset {out} was built with other settings: {', '.join(problems)}. Rerun with "
                "the store's settings (omit the options to use them) or build into a new --out"
            )
        return current, False
    if out.exists() and any(p.name not in (".lock", "shards") for p in out.iterdir()):
        raise DatasetError(
            f"{out} exists and is not a rhoprop dataset (no settings.json); choose a new --out"
        )
    defaults = StoreSettings()
    return StoreSettings(
        standardize=settings or defaults.standardize,
        dtype=dtype or defaults.dtype,
        quantum=quantum
        if quantum is not None
        else (DEFAULT_QUANTUM if dtype == "q16" else defaults.quantum),
        content_hash=content_hash or defaults.content_hash,
    ), True


def settings_with_options(out: str | os.PathLike[str], **options: Any) -> StandardizeSettings:
    """The existing store's standardization settings (defaults for a new store) with ``options``.

    Options that are None are left as they are; the result is checked against the store by
    :func:`build_dataset`, so a differing explicit option gives a clear error there.
    """
    out = Path(out)
    base = (
        read_store_settings(out).standardize
        if (out / "settings.json").is_file()
        else StandardizeSettings()
    )
    given = {k: v for k, v in options.items() if v is not None}
    if "channels" in given:
        given["channels"] = tuple(given["channels"])
    return dataclasses.replace(base, **given)


def _stored_ids(out: Path) -> set[str]:
    """Ids already in the complete shards of a store."""
    ids: set[str] = set()
    for shard in shard_paths(out):
        with open_shard(shard) as f:
            ids.update(s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][()])
    return ids


def _append_build_log(out: Path, entry: dict[str, Any]) -> None:
    """Append one run's description to ``build.json``."""
    path = out / "build.json"
    runs: list[Any] = []
    if path.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            runs = json.loads(path.read_text()).get("runs", [])
    runs.append(entry)
    atomic_write_text(path, json.dumps({"runs": runs}, indent=2) + "\n")


class _ShardBuffer:
    """Collects records and writes a shard every ``shard_size`` samples (or bytes, or seconds)."""

    def __init__(self, out: Path, settings: StoreSettings, shard_size: int) -> None:
        self.out, self.settings, self.shard_size = out, settings, shard_size
        self.records: list[SampleRecord] = []
        self.nbytes = 0
        self.written = 0
        self.last_flush = time.monotonic()

    def add(self, record: SampleRecord) -> None:
        self.records.append(record)
        self.nbytes += record.nbytes
        full = len(self.records) >= self.shard_size or self.nbytes >= _MAX_BUFFER_BYTES
        if full or time.monotonic() - self.last_flush > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.records:
            write_shard(self.out, self.records, self.settings)
            self.written += len(self.records)
        self.records, self.nbytes, self.last_flush = [], 0, time.monotonic()


def _plan(
    files: list[Path],
    input_dir: Path,
    stored: set[str],
    labels_path: Path | None,
    label_ids: tuple[pd.Index, set[str], dict[str, int]] | None,
) -> tuple[list[tuple[str, str]], int, list[ReportEntry]]:
    """Match files to ids and labels: (tasks to run, files already stored, report entries).

    ``label_ids`` is (ids of the label table, its duplicate ids, line of each id), or None when
    the build has no labels (then every file with an id is built).
    """
    entries: list[ReportEntry] = []
    by_id: dict[str, list[Path]] = {}
    for path in files:
        sid = id_from_path(path, input_dir)
        if sid is None:
            detail = (
                "the file name gives no id (a bare CHGCAR directly in the input folder); "
                "put it in a folder named after its id"
            )
            entries.append(ReportEntry("file_without_id", "", str(path), detail))
        else:
            by_id.setdefault(sid, []).append(path)
    tasks: list[tuple[str, str]] = []
    n_already = 0
    for sid, paths in by_id.items():
        if len(paths) > 1:
            detail = f"{len(paths)} files map to id {sid!r}: {[str(p) for p in paths]}; keep one"
            entries.extend(ReportEntry("duplicate_file", sid, str(p), detail) for p in paths)
        elif label_ids is not None and sid in label_ids[1]:
            detail = "file skipped: its id has several rows in the label table"
            entries.append(ReportEntry("duplicate_id", sid, str(paths[0]), detail))
        elif label_ids is not None and sid not in label_ids[0]:
            detail = f"id {sid!r} is not in the label table {labels_path.name}"  # type: ignore[union-attr]
            entries.append(ReportEntry("file_without_id", sid, str(paths[0]), detail))
        elif sid in stored:
            n_already += 1
        else:
            tasks.append((sid, str(paths[0])))
    if label_ids is not None:
        for sid in label_ids[0]:
            if sid not in by_id and sid not in stored:
                detail = f"no density file under {input_dir} has id {sid!r}"
                line = label_ids[2].get(sid)
                entries.append(ReportEntry("id_without_file", sid, str(labels_path), detail, line))
    return tasks, n_already, entries


def build_dataset(
    input_dir: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    settings: StandardizeSettings | None = None,
    workers: int = 1,
    species: Sequence[str] | None = None,
    *,
    id_column: str = "id",
    schema: str | os.PathLike[str] | None = None,
    dtype: str | None = None,
    quantum: float | None = None,
    content_hash: str | None = None,
    shard_size: int = 128,
    glob: str | None = None,
    max_classes: int = 20,
    compression_level: int = 1,
    progress: bool = True,
    scheduler: str | None = None,
) -> BuildReport:
    """Build, resume or extend the store ``out`` from the density files under ``input_dir``.

    ``settings``/``dtype``/``quantum``/``content_hash`` default to the existing store's (or the
    defaults of :class:`StoreSettings` for a new store; ``dtype="q16"`` without a quantum takes
    :data:`DEFAULT_QUANTUM`) and must match an existing store's. With ``labels``, only files whose
    id is in the table are built; without, every file is. Returns a :class:`BuildReport` (also
    written to the store).

    Files are read in this process with ``workers=1``, by a local Dask cluster of ``workers``
    single-threaded processes otherwise, or by the workers of the running Dask scheduler at
    ``scheduler`` (``tcp://HOST:PORT``; they must see ``input_dir`` at the same path). The processes
    that read files keep freed memory for reuse (:func:`reuse_freed_memory`).
    """
    t0 = time.perf_counter()
    input_dir, out = Path(input_dir), Path(out)
    if not input_dir.is_dir():
        raise DatasetError(f"input folder {input_dir} does not exist or is not a folder")
    if workers < 1:
        raise SettingsError(f"workers must be >= 1, got {workers}")
    if shard_size < 1:
        raise SettingsError(f"shard_size must be >= 1, got {shard_size}")
    if scheduler is not None:  # before anything is written: a refusal leaves no store behind
        from rhoprop.cluster import check_scheduler_address

        check_scheduler_address(scheduler)
    labels_path = Path(labels) if labels is not None else None
    schema_path = Path(schema) if schema is not None else None
    species_t = tuple(species) if species else None
    store_settings, new = _resolve_settings(out, settings, dtype, content_hash, quantum)
    created = not out.exists()
    with _refusal_leaves_nothing(out, created), store_lock(out):
        remove_stale_temporaries(out)
        stored = _stored_ids(out)
        entries: list[ReportEntry] = []
        if labels_path is not None:
            raw, values, targets, label_entries, duplicates = prepare_labels(
                labels_path, out, id_column, schema_path, stored, max_classes
            )
            entries.extend(label_entries)
        files = find_density_files(input_dir, glob, exclude=out)
        label_ids = (raw.index, duplicates, raw.attrs["lines"]) if labels_path is not None else None
        tasks, n_already, plan_entries = _plan(files, input_dir, stored, labels_path, label_ids)
        entries.extend(plan_entries)
        if new:  # only now: a build refused above (labels, schema) leaves no store behind
            store_settings.to_json(out / "settings.json")
        if labels_path is not None:
            write_labels(out, values, targets, stored | {t[0] for t in tasks})
        buffer = _ShardBuffer(out, store_settings, shard_size)
        options = ReadOptions(store_settings, species_t, compression_level)
        n_bad = 0
        try:
            with _progress(progress, len(tasks)) as advance:
                for result in read_files(tasks, options, workers, scheduler):
                    if isinstance(result, ReportEntry):
                        entries.append(result)
                        n_bad += 1
                    else:
                        buffer.add(result)
                    advance(n_bad)
        finally:
            buffer.flush()
        stored_now = stored | _stored_ids(out)
        if labels_path is not None:
            write_labels(out, values, targets, stored_now)
        report = BuildReport(
            out=out,
            n_files=len(files),
            n_added=buffer.written,
            n_already=n_already,
            n_total=len(stored_now),
            entries=sorted(entries, key=lambda e: (e.category, e.id, e.path)),
            elapsed_s=time.perf_counter() - t0,
        )
        write_report(out, report)
        _append_build_log(
            out,
            {
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "rhoprop_version": rhoprop.__version__,
                "input_dir": str(input_dir.resolve()),
                "labels": str(labels_path.resolve()) if labels_path else None,
                "schema": str(schema_path.resolve()) if schema_path else None,
                "species": list(species_t) if species_t else None,
                "workers": workers if scheduler is None else None,
                "scheduler": scheduler,
                "n_files": report.n_files,
                "n_added": report.n_added,
                "n_total": report.n_total,
                "counts": report.counts(),
            },
        )
    return report


@contextlib.contextmanager
def _refusal_leaves_nothing(out: Path, created: bool) -> Iterator[None]:
    """Remove the folder ``out`` again when this build created it and is refused before writing a
    store into it (its settings.json), so that a refusal writes nothing."""
    try:
        yield
    except Exception:
        if created and not (out / "settings.json").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    """Progress of the build on stderr (:mod:`rhoprop.progress`); yields ``advance(n_skipped)``."""
    from rhoprop.progress import progress

    # refresh_thread=False: the bar is redrawn as results come, by the one thread that writes.
    with progress(
        "building",
        total,
        enabled=enabled and total > 0,
        transient=False,
        refresh_thread=False,
        log_interval=10.0,
    ) as steps:
        yield lambda n_bad: steps.advance(description=f"building ({n_bad} skipped)")
