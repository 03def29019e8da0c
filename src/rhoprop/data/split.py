"""Reproducible train/val/test splits of a dataset store, saved as ``splits/<name>.json``.

``random`` shuffles the ids (sorted first, so the result depends only on the id set and the seed);
``composition`` shuffles the distinct reduced formulas and assigns whole formula groups to the
split furthest below its target fraction, so that one formula never sits in two splits.

A store that grew after its split was made (``rhoprop dataset build`` appending) keeps every
earlier assignment; the new ids are assigned by the split's own rule and seed
(:func:`extend_split`): a new id whose formula already sits in a part joins it (composition), the
others go, shuffled, to the part furthest below its fraction of the grown total. Reading such a
split warns (:class:`SplitWarning`); ``rhoprop dataset split`` with the same settings saves the
extension.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from rhoprop.data._splitfile import (
    METHODS,
    PARTS,
    SplitSettings,
    SplitWarning,
    assign_groups,
    available_splits,
    check_name,
    count_ids,
    empty_parts,
    extend_split,
    formulas_of,
    growth,
    load_split_file,
    read_split,
)
from rhoprop.data.store import DatasetStore
from rhoprop.errors import SettingsError
from rhoprop.settings import atomic_write_text

__all__ = [
    "METHODS",
    "PARTS",
    "SplitSettings",
    "SplitWarning",
    "available_splits",
    "extend_split",
    "group_split",
    "make_split",
    "parse_fractions",
    "random_split",
    "read_split",
]


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
    assign_groups(ids, groups, fractions, seed, out, len(ids))
    return {part: sorted(v) for part, v in out.items()}


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
    check_name(name)
    settings = SplitSettings(method=method, fractions=tuple(fractions), seed=seed)
    ids = store.ids
    path = store.path / "splits" / f"{name}.json"
    old = load_split_file(path) if path.is_file() and not overwrite else None
    old_parts = {p: [str(i) for i in old[p]] for p in PARTS} if old is not None else None
    extended = None
    same_rule = old is not None and old.get("settings") == settings.to_dict()
    if old_parts is not None and same_rule and all(i in store for p in PARTS for i in old_parts[p]):
        parts = extend_split(old_parts, settings, ids, formulas_of(store, method))
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
    empty = empty_parts(parts, settings)
    if empty and not allow_empty:
        raise SettingsError(
            f"split {name!r} of {store.path} would leave the {' and '.join(empty)} part empty "
            f"({len(ids)} samples, {len(set(store.column('formula')))} formulas, {method} split, "
            f"fractions {list(settings.fractions)}): nothing could be evaluated there. Add "
            "samples, use --method random or other --fractions, or pass --allow-empty to keep it "
            "anyway"
        )
    data: dict[str, Any] = {"name": name, "settings": settings.to_dict(), **parts}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    if extended is not None and old_parts is not None:
        warnings.warn(
            SplitWarning(
                f"split {name!r} of {store.path} extended to {len(ids) - count_ids(old_parts)} new "
                f"sample(s) added since it was made ({growth(old_parts, parts)}); earlier "
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


def parse_fractions(text: str) -> tuple[float, ...]:
    """Parse ``"0.8,0.1,0.1"`` into fractions (checked by :class:`SplitSettings`)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise SettingsError(
            f"--fractions must be three comma-separated numbers like 0.8,0.1,0.1, got {text!r}"
        ) from exc
    return SplitSettings(fractions=values).fractions
