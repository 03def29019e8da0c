"""The datasheet of a dataset store: what is in it, counted (nothing written here).

:func:`datasheet_counts` counts the materials of a store (total, spin-polarized, magnetic), per
prototype, space group, number of elements and element, per class of every classification target,
and the label coverage of every target, into a :class:`DatasheetSummary`;
:mod:`rhoprop.analysis.datasheet_report` renders it (``counts.md``, ``counts.json``, two figures,
a terminal summary).

Prototypes come from, in this order: the ``prototype`` column of a ``materials.csv`` given by the
caller (as ``rhoprop generate`` writes); else the id suffix after the last ``-`` when *every* id is
``<formula>-<prototype>`` with the formula part matching the composition of the stored structure
(``Si-diamond``, ``NiTiSn-half_heusler``); else none, and the materials are grouped by space group
only (spglib through pymatgen), which the datasheet always lists too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rhoprop
from rhoprop.data.labels import TargetSpec
from rhoprop.data.store import DatasetStore
from rhoprop.datasets import BUILTIN_ROOT
from rhoprop.errors import DatasetError, LabelTableError, SettingsError
from rhoprop.settings import Settings

FORMAT_VERSION = 1
#: The label counted against :attr:`DatasheetSettings.magnetic_threshold`.
MAGNETIC_TARGET = "magnetic_moment"
PROTOTYPE_FROM_CSV = "materials.csv"
PROTOTYPE_FROM_IDS = "id suffix"
NOT_IN_CSV = "(not in materials.csv)"
_ARITY_NAMES = ("unary", "binary", "ternary", "quaternary", "quinary")


@dataclasses.dataclass(frozen=True)
class DatasheetSettings(Settings):
    """Thresholds of the datasheet (saved in ``counts.json``).

    Attributes:
        magnetic_threshold: a material counts as magnetic when ``|magnetic_moment|`` exceeds this
            (in the target's unit, μB/atom for the built-in datasets).
        symprec: spglib distance tolerance in Å for the space groups (0.01, as the GPAW labels).
        element_columns: (element, count) column pairs of the per-element markdown table.
    """

    magnetic_threshold: float = 0.05
    symprec: float = 0.01
    element_columns: int = 4

    def __post_init__(self) -> None:
        if not (isinstance(self.magnetic_threshold, int | float) and self.magnetic_threshold >= 0):
            raise SettingsError(
                "DatasheetSettings.magnetic_threshold must be a number >= 0, "
                f"got {self.magnetic_threshold!r}"
            )
        if not (isinstance(self.symprec, int | float) and self.symprec > 0):
            raise SettingsError(
                f"DatasheetSettings.symprec must be a number > 0, got {self.symprec!r}"
            )
        if not (isinstance(self.element_columns, int) and self.element_columns >= 1):
            raise SettingsError(
                "DatasheetSettings.element_columns must be an integer >= 1, "
                f"got {self.element_columns!r}"
            )


@dataclasses.dataclass(frozen=True)
class DatasheetSummary:
    """The numbers of a datasheet (what ``counts.json`` holds) and the files written.

    Attributes:
        dataset: path of the store.
        name: the built-in dataset name (``gpaw-v1``) or the store folder's name.
        builtin: whether the store is a built-in dataset.
        n_materials: number of samples in the store.
        n_formulas: distinct reduced formulas.
        n_spin_polarized: samples whose stored density carries spin (the store's ``has_spin``).
        n_magnetic: samples with ``|magnetic_moment|`` above the threshold (None: no such target).
        prototype_source: where prototypes came from (``"materials.csv"``, ``"id suffix"``) or None.
        prototypes: prototype -> number of materials (empty when ``prototype_source`` is None).
        space_groups: one dict per space group (symbol, number, crystal_system, n), most common
            first.
        n_elements: ``"unary"``, ``"binary"``... -> number of materials with that many elements.
        elements: element symbol -> number of materials containing it, most common first.
        classes: classification target -> class name -> number of materials (labelled ones only).
        coverage: target -> kind, unit, n labelled, percent, then classes (classification) or
            min/median/max (regression).
        settings: the thresholds used.
        files: the files written (by :func:`~rhoprop.analysis.datasheet_report.write_datasheet`,
            in its ``FILES`` order; empty until then).
    """

    dataset: str
    name: str
    builtin: bool
    n_materials: int
    n_formulas: int
    n_spin_polarized: int
    n_magnetic: int | None
    prototype_source: str | None
    prototypes: dict[str, int]
    space_groups: list[dict[str, Any]]
    n_elements: dict[str, int]
    elements: dict[str, int]
    classes: dict[str, dict[str, int]]
    coverage: dict[str, dict[str, Any]]
    settings: DatasheetSettings
    files: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON types (what ``counts.json`` holds, less the file list)."""
        return {
            "format_version": FORMAT_VERSION,
            "rhoprop_version": rhoprop.__version__,
            "dataset": self.dataset,
            "name": self.name,
            "builtin": self.builtin,
            "settings": self.settings.to_dict(),
            "n_materials": self.n_materials,
            "n_formulas": self.n_formulas,
            "n_spin_polarized": self.n_spin_polarized,
            "n_magnetic": self.n_magnetic,
            "prototype_source": self.prototype_source,
            "prototypes": dict(self.prototypes),
            "space_groups": [dict(g) for g in self.space_groups],
            "n_elements": dict(self.n_elements),
            "elements": dict(self.elements),
            "classes": {t: dict(c) for t, c in self.classes.items()},
            "coverage": {t: dict(c) for t, c in self.coverage.items()},
        }


def prototypes_from_ids(ids: Sequence[str], compositions: Sequence[Any]) -> dict[str, str] | None:
    """Id -> prototype when every id is ``<formula>-<prototype>`` matching its structure, else None.

    ``compositions`` are the pymatgen ``Composition`` of each id's structure (same order); the
    formula part matches when its reduced composition equals the structure's (``NiTiSn`` matches
    a TiNiSn structure).
    """
    from pymatgen.core import Composition

    if not ids:
        return None
    found: dict[str, str] = {}
    for sample_id, composition in zip(ids, compositions, strict=True):
        head, sep, tail = sample_id.rpartition("-")
        if not (sep and head and tail):
            return None
        try:
            formula = Composition(head)
        except (ValueError, KeyError):
            return None
        if formula.reduced_composition != composition.reduced_composition:
            return None
        found[sample_id] = tail
    return found


def prototypes_from_csv(path: str | os.PathLike[str], ids: Sequence[str]) -> dict[str, str]:
    """Id -> prototype from a ``materials.csv`` (columns ``id`` and ``prototype``, as written by
    ``rhoprop generate``); ids missing from it, or with a blank prototype, map to
    :data:`NOT_IN_CSV`."""
    path = Path(path)
    if not path.is_file():
        raise LabelTableError(
            f"materials file {path} does not exist; pass the materials.csv of `rhoprop generate`"
        )
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise LabelTableError(f"cannot read materials file {path} as CSV: {exc}") from exc
    missing = [c for c in ("id", "prototype") if c not in frame.columns]
    if missing:
        raise LabelTableError(
            f"materials file {path} has no column {' or '.join(repr(c) for c in missing)}; "
            f"expected columns 'id' and 'prototype' (found {list(frame.columns)})"
        )
    table = {
        str(i).strip(): str(p).strip()
        for i, p in zip(frame["id"], frame["prototype"], strict=True)
        if str(i).strip() and str(p).strip()
    }
    return {sample_id: table.get(sample_id, NOT_IN_CSV) for sample_id in ids}


def _count_desc(counter: Counter[str], order: dict[str, int] | None = None) -> dict[str, int]:
    """Counter as a dict, most common first, ties by ``order`` (e.g. atomic number) then name."""
    rank = order or {}
    return {
        k: v for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], rank.get(kv[0], 0), kv[0]))
    }


