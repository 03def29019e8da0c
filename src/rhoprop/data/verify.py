"""Check a dataset store for damage: shard checksums, and every sample's tensor, structure and
provenance.

Shards are written atomically, so a build never leaves a half-written one; damage comes later (a
partial copy, a disk error, an edited file). :func:`verify_store` finds it without opening the store
as a whole, so that one damaged shard does not hide the state of the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from rhoprop.data.store import (
    TEXT_FIELDS,
    DatasetError,
    checksum_path,
    decode_text,
    open_shard,
    shard_paths,
)
from rhoprop.io.digest import DIGESTS, file_digest

if TYPE_CHECKING:
    from rich.console import Console

_NUMERIC_FIELDS = ("side", "has_spin", "native_shape", "electrons", "magnetization")


@dataclasses.dataclass
class ShardCheck:
    """What :func:`verify_store` found in one shard.

    Attributes:
        shard: the shard's file name.
        samples: the number of ids it lists (0 when it cannot be opened).
        checksum: ``"ok"``, ``"mismatch"`` (the file differs from the sha256 recorded when it was
            written), ``"none recorded"`` (written before rhoprop recorded checksums), or
            ``"recorded now"`` (by ``record_missing``).
        error: why the shard as a whole is unreadable, or None.
        damaged: ``(sample id, what is wrong)`` for each sample that cannot be read back whole.
    """

    shard: str
    samples: int = 0
    checksum: str = "none recorded"
    error: str | None = None
    damaged: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong with the shard."""
        return self.error is None and not self.damaged and self.checksum != "mismatch"


def _recorded(shard: Path) -> str | None:
    sidecar = checksum_path(shard)
    if not sidecar.exists():
        return None
    text = sidecar.read_text().split()
    return text[0] if text else ""


def _check_rows(f: h5py.File, check: ShardCheck, on_sample: Callable[[], None] | None) -> None:
    """Read every column and every sample of an open shard into ``check`` (``error``,
    ``damaged``)."""
    ids = [decode_text(s) for s in f["ids"][()]]
    check.samples = len(ids)
    hashes = [name for name in DIGESTS if name in f]
    if not hashes:
        check.error = f"no content hash column (one of {list(DIGESTS)})"
        return
    text_fields = (*TEXT_FIELDS, *hashes)
    columns: dict[str, np.ndarray] = {}
    for name in _NUMERIC_FIELDS + text_fields:
        try:
            columns[name] = f[name][()]
            if len(columns[name]) != len(ids):
                raise ValueError(f"{len(columns[name])} rows for {len(ids)} ids")
        except (OSError, KeyError, ValueError) as exc:
            check.error = f"column {name!r} cannot be read ({type(exc).__name__}: {exc})"
            return
    for row, sample_id in enumerate(ids):
        problems = []
        try:
            x = f["x"][row]
            if not np.all(np.isfinite(x)):
                problems.append("its tensor holds NaN or inf")
        except (OSError, ValueError) as exc:
            problems.append(f"its tensor cannot be decompressed ({exc})")
        for name in _NUMERIC_FIELDS:
            value = np.asarray(columns[name][row])
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                problems.append(f"{name} is not finite")
        for name in text_fields:
            try:
                text = decode_text(columns[name][row])
                if name == "structure":
                    json.loads(text)
            except ValueError as exc:
                problems.append(f"{name} is not valid text ({type(exc).__name__})")
        if problems:
            check.damaged.append((sample_id, "; ".join(problems)))
        if on_sample is not None:
            on_sample()


def verify_store(
    root: str | os.PathLike[str],
    record_missing: bool = False,
    on_sample: Callable[[], None] | None = None,
) -> list[ShardCheck]:
    """Check every shard of the store at ``root``; one :class:`ShardCheck` per shard, in order.

    Compares each shard with the sha256 recorded beside it, then reads every sample back. With
    ``record_missing``, a shard without a recorded checksum that reads back whole gets one.
    ``on_sample`` is called after each sample (for a progress bar).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset {root} does not exist (or is not a directory)")
    checks = []
    for shard in shard_paths(root):
        check = ShardCheck(shard.name)
        digest = file_digest(shard, "sha256")
        recorded = _recorded(shard)
        if recorded is not None:
            check.checksum = "ok" if recorded == digest else "mismatch"
        try:
            with open_shard(shard) as f:
                _check_rows(f, check, on_sample)
        except DatasetError as exc:
            check.error = f"cannot be opened as HDF5 ({exc.__cause__ or exc})"
        except (OSError, KeyError, ValueError) as exc:
            check.error = f"{type(exc).__name__}: {exc}"
        if record_missing and recorded is None and check.ok:
            tmp = shard.with_name(f".{checksum_path(shard).name}.{os.getpid()}.tmp")
            tmp.write_text(f"{digest}  {shard.name}\n")
            os.replace(tmp, checksum_path(shard))
            check.checksum = "recorded now"
        checks.append(check)
    return checks


def print_checks(checks: list[ShardCheck], console: Console) -> None:
    """Print one row per shard, then what is wrong with each damaged shard and sample, on a rich
    ``console``."""
    from rich.table import Table

    table = Table("shard", "samples", "checksum", "damaged samples", "state")
    for c in checks:
        state = "ok" if c.ok else ("unreadable" if c.error else "damaged")
        table.add_row(c.shard, str(c.samples), c.checksum, str(len(c.damaged)), state)
    console.print(table)
    for c in checks:
        if c.error:
            console.print(f"{c.shard}: {c.error}")
        if c.checksum == "mismatch":
            console.print(
                f"{c.shard}: its bytes differ from the sha256 recorded when it was written"
            )
        for sample_id, what in c.damaged:
            console.print(f"{c.shard}: sample {sample_id!r}: {what}")
    bad = [c.shard for c in checks if not c.ok]
    samples = sum(c.samples for c in checks)
    if bad:
        console.print(
            f"damaged: {', '.join(bad)} (of {len(checks)} shards). Restore them from where the "
            "store came from, or move them away and rerun the build that made the store"
        )
    else:
        console.print(f"all {len(checks)} shards and {samples} samples read back whole")
