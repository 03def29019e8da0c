"""Reproducible train/val/test splits of a dataset store, saved as ``splits/<name>.json``.

``random`` shuffles the ids (sorted first, so the result depends only on the id set and the seed);
``composition`` shuffles the distinct reduced formulas and assigns whole formula groups to the
split furthest below its target fraction, so that one formula never sits in two splits.

A store that grew after its split was made (``rhoprop dataset build`` appending) keeps every
earlier assignment; the new ids are assigned by the split's own rule and seed (:func:`extend_split`):
a new id whose formula already sits in a part joins it (composition), the others go, shuffled,
to the part furthest below its fraction of the grown total. Reading such a split warns
(:class:`SplitWarning`); ``rhoprop dataset split`` with the same settings saves the extension.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Mapping, Sequence
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
    out: dict[str, list[str]] = {part: [] for part in PARTS}
    _assign_groups(ids, groups, fractions, seed, out, len(ids))
    return {part: sorted(v) for part, v in out.items()}


def _assign_groups(
    ids: Sequence[str],
    groups: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    out: dict[str, list[str]],
    total: int,
) -> None:
    """Add whole groups of ``ids``, shuffled with ``seed``, to the part of ``out`` furthest below its
    target (``fractions`` of ``total``), counting what ``out`` already holds."""
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
    _assign_groups(rest, groups, settings.fractions, settings.seed, out, len(assigned) + len(new))
    return {part: sorted(v) for part, v in out.items()}


def _formulas(store: DatasetStore, method: str) -> dict[str, str] | None:
    """id -> reduced formula of every sample (composition splits only; None otherwise)."""
    if method != "composition":
        return None
    return {sid: str(f) for sid, f in zip(store.ids, store.column("formula"), strict=True)}


def _growth(old: Mapping[str, Sequence[str]], new: Mapping[str, Sequence[str]]) -> str:
    """``"train +a, val +b, test +c"``: how many ids each part gained."""
    return ", ".join(f"{part} +{len(new[part]) - len(old[part])}" for part in PARTS)


def _empty_parts(parts: Mapping[str, Sequence[str]], settings: SplitSettings | None) -> list[str]:
    """Parts that are empty although their fraction is not 0."""
    fractions = settings.fractions if settings is not None else (1.0, 1.0, 1.0)
    return [part for part, f in zip(PARTS, fractions, strict=True) if f > 0 and not parts[part]]


def make_split(
    store: DatasetStore,
    method: str = "random",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    name: str = "default",
    overwrite: bool = False,
    allow_empty: bool = False,
) -> dict[str, list[str]]:
    """Make a split of every sample of ``store`` and save it as ``splits/<name>.json``.

    Rerunning with the same arguments on the same ids gives the same split; after samples were
    added it extends the saved split to them (:func:`extend_split`, a :class:`SplitWarning` says
    how). An existing split of that name made differently (or over ids no longer stored) is only
    replaced when ``overwrite`` is set. A part left empty although its fraction is not 0 (too few
    samples or formulas) is refused unless ``allow_empty`` (then it warns).
    """
    _check_name(name)
    settings = SplitSettings(method=method, fractions=tuple(fractions), seed=seed)
    ids = store.ids
    path = store.path / "splits" / f"{name}.json"
    old = _load(path) if path.is_file() and not overwrite else None
    old_parts = {p: [str(i) for i in old[p]] for p in PARTS} if old is not None else None
    extended = None
    if old_parts is not None and old.get("settings") == settings.to_dict() and all(  # type: ignore[union-attr]
        i in store for p in PARTS for i in old_parts[p]
    ):
        parts = extend_split(old_parts, settings, ids, _formulas(store, method))
        extended = parts if parts != {p: sorted(v) for p, v in old_parts.items()} else None
    elif method == "random":
        parts = random_split(ids, settings.fractions, seed)
    else:
        parts = group_split(ids, list(store.column("formula")), settings.fractions, seed)
    if old_parts is not None and extended is None and old_parts != parts:
        raise SettingsError(
            f"split {name!r} already exists in {store.path} and differs (other settings or "
            "other samples); pass --overwrite to replace it or choose another --name"
        )
    empty = _empty_parts(parts, settings)
    if empty and not allow_empty:
        raise SettingsError(
            f"split {name!r} of {store.path} would leave the {' and '.join(empty)} part empty "
            f"({len(ids)} samples, {len(set(store.column('formula')))} formulas, {method} split, "
            f"fractions {list(settings.fractions)}): nothing could be evaluated there. Add samples, "
            "use --method random or other --fractions, or pass --allow-empty to keep it anyway"
        )
    data: dict[str, Any] = {"name": name, "settings": settings.to_dict(), **parts}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    if extended is not None and old_parts is not None:
        warnings.warn(
            SplitWarning(
                f"split {name!r} of {store.path} extended to {len(ids) - _count(old_parts)} new "
                f"sample(s) added since it was made ({_growth(old_parts, parts)}); earlier "
                "assignments kept (--overwrite makes a new split instead)"
            ),
            stacklevel=2,
        )
    if empty:
        warnings.warn(
            SplitWarning(f"split {name!r} of {store.path} has an empty {' and '.join(empty)} part"),
            stacklevel=2,
        )
    return parts


def _count(parts: Mapping[str, Sequence[str]]) -> int:
    return sum(len(parts[p]) for p in PARTS)


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
    """The train/val/test ids of split ``name`` of ``store`` (ids no longer stored raise).

    Samples added to the store after the split was made are assigned by the split's own rule
    (:func:`extend_split`, nothing is written) and a :class:`SplitWarning` says so; a part that is
    empty although its fraction is not 0 also warns.
    """
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
    try:
        settings: SplitSettings | None = SplitSettings.from_dict(data["settings"])
    except (KeyError, TypeError, SettingsError):
        settings = None
    added = len(store) - _count(parts)
    if added:
        if settings is None:
            raise SettingsError(
                f"split {name!r} of {store.path} lacks {added} sample(s) added since it was made and "
                "records no valid settings to assign them by; remake it with --overwrite"
            )
        grown = extend_split(parts, settings, store.ids, _formulas(store, settings.method))
        warnings.warn(
            SplitWarning(
                f"split {name!r} of {store.path} was made before {added} new sample(s) were added: "
                f"they are assigned by its rule ({settings.method}, seed {settings.seed}): "
                f"{_growth(parts, grown)}; earlier assignments kept. `rhoprop dataset split` with "
                "the same settings saves this"
            ),
            stacklevel=2,
        )
        parts = grown
    empty = _empty_parts(parts, settings)
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


def parse_fractions(text: str) -> tuple[float, ...]:
    """Parse ``"0.8,0.1,0.1"`` into fractions (checked by :class:`SplitSettings`)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise SettingsError(
            f"--fractions must be three comma-separated numbers like 0.8,0.1,0.1, got {text!r}"
        ) from exc
    return SplitSettings(fractions=values).fractions
