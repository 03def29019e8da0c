"""Split files ``splits/<name>.json`` of a dataset store: their settings, reading them, and
extending them to samples added after they were made.

This module sits below :mod:`rhoprop.data.store` (whose ``DatasetStore.splits`` reads through it)
and knows a store only through :class:`SplitSource`; making splits is
:mod:`rhoprop.data.split`, which imports both.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rhoprop.errors import SettingsError
from rhoprop.settings import Settings


class SplitSource(Protocol):
    """What reading a split needs of a store (a :class:`~rhoprop.data.store.DatasetStore`)."""

    path: Path

    @property
    def ids(self) -> list[str]:
        """Sample ids in store order."""
        ...

    def __contains__(self, sample_id: object) -> bool: ...

    def __len__(self) -> int: ...

    def column(self, name: str) -> np.ndarray:
        """One per-sample metadata column over the whole store."""
        ...


METHODS = ("random", "composition")
PARTS = ("train", "val", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SplitWarning(UserWarning):
    """A split was extended to samples added after it was made, or has an empty part."""


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


def check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise SettingsError(
            f"split name {name!r} must start with a letter or digit and use only letters, digits, "
            "'_', '-' and '.'"
        )


def assign_groups(
    ids: Sequence[str],
    groups: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    out: dict[str, list[str]],
    total: int,
) -> None:
    """Add whole groups of ``ids``, shuffled with ``seed``, to the part of ``out`` furthest below
    its target (``fractions`` of ``total``), counting what ``out`` already holds."""
    members: dict[str, list[str]] = {}
    for sid, group in zip(ids, groups, strict=True):
        members.setdefault(group, []).append(sid)
    names = sorted(members)
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    target = np.asarray(fractions, dtype=float) * total
    counts = np.array([len(out[part]) for part in PARTS], dtype=float)
    for group in order:
        size = len(members[group])
        # The part whose deficit (target - count) is largest relative to its target gets the group.
        deficit = np.where(target > 0, (target - counts) / np.maximum(target, 1e-12), -np.inf)
        k = int(np.argmax(deficit))
        out[PARTS[k]].extend(members[group])
        counts[k] += size


def extend_split(
    parts: Mapping[str, Sequence[str]],
    settings: SplitSettings,
    ids: Sequence[str],
    formulas: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """``parts`` with the ``ids`` they lack assigned by the split's rule; earlier assignments kept.

    With method ``composition`` (``formulas``: id -> reduced formula, needed then), a new id whose
    formula already sits in a part joins that part; the remaining new ids (whole formula groups for
    composition, one by one for random) are shuffled with the split's seed and each goes to the
    part furthest below its fraction of the grown total. The result depends only on ``parts``,
    the settings and the set of new ids.
    """
    out = {part: list(parts[part]) for part in PARTS}
    assigned = {i for part in PARTS for i in out[part]}
    new = sorted(set(ids) - assigned)
    if not new:
        return {part: sorted(v) for part, v in out.items()}
    if settings.method == "composition":
        if formulas is None:
            raise SettingsError("extending a composition split needs the formulas of the new ids")
        part_of = {formulas[i]: part for part in PARTS for i in out[part] if i in formulas}
        rest = []
        for sid in new:
            if formulas[sid] in part_of:
                out[part_of[formulas[sid]]].append(sid)
            else:
                rest.append(sid)
        groups = [formulas[i] for i in rest]
    else:
        rest, groups = new, new
    assign_groups(rest, groups, settings.fractions, settings.seed, out, len(assigned) + len(new))
    return {part: sorted(v) for part, v in out.items()}


def formulas_of(store: SplitSource, method: str) -> dict[str, str] | None:
    """id -> reduced formula of every sample (composition splits only; None otherwise)."""
    if method != "composition":
        return None
    return {sid: str(f) for sid, f in zip(store.ids, store.column("formula"), strict=True)}


def growth(old: Mapping[str, Sequence[str]], new: Mapping[str, Sequence[str]]) -> str:
    """``"train +a, val +b, test +c"``: how many ids each part gained."""
    return ", ".join(f"{part} +{len(new[part]) - len(old[part])}" for part in PARTS)


def empty_parts(parts: Mapping[str, Sequence[str]], settings: SplitSettings | None) -> list[str]:
    """Parts that are empty although their fraction is not 0."""
    fractions = settings.fractions if settings is not None else (1.0, 1.0, 1.0)
    return [part for part, f in zip(PARTS, fractions, strict=True) if f > 0 and not parts[part]]


def count_ids(parts: Mapping[str, Sequence[str]]) -> int:
    return sum(len(parts[p]) for p in PARTS)


def load_split_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"cannot read split file {path}: {exc}") from exc
    if not isinstance(data, dict) or any(not isinstance(data.get(p), list) for p in PARTS):
        raise SettingsError(f"split file {path} must hold lists 'train', 'val' and 'test'")
    return data


def available_splits(store: SplitSource) -> list[str]:
    """Names of the splits saved in a store."""
    folder = store.path / "splits"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def read_split(store: SplitSource, name: str = "default") -> dict[str, list[str]]:
    """The train/val/test ids of split ``name`` of ``store`` (ids no longer stored raise).

    Samples added to the store after the split was made are assigned by the split's own rule
    (:func:`extend_split`, nothing is written) and a :class:`SplitWarning` says so; a part that is
    empty although its fraction is not 0 also warns.
    """
    check_name(name)
    path = store.path / "splits" / f"{name}.json"
    if not path.is_file():
        have = available_splits(store)
        raise SettingsError(
            f"dataset {store.path} has no split {name!r} (has: {have or 'none'}); make one with "
            f"`rhoprop dataset split {store.path} --name {name}`"
        )
    data = load_split_file(path)
    parts = {p: [str(i) for i in data[p]] for p in PARTS}
    unknown = [i for p in PARTS for i in parts[p] if i not in store]
    if unknown:
        raise SettingsError(
            f"split {name!r} of {store.path} names {len(unknown)} id(s) not in the store "
            f"(e.g. {unknown[:5]}); remake it with --overwrite"
        )
    try:
        settings: SplitSettings | None = SplitSettings.from_dict(data["settings"])
    except (KeyError, TypeError, SettingsError):
        settings = None
    added = len(store) - count_ids(parts)
    if added:
        if settings is None:
            raise SettingsError(
                f"split {name!r} of {store.path} lacks {added} sample(s) added since it was made "
                "and records no valid settings to assign them by; remake it with --overwrite"
            )
        grown = extend_split(parts, settings, store.ids, formulas_of(store, settings.method))
        warnings.warn(
            SplitWarning(
                f"split {name!r} of {store.path} was made before {added} new sample(s) were added: "
                f"they are assigned by its rule ({settings.method}, seed {settings.seed}): "
                f"{growth(parts, grown)}; earlier assignments kept. `rhoprop dataset split` with "
                "the same settings saves this"
            ),
            stacklevel=2,
        )
        parts = grown
    empty = empty_parts(parts, settings)
    if empty:
        warnings.warn(
            SplitWarning(
                f"split {name!r} of {store.path} has an empty {' and '.join(empty)} part: a model "
                "trained on it cannot be evaluated there; remake it with `rhoprop dataset split "
                "--overwrite` (other fractions or method)"
            ),
            stacklevel=2,
        )
    return parts