def _stat(values: np.ndarray, fn: Any) -> float | None:
    return float(fn(values)) if len(values) else None


def space_group_counts(structures: Sequence[Any], symprec: float = 0.01) -> list[dict[str, Any]]:
    """Materials per space group (symbol, number, crystal_system, n), most common first (spglib
    through pymatgen with distance tolerance ``symprec`` Å)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    groups: Counter[tuple[str, int, str]] = Counter()
    for structure in structures:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        key = (sga.get_space_group_symbol(), sga.get_space_group_number(), sga.get_crystal_system())
        groups[key] += 1
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1], -kv[0][1]))
    return [
        {"symbol": sym, "number": int(num), "crystal_system": system, "n": count}
        for (sym, num, system), count in ordered
    ]


def element_counts(compositions: Sequence[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """(element -> materials containing it, most common first then by atomic number;
    ``"unary"``/``"binary"``/... -> materials with that many elements) of pymatgen compositions."""
    element_sets = [c.elements for c in compositions]
    z_of = {e.symbol: e.Z for els in element_sets for e in els}
    elements = _count_desc(Counter(e.symbol for els in element_sets for e in els), z_of)
    arity = Counter(len(els) for els in element_sets)
    n_elements = {
        (_ARITY_NAMES[k - 1] if k <= len(_ARITY_NAMES) else f"{k} elements"): arity[k]
        for k in sorted(arity)
    }
    return elements, n_elements


def labelled_values(labels: pd.DataFrame, name: str) -> np.ndarray:
    """The labelled (finite) values of target ``name`` (empty when the column is absent)."""
    values = labels[name].to_numpy(dtype=float) if name in labels else np.zeros(0)
    return values[np.isfinite(values)]


def label_counts(
    labels: pd.DataFrame, specs: dict[str, TargetSpec]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, Any]]]:
    """(classification target -> class -> labelled materials; target -> coverage) of a store's
    labels (float codes, NaN = missing) and targets; coverage holds kind, unit, n, percent, then
    classes (classification) or min/median/max (regression)."""
    total = len(labels)
    classes: dict[str, dict[str, int]] = {}
    coverage: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        have = labelled_values(labels, name)
        entry: dict[str, Any] = {
            "kind": spec.kind,
            "unit": spec.unit,
            "n": len(have),
            "percent": round(100.0 * len(have) / total, 1) if total else 0.0,
        }
        if spec.kind == "regression":
            entry.update(
                min=_stat(have, np.min), median=_stat(have, np.median), max=_stat(have, np.max)
            )
        else:
            codes = Counter(int(v) for v in have)
            classes[name] = {c: codes.get(k, 0) for k, c in enumerate(spec.classes)}
            entry["classes"] = list(spec.classes)
        coverage[name] = entry
    return classes, coverage


def datasheet_counts(
    store: DatasetStore,
    materials_csv: str | os.PathLike[str] | None = None,
    settings: DatasheetSettings | None = None,
) -> DatasheetSummary:
    """Count what ``store`` holds (see :class:`DatasheetSummary`) without writing anything.

    Raises :class:`~rhoprop.data.DatasetError` for a store without samples.
    """
    from pymatgen.core import Structure

    settings = settings or DatasheetSettings()
    n = len(store)
    if n == 0:
        raise DatasetError(
            f"dataset {store.path} holds no materials, so it has no datasheet; build into it with "
            "`rhoprop dataset build INPUT_DIR --out DATASET`"
        )
    ids = store.ids
    structures = [Structure.from_dict(json.loads(str(text))) for text in store.column("structure")]
    compositions = [s.composition for s in structures]
    if materials_csv is not None:
        prototype_of: dict[str, str] | None = prototypes_from_csv(materials_csv, ids)
        source: str | None = PROTOTYPE_FROM_CSV
    else:
        prototype_of = prototypes_from_ids(ids, compositions)
        source = PROTOTYPE_FROM_IDS if prototype_of is not None else None
    elements, n_elements = element_counts(compositions)
    labels = store.labels
    specs = store.targets
    classes, coverage = label_counts(labels, specs)
    n_magnetic = None
    if MAGNETIC_TARGET in specs:
        moments = labelled_values(labels, MAGNETIC_TARGET)
        n_magnetic = int(np.sum(np.abs(moments) > settings.magnetic_threshold))
    return DatasheetSummary(
        dataset=str(store.path),
        name=store.path.name,
        builtin=store.path.resolve().parent == BUILTIN_ROOT.resolve(),
        n_materials=n,
        n_formulas=len({c.reduced_formula for c in compositions}),
        n_spin_polarized=int(np.sum(store.column("has_spin"))),
        n_magnetic=n_magnetic,
        prototype_source=source,
        prototypes=_count_desc(Counter(prototype_of.values())) if prototype_of else {},
        space_groups=space_group_counts(structures, settings.symprec),
        n_elements=n_elements,
        elements=elements,
        classes=classes,
        coverage=coverage,
        settings=settings,
    )
