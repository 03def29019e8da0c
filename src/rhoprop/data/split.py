"""Reproducible train/val/test splits of a dataset store, saved as ``splits/<name>.json``.

``random`` shuffles the ids (sorted first, so the result depends only on the id set and the seed);
``composition`` shuffles the distinct reduced formulas and assigns whole formula groups to the
split furthest below its target fraction, so that one formula never sits in two splits.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rhoprop.errors import SettingsError
from rhoprop.settings import Settings, atomic_write_text

if TYPE_CHECKING:
    from rhoprop.data.store import DatasetStore

METHODS = ("random", "composition")
PARTS = ("train", "val", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class SplitSettings(Settings):
    """How a split was made: method, fractions (train, val, test) and seed."""

    method: str = "random"
    fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingsError(f"split method must be one of {METHODS}, got {self.method!r}")
        fractions = tuple(float(f) for f in self.fractions)
        object.__setattr__(self, "fractions", fractions)
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise SettingsError(
                f"split fractions must be three non-negative numbers (train, val, test) summing to "
                f"1, e.g. 0.8,0.1,0.1; got {list(fractions)}"
            )


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise SettingsError(
            f"split name {name!r} must start with a letter or digit and use only letters, digits, "
            "'_', '-' and '.'"
        )


def _sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer part sizes summing to ``n`` (largest remainders)."""
    raw = np.asarray(fractions) * n
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes), kind="stable")[: n - int(sizes.sum())]:
        sizes[i] += 1
    return [int(s) for s in sizes]


def random_split(ids: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Shuffle the sorted ids with ``seed`` and cut them by ``fractions``."""
    order = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(order))
    sizes = _sizes(len(order), fractions)
    out, start = {}, 0
    for part, size in zip(PARTS, sizes, strict=True):
        out[part] = sorted(order[i] for i in perm[start : start + size])
        start += size
    return out


def group_split(
    ids: Sequence[str], groups: Sequence[str], fractions: Sequence[float], seed: int
) -> dict[str, list[str]]:
    """Assign whole groups (e.g. reduced formulas) to train/val/test, close to ``fractions``."""
    members: dict[str, list[str]] = {}
    for sid, group in zip(ids, groups, strict=True):
        members.setdefault(group, []).append(sid)
    names = sorted(members)
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    target = np.asarray(fractions, dtype=float) * len(ids)
    counts = np.zeros(3)
    out: dict[str, list[str]] = {part: [] for part in PARTS}
    for group in order:
        size = len(members[group])
        # The part whose deficit (target - count) is largest relative to its target gets the group.
        deficit = np.where(target > 0, (target - counts) / np.maximum(target, 1e-12), -np.inf)
        k = int(np.argmax(deficit))
        out[PARTS[k]].extend(members[group])
        counts[k] += size
    return {part: sorted(v) for part, v in out.items()}


def make_split(
    store: DatasetStore,
    method: str = "random",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    name: str = "default",
    overwrite: bool = False,
) -> dict[str, list[str]]:
    """Make a split of every sample of ``store`` and save it as ``splits/<name>.json``.

    Rerunning with the same arguments on the same ids gives the same split. An existing split of
    that name made differently (or over other ids) is only replaced when ``overwrite`` is set.
    """
    _check_name(name)
    settings = SplitSettings(method=method, fractions=tuple(fractions), seed=seed)
    ids = store.ids
    if method == "random":
        parts = random_split(ids, settings.fractions, seed)
    else:
        parts = group_split(ids, list(store.column("formula")), settings.fractions, seed)
    path = store.path / "splits" / f"{name}.json"
    if path.is_file() and not overwrite:
        old = _load(path)
        if old.get("settings") != settings.to_dict() or {p: old.get(p) for p in PARTS} != parts:
            raise SettingsError(
                f"split {name!r} already exists in {store.path} and differs (other settings or "
                "other samples); pass --overwrite to replace it or choose another --name"
            )
    data: dict[str, Any] = {"name": name, "settings": settings.to_dict(), **parts}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return parts


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"cannot read split file {path}: {exc}") from exc
    if not isinstance(data, dict) or any(not isinstance(data.get(p), list) for p in PARTS):
        raise SettingsError(f"split file {path} must hold lists 'train', 'val' and 'test'")
    return data


def available_splits(store: DatasetStore) -> list[str]:
    """Names of the splits saved in a store."""
    folder = store.path / "splits"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def read_split(store: DatasetStore, name: str = "default") -> dict[str, list[str]]:
    """The train/val/test ids of split ``name`` of ``store`` (ids no longer stored raise)."""
    _check_name(name)
    path = store.path / "splits" / f"{name}.json"
    if not path.is_file():
        have = available_splits(store)
        raise SettingsError(
            f"dataset {store.path} has no split {name!r} (has: {have or 'none'}); make one with "
            f"`rhoprop dataset split {store.path} --name {name}`"
        )
    data = _load(path)
    parts = {p: [str(i) for i in data[p]] for p in PARTS}
    unknown = [i for p in PARTS for i in parts[p] if i not in store]
    if unknown:
        raise SettingsError(
            f"split {name!r} of {store.path} names {len(unknown)} id(s) not in the store "
            f"(e.g. {unknown[:5]}); remake it with --overwrite"
        )
    return parts


def parse_fractions(text: str) -> tuple[float, ...]:
    """Parse ``"0.8,0.1,0.1"`` into fractions (checked by :class:`SplitSettings`)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise SettingsError(
            f"--fractions must be three comma-separated numbers like 0.8,0.1,0.1, got {text!r}"
        ) from exc
    return SplitSettings(fractions=values).fractions
