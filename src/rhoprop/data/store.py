"""The dataset store: standardized densities, structures, provenance and labels in one directory.

Layout of a store directory::

    settings.json        StoreSettings: format version, storage dtype, StandardizeSettings
    shards/shard-00000.h5  append-only HDF5 shards (complete or absent: written to a temporary
    shards/shard-00001.h5  name, fsynced, then renamed)
    shards/shard-00000.h5.sha256  each shard's sha256, written just before the shard is renamed
                         into place (``rhoprop dataset verify`` checks it)
    labels.csv           id + one column per target (clean text cells, blank = missing)
    targets.json         the targets: kind regression|binary|multiclass, unit, classes
    report.csv           what the last build skipped or blanked, and why (also report.json)
    build.json           one entry per build run (inputs, options, counts)
    splits/<name>.json   train/val/test id lists made by ``rhoprop dataset split``

Each shard holds, for its samples in the same row order: ``ids``, ``x`` (N, C, n, n, n) in the
storage dtype, chunked one sample per chunk and gzip+shuffle compressed (one sample is read
without reading the others), ``side`` (N, S) float32, ``has_spin`` (N,), ``native_shape`` (N, 3),
``structure`` (pymatgen ``Structure.as_dict()`` as JSON text; never pickle), ``formula`` (reduced
formula), and the provenance ``source``, the content hash of the file's bytes (a column named
after the store's ``content_hash`` setting: ``xxh3_128`` by default; ``sha256`` in stores built with
``--content-hash sha256`` or written before the setting existed), ``fmt``, ``code``, ``electrons``
and ``magnetization``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

import rhoprop
from rhoprop.data._splitfile import read_split
from rhoprop.data.labels import TargetSpec, encode_labels, read_label_values, read_targets
from rhoprop.errors import DatasetError as DatasetError  # defined in errors; importable here too
from rhoprop.errors import SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.io.digest import DIGESTS, file_digest
from rhoprop.locks import folder_lock
from rhoprop.settings import Settings

FORMAT_VERSION = 1
DTYPES = ("float32", "float16", "q16")
#: Largest magnitude of a q16 code (int16).
Q16_MAX = 32767
SHARD_DIR = "shards"
CHECKSUM_SUFFIX = ".sha256"
SHARD_RE = re.compile(r"^shard-(\d{5,})\.h5$")
_STR = h5py.string_dtype("utf-8")
TEXT_FIELDS = ("structure", "formula", "source", "fmt", "code")
#: The content hash of stores whose settings.json predates the ``content_hash`` setting.
LEGACY_CONTENT_HASH = "sha256"
_MAX_OPEN_SHARDS = 32


@dataclasses.dataclass(frozen=True)
class StoreSettings(Settings):
    """What fixes the tensors of a store: every sample of a store shares these.

    Attributes:
        standardize: the standardization settings of every tensor.
        dtype: storage dtype of the tensors, ``"float32"``, ``"float16"`` (half the size on disk) or
            ``"q16"``: values rounded to the nearest multiple of ``quantum`` and stored as int16
            codes (absolute error at most ``quantum / 2`` in the transform's units; the rounded
            fields compress to about half of float16's size). Tensors are returned as float32.
        quantum: step of ``"q16"`` (0 for the float dtypes). With ``transform="asinh"`` a step of q
            is a relative density error of at most q/2 where ρ is well above ``scale``.
        content_hash: the hash of each source file's bytes recorded as its provenance,
            ``"xxh3_128"`` (fast) or ``"sha256"`` (checkable with ``sha256sum``); see
            :mod:`rhoprop.io.digest`.
        format_version: version of the store layout.
    """

    standardize: StandardizeSettings = dataclasses.field(default_factory=StandardizeSettings)
    dtype: str = "float32"
    quantum: float = 0.0
    content_hash: str = "xxh3_128"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise SettingsError(f"StoreSettings.dtype must be one of {DTYPES}, got {self.dtype!r}")
        quantum_ok = (
            isinstance(self.quantum, (int, float))
            and not isinstance(self.quantum, bool)
            and (self.quantum > 0 if self.dtype == "q16" else self.quantum == 0)
        )
        if not quantum_ok:
            raise SettingsError(
                f"StoreSettings.quantum must be > 0 with dtype 'q16' and 0 otherwise, got "
                f"{self.quantum!r} with dtype {self.dtype!r}"
            )
        if self.content_hash not in DIGESTS:
            raise SettingsError(
                f"StoreSettings.content_hash must be one of {DIGESTS}, got {self.content_hash!r}"
            )
        if not isinstance(self.standardize, StandardizeSettings):
            raise SettingsError("StoreSettings.standardize must be a StandardizeSettings")


@dataclasses.dataclass
class Sample:
    """One stored sample: ``x`` (C, n, n, n) float32, ``side`` (S,) float32, spin flag."""

    id: str
    x: np.ndarray
    side: np.ndarray
    has_spin: bool


@dataclasses.dataclass
class SampleRecord:
    """Everything the store keeps about one sample (what a build worker produces).

    The tensor travels as its HDF5 chunk, already shuffled and compressed
    (:func:`encode_tensor`), so that compression runs in the workers, not in the writer.
    """

    id: str
    x_chunk: bytes
    x_shape: tuple[int, ...]
    side: np.ndarray
    has_spin: bool
    native_shape: tuple[int, int, int]
    structure: str
    formula: str
    source: str
    content_hash: str
    fmt: str
    code: str
    electrons: float
    magnetization: float

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the record."""
        return int(len(self.x_chunk) + self.side.nbytes + len(self.structure))


def storage_dtype(dtype: str) -> str:
    """The numpy dtype a store's tensors are written with (``"int16"`` for the codes of
    ``"q16"``)."""
    return "int16" if dtype == "q16" else dtype


def quantize(x: np.ndarray, quantum: float) -> np.ndarray:
    """int16 codes of ``x`` rounded to multiples of ``quantum``; DatasetError when a value does not
    fit."""
    codes = np.rint(np.asarray(x, dtype=np.float64) / quantum)
    largest = float(np.abs(codes).max()) if codes.size else 0.0
    if largest > Q16_MAX:
        raise DatasetError(
            f"values up to {largest * quantum:.3g} do not fit q16 with quantum {quantum} (at most "
            f"{Q16_MAX * quantum:.3g}); use a larger quantum, float16 or float32"
        )
    return codes.astype(np.int16)


def encode_tensor(x: np.ndarray, dtype: str, level: int = 1, quantum: float = 0.0) -> bytes:
    """The HDF5 chunk of a tensor stored with the shuffle and gzip filters of a shard's ``x``
    (``dtype`` ``"q16"``: the int16 codes of :func:`quantize`).

    Byte-shuffle (byte j of every element together) then zlib (what HDF5's deflate filter writes);
    a shard reads it back with its ordinary filter pipeline. The deflate stream uses run-length
    matches only (zlib's ``Z_RLE``): on shuffled float tensors that is 2 % larger than the default
    strategy and half the time, since the sign/exponent bytes compress by runs and entropy coding.
    """
    data = quantize(x, quantum) if dtype == "q16" else np.ascontiguousarray(x, dtype=dtype)
    shuffled = data.view(np.uint8).reshape(-1, data.itemsize).T.tobytes()
    # q16 codes are small integers whose low bytes an entropy coder packs well: zlib's default
    # strategy at level 6 gives 14.0 KB per gpaw-v1 tensor (2x32^3, quantum 0.03) in 1.1 ms, where
    # run-length matches at level 1 give 29.1 KB (float16 with run-length matches: 52.9 KB, 0.9 ms).
    level, strategy = (
        (max(level, 6), zlib.Z_DEFAULT_STRATEGY) if dtype == "q16" else (level, zlib.Z_RLE)
    )
    compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
    return compressor.compress(shuffled) + compressor.flush()


def shard_paths(root: str | os.PathLike[str]) -> list[Path]:
    """The complete shards of a store, in order (temporary files are never listed)."""
    folder = Path(root) / SHARD_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := SHARD_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def checksum_path(shard: Path) -> Path:
    """Where the sha256 of ``shard`` is recorded (``shard-00000.h5.sha256`` beside it)."""
    return shard.with_name(shard.name + CHECKSUM_SUFFIX)


def open_shard(path: Path) -> h5py.File:
    """Open a complete shard read-only (on file systems without locks, e.g. some NFS mounts, set
    ``HDF5_USE_FILE_LOCKING=FALSE``); a damaged or truncated file raises DatasetError."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        size = path.stat().st_size if path.exists() else 0
        raise DatasetError(
            f"shard {path} ({size} bytes) cannot be opened as HDF5 ({exc}): it is damaged or "
            "incomplete, e.g. a partial copy. Restore it from where the store came from (`rhoprop "
            "dataset verify` lists every damaged shard), or move it away and rerun the build that "
            "made the store: the build resumes and recomputes the samples it held"
        ) from exc


def _fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(
    root: str | os.PathLike[str],
    records: Sequence[SampleRecord],
    settings: StoreSettings,
) -> Path:
    """Write ``records`` as the next shard of the store at ``root``, atomically; returns its path.

    The shard is written to a temporary name in the same folder, flushed and fsynced, then
    renamed: a reader (or a resumed build) sees the whole shard or none of it. Tensors are
    written as the records' ready-made chunks (one sample per chunk).
    """
    if not records:
        raise ValueError("write_shard needs at least one record")
    folder = Path(root) / SHARD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    existing = shard_paths(root)
    index = int(SHARD_RE.match(existing[-1].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
    final = folder / f"shard-{index:05d}.h5"
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    n = len(records)
    std = settings.standardize
    x_shape = (std.n_channels, std.n, std.n, std.n)
    for rec in records:
        if tuple(rec.x_shape) != x_shape:
            raise ValueError(
                f"sample {rec.id}: tensor shape {rec.x_shape}, store expects {x_shape}"
            )
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["dtype"] = settings.dtype
            f.attrs["rhoprop_version"] = rhoprop.__version__
            f.create_dataset("ids", data=[r.id for r in records], dtype=_STR)
            x = f.create_dataset(
                "x",
                shape=(n, *x_shape),
                dtype=storage_dtype(settings.dtype),
                chunks=(1, *x_shape),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
            if settings.dtype == "q16":
                x.attrs["quantum"] = float(settings.quantum)
            for i, rec in enumerate(records):
                x.id.write_direct_chunk((i, 0, 0, 0, 0), rec.x_chunk)
            side = np.stack([r.side.astype(np.float32) for r in records]).reshape(n, -1)
            f.create_dataset("side", data=side)
            f.create_dataset("has_spin", data=np.array([r.has_spin for r in records], dtype=bool))
            f.create_dataset(
                "native_shape", data=np.array([r.native_shape for r in records], dtype=np.int32)
            )
            f.create_dataset("electrons", data=np.array([r.electrons for r in records]))
            f.create_dataset("magnetization", data=np.array([r.magnetization for r in records]))
            for name in TEXT_FIELDS:
                f.create_dataset(name, data=[getattr(r, name) for r in records], dtype=_STR)
            f.create_dataset(
                settings.content_hash, data=[r.content_hash for r in records], dtype=_STR
            )
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = file_digest(tmp, "sha256")
        sidecar = checksum_path(final)
        sidecar_tmp = folder / f".{sidecar.name}.{os.getpid()}.tmp"
        with open(sidecar_tmp, "w") as fh:
            fh.write(f"{digest}  {final.name}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(sidecar_tmp, sidecar)
        os.rename(tmp, final)
        _fsync_dir(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for stale in folder.glob(f".{final.name}{CHECKSUM_SUFFIX}.*.tmp"):
            stale.unlink(missing_ok=True)
        raise
    return final


def remove_stale_temporaries(root: str | os.PathLike[str]) -> list[Path]:
    """Delete shard temporaries left by a killed build (call only while holding the store lock)."""
    folder = Path(root) / SHARD_DIR
    if not folder.is_dir():
        return []
    stale = [
        p for p in folder.iterdir() if p.name.startswith(".shard-") and p.name.endswith(".tmp")
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def store_lock(root: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on a store while writing to it (released even on kill -9; never kept
    by forked children, see :mod:`rhoprop.locks`); a store held by another process raises
    :class:`~rhoprop.errors.FolderLockedError`."""
    hint = (
        "another build is writing this dataset: wait for it to finish (or stop it) before "
        "building into the same store"
    )
    with folder_lock(root, hint):
        yield


def read_store_settings(root: str | os.PathLike[str]) -> StoreSettings:
    """Read a store's ``settings.json``, checking its format version."""
    path = Path(root) / "settings.json"
    if not path.is_file():
        raise DatasetError(
            f"{root} is not a rhoprop dataset (no settings.json); build one with "
            "`rhoprop dataset build INPUT_DIR --labels labels.csv --out DATASET`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"dataset {root} has store format version {version!r}; this rhoprop "
            f"{rhoprop.__version__} reads version {FORMAT_VERSION}. Rebuild the dataset or use the "
            "rhoprop version that wrote it"
        )
    data.setdefault("content_hash", LEGACY_CONTENT_HASH)
    return StoreSettings.from_dict(data)


class DatasetStore:
    """Read access to a dataset store directory.

    Only the ids and their (shard, row) offsets are held in memory; tensors are read one sample
    at a time. HDF5 handles are opened lazily and per process, so a store object can be passed to
    DataLoader workers or distributed ranks, each of which opens its own handles.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise DatasetError(f"dataset {self.path} does not exist (or is not a directory)")
        self._store_settings = read_store_settings(self.path)
        self._shards = shard_paths(self.path)
        ids: list[str] = []
        shard_of: list[np.ndarray] = []
        row_of: list[np.ndarray] = []
        for k, shard in enumerate(self._shards):
            with open_shard(shard) as f:
                try:
                    shard_ids = [decode_text(s) for s in f["ids"][()]]
                except (OSError, KeyError, ValueError) as exc:
                    raise DatasetError(
                        f"shard {shard} has no readable list of ids ({type(exc).__name__}: "
                        f"{exc}): it is damaged; restore it, or move it away and rerun the build "
                        "that made the store"
                    ) from exc
            ids.extend(shard_ids)
            shard_of.append(np.full(len(shard_ids), k, dtype=np.int32))
            row_of.append(np.arange(len(shard_ids), dtype=np.int64))
        self._ids = ids
        self._shard_of = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int32)
        self._row_of = np.concatenate(row_of) if row_of else np.zeros(0, np.int64)
        self._position = {sid: i for i, sid in enumerate(ids)}
        if len(self._position) != len(ids):
            dup = sorted({s for s in ids if ids.count(s) > 1})[:10]
            raise DatasetError(
                f"dataset {self.path} holds duplicate ids {dup}; the store is corrupt"
            )
        self._labels: pd.DataFrame | None = None
        self._targets: dict[str, TargetSpec] | None = None
        self._handles: OrderedDict[int, h5py.File] = OrderedDict()
        self._handle_pid: int | None = None

    # -- pickling: never ship open HDF5 handles to another process --------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        state["_handle_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- metadata -------------------------------------------------------------------------------
    @property
    def store_settings(self) -> StoreSettings:
        """Format version, storage dtype and standardization settings."""
        return self._store_settings

    @property
    def settings(self) -> StandardizeSettings:
        """The standardization settings every tensor of the store was made with."""
        return self._store_settings.standardize

    @property
    def ids(self) -> list[str]:
        """Sample ids in store order."""
        return list(self._ids)

    @property
    def shards(self) -> list[Path]:
        """Paths of the shard files."""
        return list(self._shards)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._position

    def index_of(self, sample_id: str) -> int:
        """Position of ``sample_id`` in :attr:`ids`."""
        try:
            return self._position[sample_id]
        except KeyError:
            raise KeyError(f"id {sample_id!r} is not in dataset {self.path}") from None

    @property
    def targets(self) -> dict[str, TargetSpec]:
        """Target name -> :class:`TargetSpec` (kind, unit, classes), in column order."""
        if self._targets is None:
            path = self.path / "targets.json"
            specs = read_targets(path) if path.is_file() else []
            self._targets = {s.name: s for s in specs}
        return dict(self._targets)

    @property
    def labels(self) -> pd.DataFrame:
        """Labels indexed by id in store order: float, NaN = missing, classes as float codes."""
        if self._labels is None:
            path = self.path / "labels.csv"
            targets = list(self.targets.values())
            if path.is_file():
                values = read_label_values(path)
            else:
                values = pd.DataFrame(index=pd.Index([], name="id"))
            encoded = encode_labels(values, targets)
            encoded = encoded[~encoded.index.duplicated()]
            self._labels = encoded.reindex(pd.Index(self._ids, name="id"))
        return self._labels.copy()

    # -- sample access --------------------------------------------------------------------------
    @property
    def handle_owner_pid(self) -> int | None:
        """Process id that opened the currently cached HDF5 handles (None when none is open)."""
        return self._handle_pid if self._handles else None

    def _file(self, shard: int) -> h5py.File:
        """The HDF5 handle of shard ``shard`` for this process (opened lazily, LRU-cached)."""
        pid = os.getpid()
        if self._handle_pid != pid:
            # Handles inherited through fork belong to the parent: drop them unclosed.
            self._handles = OrderedDict()
            self._handle_pid = pid
        handle = self._handles.get(shard)
        if handle is None:
            handle = open_shard(self._shards[shard])
            self._handles[shard] = handle
            while len(self._handles) > _MAX_OPEN_SHARDS:
                _, old = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(shard)
        return handle

    def _locate(self, key: int | str) -> tuple[int, h5py.File, int]:
        """(position, shard handle, row) of a sample given by position or id."""
        i = self.index_of(key) if isinstance(key, str) else int(key)
        if not -len(self._ids) <= i < len(self._ids):
            raise IndexError(f"sample index {i} out of range for dataset of {len(self._ids)}")
        i %= len(self._ids)
        return i, self._file(int(self._shard_of[i])), int(self._row_of[i])

    @contextlib.contextmanager
    def _reading(self, i: int, what: str) -> Iterator[None]:
        """Turn a failed read of sample ``i`` (damaged chunk or text) into a DatasetError naming
        it."""
        try:
            yield
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            if isinstance(exc, DatasetError):
                raise
            shard = self._shards[int(self._shard_of[i])]
            raise DatasetError(
                f"{what} of sample {self._ids[i]!r} (row {int(self._row_of[i])} of shard {shard}) "
                f"cannot be read ({type(exc).__name__}: {exc}): the shard is damaged; `rhoprop "
                f"dataset verify {self.path}` lists every damaged sample"
            ) from exc

    def read(self, key: int | str) -> Sample:
        """Read one sample (by position or id): tensor as float32, side features, spin flag."""
        i, f, row = self._locate(key)
        with self._reading(i, "the tensor"):
            data = f["x"]
            x = np.asarray(data[row], dtype=np.float32)
            if data.dtype == np.int16:  # q16 codes
                x *= np.float32(data.attrs["quantum"])
            return Sample(
                id=self._ids[i],
                x=x,
                side=np.asarray(f["side"][row], dtype=np.float32),
                has_spin=bool(f["has_spin"][row]),
            )

    def structure(self, key: int | str) -> Any:
        """The pymatgen ``Structure`` of a sample (by id or position)."""
        from pymatgen.core import Structure

        i, f, row = self._locate(key)
        with self._reading(i, "the structure"):
            return Structure.from_dict(json.loads(decode_text(f["structure"][row])))

    def provenance(self, key: int | str) -> dict[str, Any]:
        """Where a sample came from: source path, content hash (keyed by its algorithm, e.g.
        ``"xxh3_128"``), fmt, code, native shape, electrons."""
        i, f, row = self._locate(key)
        with self._reading(i, "the provenance"):
            return self._provenance(i, f, row)

    def _provenance(self, i: int, f: h5py.File, row: int) -> dict[str, Any]:
        return {
            "id": self._ids[i],
            "source": decode_text(f["source"][row]),
            self._store_settings.content_hash: decode_text(
                f[self._store_settings.content_hash][row]
            ),
            "fmt": decode_text(f["fmt"][row]),
            "code": decode_text(f["code"][row]),
            "formula": decode_text(f["formula"][row]),
            "native_shape": tuple(int(v) for v in f["native_shape"][row]),
            "electrons": float(f["electrons"][row]),
            "magnetization": float(f["magnetization"][row]),
        }

    def column(self, name: str) -> np.ndarray:
        """One per-sample metadata column over the whole store (``formula``, ``has_spin``...)."""
        parts = []
        for shard in self._shards:
            with open_shard(shard) as f:
                if name not in f or name == "x":
                    raise KeyError(f"no per-sample column {name!r} in dataset {self.path}")
                try:
                    data = f[name][()]
                    parts.append(
                        np.array([decode_text(v) for v in data])
                        if data.dtype.kind in "OS"
                        else data
                    )
                except (OSError, ValueError) as exc:
                    raise DatasetError(
                        f"column {name!r} of shard {shard} cannot be read "
                        f"({type(exc).__name__}: {exc}): the shard is damaged; `rhoprop dataset "
                        f"verify {self.path}` lists the damage"
                    ) from exc
        return np.concatenate(parts) if parts else np.zeros(0)

    def splits(self, name: str = "default") -> dict[str, list[str]]:
        """The train/val/test ids of split ``name`` (made by ``rhoprop dataset split``)."""
        return read_split(self, name)

    def close(self) -> None:
        """Close this process's HDF5 handles."""
        if self._handle_pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles = OrderedDict()

    def __repr__(self) -> str:
        return f"DatasetStore({str(self.path)!r}, samples={len(self)}, shards={len(self._shards)})"


def decode_text(value: Any) -> str:
    """Decode an HDF5 string cell (UTF-8 bytes or str)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
