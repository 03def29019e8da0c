"""Building (and resuming, and appending to) a dataset store from a folder of density files.

``build_dataset`` reads every density file under an input folder with a pool of worker processes,
standardizes it, and appends the results to the store in shards of ``shard_size`` samples, each
written atomically. Memory stays bounded whatever the number of files: at most ``2 * workers``
files are in flight and at most one shard is buffered. A killed build is resumed by running it
again: ids already in a complete shard are not read again, and nothing else was ever visible.

Bad inputs never stop a build: a file that fails to read or standardize, an id that maps to two
files, a file whose id is not in the labels, an id of the labels with no file, duplicate label ids
and cells that do not parse are skipped and listed in ``report.csv`` / ``report.json``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rhoprop
from rhoprop.data.inputs import find_density_files, id_from_path
from rhoprop.data.labels import (
    LabelIssue,
    TargetSpec,
    parse_labels,
    read_label_values,
    read_raw_labels,
    read_targets,
    write_label_values,
    write_targets,
)
from rhoprop.data.store import (
    DatasetError,
    SampleRecord,
    StoreSettings,
    encode_tensor,
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

#: Exit code of ``rhoprop dataset build`` when something was skipped (0 when nothing was).
EXIT_SKIPPED = 3
#: Report categories that mean an input (file, label row or cell) was skipped.
SKIP_CATEGORIES = (
    "bad_file",
    "duplicate_file",
    "file_without_id",
    "duplicate_id",
    "blank_id",
    "id_without_file",
    "bad_value",
)
#: Report categories that are notes only (nothing the user gave was dropped from a sample).
NOTE_CATEGORIES = ("ignored_column",)
_FLUSH_SECONDS = 120.0
_MAX_BUFFER_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class ReportEntry:
    """One line of a build report: what was skipped (or noted), which id/file, and why."""

    category: str
    id: str
    path: str
    detail: str
    line: int | None = None
    column: str = ""

    @property
    def skipped(self) -> bool:
        """True when an input was dropped (False for notes such as an ignored column)."""
        return self.category in SKIP_CATEGORIES


@dataclasses.dataclass
class BuildReport:
    """The outcome of one :func:`build_dataset` run.

    Attributes:
        out: the store directory.
        n_files: density files found in the input folder.
        n_added: samples added by this run.
        n_already: files whose id was already in the store (not read again).
        n_total: samples in the store after the run.
        entries: what was skipped or noted, with reasons (also in ``report.csv``).
        elapsed_s: wall time of the run.
    """

    out: Path
    n_files: int
    n_added: int
    n_already: int
    n_total: int
    entries: list[ReportEntry]
    elapsed_s: float

    @property
    def skipped(self) -> list[ReportEntry]:
        """Entries that dropped an input."""
        return [e for e in self.entries if e.skipped]

    @property
    def clean(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped

    @property
    def exit_code(self) -> int:
        """0 when nothing was skipped, :data:`EXIT_SKIPPED` otherwise."""
        return 0 if self.clean else EXIT_SKIPPED

    def counts(self) -> dict[str, int]:
        """Number of entries per category."""
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.category] = out.get(e.category, 0) + 1
        return out

    def summary(self) -> str:
        """One line: what was built, what was skipped, where the report is."""
        line = (
            f"{self.n_total} samples in {self.out} ({self.n_added} added, {self.n_already} "
            f"already there) from {self.n_files} files in {self.elapsed_s:.1f} s"
        )
        counts = self.counts()
        # A duplicated id has an entry for its label rows and one for its file: count it once.
        shown = {**counts}
        if "duplicate_id" in shown:
            shown["duplicate_id"] = len({e.id for e in self.entries if e.category == "duplicate_id"})
        words = {
            skipped: ", ".join(
                f"{n} {cat.replace('_', ' ')}"
                for cat, n in sorted(shown.items())
                if (cat in SKIP_CATEGORIES) == skipped
            )
            for skipped in (True, False)
        }
        line += f"; skipped: {words[True]}" if words[True] else "; nothing skipped"
        if words[False]:
            line += f"; notes: {words[False]}"
        if counts:
            line += f" (see {self.out / 'report.csv'})"
        return line


# -- worker side -----------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class _Options:
    """What every worker needs: store settings, species of VASP 4 files, gzip level."""

    settings: StoreSettings
    species: tuple[str, ...] | None
    level: int


def _init_worker(options: _Options, in_pool: bool) -> None:
    """Set the per-process build options; pool workers ignore SIGINT (the parent handles it). Forked
    workers hold no copy of the store lock (``rhoprop.locks`` closes it after every fork)."""
    _WORKER["options"] = options
    reuse_freed_memory()
    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


#: glibc ``mallopt`` parameters (``malloc.h``) and the values :func:`reuse_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES, _MMAP_BYTES = 256 * 2**20, 32 * 2**20


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


def _process(task: tuple[str, str]) -> SampleRecord | ReportEntry:
    """Worker task: a record for the file, or a report entry saying why it was skipped."""
    sample_id, path = task
    try:
        opts: _Options = _WORKER["options"]
        return make_record(sample_id, Path(path), opts.settings, opts.species, opts.level)
    except Exception as exc:  # noqa: BLE001 - any failure of one input is reported, never fatal
        return ReportEntry("bad_file", sample_id, path, _reason(exc))


def _reason(exc: BaseException) -> str:
    """A one-line reason from an exception."""
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:1000]


# -- orchestration ---------------------------------------------------------------------------
#: Quantum of a new ``q16`` store when none is given (asinh units: a density error of at most 1.5 %).
DEFAULT_QUANTUM = 0.03


def _resolve_settings(
    out: Path, settings: StandardizeSettings | None, dtype: str | None, content_hash: str | None,
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
        quantum=quantum if quantum is not None else (DEFAULT_QUANTUM if dtype == "q16" else defaults.quantum),
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


def _issue_entry(issue: LabelIssue, labels_path: Path) -> ReportEntry:
    """A report entry from a label-table issue."""
    return ReportEntry(
        issue.category, issue.id, str(labels_path), issue.detail, issue.line, issue.column
    )


def _prepare_labels(
    labels: Path,
    out: Path,
    id_column: str,
    schema: Path | None,
    stored: set[str],
    max_classes: int,
) -> tuple[pd.DataFrame, pd.DataFrame, list[TargetSpec], list[ReportEntry], set[str]]:
    """Parse the label table (merged with stored samples' old labels); see :func:`build_dataset`.

    Returns the raw table (ids of the new table), the clean values of all ids, the targets,
    the report entries and the duplicate ids.
    """
    raw, issues, duplicates = read_raw_labels(labels, id_column)
    merged = raw
    if (out / "labels.csv").is_file():
        old = read_label_values(out / "labels.csv")
        keep = (
            old.index.isin(list(stored))
            & ~old.index.isin(raw.index)
            & ~old.index.isin(list(duplicates))
        )
        if keep.any():
            merged = pd.concat([raw, old.loc[keep]]).fillna("")
            merged.attrs = raw.attrs
    open_classes: set[str] = set()
    if schema is not None:
        specs: list[TargetSpec] | None = read_targets(schema)
    elif (out / "targets.json").is_file():
        # Keep kinds, units and class codes of an earlier build; new multiclass values (an append
        # may bring them) become new classes after the old ones.
        specs = [s for s in read_targets(out / "targets.json") if s.name in merged.columns]
        open_classes = {s.name for s in specs if s.kind == "multiclass"}
    else:
        specs = None
    values, targets, more = parse_labels(merged, specs, max_classes, open_classes)
    entries = [_issue_entry(i, labels) for i in issues + more]
    return raw, values, targets, entries, duplicates


def _write_labels(
    out: Path, values: pd.DataFrame, targets: list[TargetSpec], ids: Iterable[str]
) -> None:
    """Write ``labels.csv`` (rows of ``ids`` only) and ``targets.json``."""
    wanted = [i for i in values.index if i in set(ids)]
    write_targets(out / "targets.json", targets)
    write_label_values(out / "labels.csv", values.loc[wanted, [t.name for t in targets]])


def write_report(out: Path, report: BuildReport) -> None:
    """Write ``report.csv`` and ``report.json`` of a build into the store."""
    frame = pd.DataFrame(
        [dataclasses.asdict(e) for e in report.entries],
        columns=["category", "id", "path", "detail", "line", "column"],
    )
    frame["line"] = frame["line"].astype("Int64")
    atomic_write_text(out / "report.csv", frame.to_csv(index=False, lineterminator="\n"))
    data = {
        "summary": report.summary(),
        "n_files": report.n_files,
        "n_added": report.n_added,
        "n_already": report.n_already,
        "n_total": report.n_total,
        "elapsed_s": round(report.elapsed_s, 3),
        "counts": report.counts(),
        "exit_code": report.exit_code,
        "entries": [dataclasses.asdict(e) for e in report.entries],
    }
    atomic_write_text(out / "report.json", json.dumps(data, indent=2) + "\n")


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


def _run_tasks(
    tasks: list[tuple[str, str]],
    workers: int,
    options: _Options,
) -> Iterator[SampleRecord | ReportEntry]:
    """Process tasks in-process (workers == 1) or with a pool, at most 2*workers in flight."""
    if workers <= 1:
        _init_worker(options, in_pool=False)
        for task in tasks:
            yield _process(task)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork":  # workers inherit the compiled kernels instead of each loading numba
        importlib.import_module("rhoprop.grid._spline")
        importlib.import_module("rhoprop.io._kernels")
    ctx = multiprocessing.get_context(method)
    queue = list(reversed(tasks))
    crashed: list[tuple[str, str]] = []
    broken = False
    max_inflight = 2 * workers
    pool = _pool(workers, ctx, options)
    pending: dict[Future[Any], tuple[str, str]] = {}
    try:
        while queue or pending:
            while not broken and queue and len(pending) < max_inflight:
                task = queue.pop()
                try:
                    pending[pool.submit(_process, task)] = task
                except BrokenProcessPool:
                    queue.append(task)
                    broken = True
            if pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = pending.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        crashed.append(task)
                        broken = True
            if broken and not pending:
                # A worker died (killed by the system?): every task in flight failed with it.
                # Rerun each alone to tell the culprit from the bystanders, then go on.
                pool.shutdown(wait=True, cancel_futures=True)
                yield from (_isolated(t, ctx, options) for t in crashed)
                crashed, broken = [], False
                pool = _pool(workers, ctx, options)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _pool(workers: int, ctx: Any, options: _Options) -> ProcessPoolExecutor:
    """A process pool whose workers are initialized with the build options."""
    return ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(options, True)
    )


def _isolated(task: tuple[str, str], ctx: Any, options: _Options) -> SampleRecord | ReportEntry:
    """Run one task alone in a fresh process: tells the file that killed a worker from the rest."""
    with _pool(1, ctx, options) as pool:
        try:
            return pool.submit(_process, task).result()
        except BrokenProcessPool:
            return ReportEntry(
                "bad_file",
                task[0],
                task[1],
                "the reading process died on this file (killed by the system, out of memory?)",
            )


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
) -> BuildReport:
    """Build, resume or extend the store ``out`` from the density files under ``input_dir``.

    ``settings``/``dtype``/``quantum``/``content_hash`` default to the existing store's (or the
    defaults of :class:`StoreSettings` for a new store; ``dtype="q16"`` without a quantum takes
    :data:`DEFAULT_QUANTUM`) and must match an existing store's. With ``labels``,
    only files whose id is in the table are built; without, every file is. Returns a :class:`BuildReport` (also written to the store).
    The processes that read files, this one too with ``workers=1``, keep freed memory for reuse
    (:func:`reuse_freed_memory`).
    """
    t0 = time.perf_counter()
    input_dir, out = Path(input_dir), Path(out)
    if not input_dir.is_dir():
        raise DatasetError(f"input folder {input_dir} does not exist or is not a folder")
    if workers < 1:
        raise SettingsError(f"workers must be >= 1, got {workers}")
    if shard_size < 1:
        raise SettingsError(f"shard_size must be >= 1, got {shard_size}")
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
            raw, values, targets, label_entries, duplicates = _prepare_labels(
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
            _write_labels(out, values, targets, stored | {t[0] for t in tasks})
        buffer = _ShardBuffer(out, store_settings, shard_size)
        options = _Options(store_settings, species_t, compression_level)
        n_bad = 0
        try:
            with _progress(progress, len(tasks)) as advance:
                for result in _run_tasks(tasks, workers, options):
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
            _write_labels(out, values, targets, stored_now)
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
                "workers": workers,
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

    # refresh_thread=False: no refresh thread, so pool restarts never fork a multithreaded process.
    with progress(
        "building",
        total,
        enabled=enabled and total > 0,
        transient=False,
        refresh_thread=False,
        log_interval=10.0,
    ) as steps:
        yield lambda n_bad: steps.advance(description=f"building ({n_bad} skipped)")
