"""Label tables of a dataset: parsing ``labels.csv``, inferring each target's kind, the schema.

A labels table is a CSV file with an id column (``id`` unless told otherwise) and any number of
property columns; blank cells are missing labels. Each property column becomes a target:

* a numeric column is ``regression``, except one holding only 0/1 values, which is ``binary``;
* a column holding only true/false (or yes/no) is ``binary`` with classes ``("false", "true")``;
* a text column with 2 to ``max_classes`` distinct values is ``multiclass`` (``binary`` for two
  values) with its classes in sorted order, coded 0..K-1;
* a text column with more distinct values (a formula, a comment) or with a single value is not a
  target and is reported as ignored.

A cell that does not parse in a numeric column (or is not one of the classes of a schema's
classification target) is reported and treated as missing. A schema (``targets.json``, the same
format the store writes) fixes kinds, units and class orders for the columns it lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rhoprop.errors import LabelTableError, SettingsError
from rhoprop.settings import Settings, atomic_write_text

KINDS = ("regression", "binary", "multiclass")
TARGETS_FORMAT_VERSION = 1
#: Regression targets known by name (the labels of ``rhoprop generate``): (unit, physical minimum).
#: A target of that name gets them when its label table or schema leaves them out. ``c12`` and
#: ``c44`` stay unbounded: they are negative for mechanically unstable crystals.
KNOWN_TARGETS: dict[str, tuple[str, float | None]] = {
    "volume_per_atom": ("Å^3/atom", 0.0),
    "bulk_modulus": ("GPa", 0.0),
    "density": ("g/cm^3", 0.0),
    "total_energy": ("eV/atom", None),
    "formation_energy": ("eV/atom", None),
    "fermi_energy": ("eV", None),
    "band_gap": ("eV", 0.0),
    "bandwidth": ("eV", 0.0),
    "magnetic_moment": ("μB/atom", 0.0),
    "c11": ("GPa", 0.0),
    "c12": ("GPa", None),
    "c44": ("GPa", None),
}
#: Physical upper bounds of known regression targets (a target named here gets its maximum when
#: ``maximum`` is None): the lowest phonon frequency is capped at 0 by definition (0 = stable).
KNOWN_MAXIMA: dict[str, float] = {"min_frequency": 0.0}
#: Regression targets that sit exactly at their minimum where a binary target is true (its class
#: 1): a metal has no band gap. :func:`consistent_predictions` makes a model's outputs agree with
#: this wherever it predicts both targets. Measured on the gpaw-v1 folds (docs/model.md), a
#: network's raw gap head gave metals a mean 0.29 eV of gap.
ZERO_WHEN: dict[str, str] = {"band_gap": "is_metal"}
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "none", "null"})
_TRUE = frozenset({"true", "yes"})
_FALSE = frozenset({"false", "no"})


@dataclasses.dataclass(frozen=True)
class TargetSpec(Settings):
    """One target (a property column): its kind, unit and, for classification, class names.

    Attributes:
        name: the column name in ``labels.csv``.
        kind: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        unit: physical unit (``"eV"``, ``"eV/atom"``, ``"GPa"``...), empty when unknown.
        classes: class names in code order (binary and multiclass); code i is ``classes[i]``.
        minimum: physical lower bound of a regression target (0 for a band gap, a volume, a
            magnetic moment magnitude), or None. A label below it is a bad value; predictions and
            their intervals are clipped to it.
        maximum: physical upper bound likewise (0 for ``min_frequency``, the lowest phonon
            frequency capped at 0), or None.

    A regression target named in :data:`KNOWN_TARGETS` gets its unit when ``unit`` is empty and
    its minimum when ``minimum`` is None (so also the targets of models saved before), and one in
    :data:`KNOWN_MAXIMA` its maximum likewise.
    """

    name: str
    kind: str = "regression"
    unit: str = ""
    classes: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SettingsError(f"TargetSpec.name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise SettingsError(
                f"target {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}"
            )
        if isinstance(self.classes, (str, bytes)) or not all(
            isinstance(c, (str, int)) and not isinstance(c, bool) for c in self.classes
        ):
            raise SettingsError(
                f'target {self.name!r}: classes must be a list of class names (e.g. ["metal", '
                f'"non-metal"]), got {self.classes!r}'
            )
        classes = tuple(str(c) for c in self.classes)
        object.__setattr__(self, "classes", classes)
        if len(set(classes)) != len(classes):
            raise SettingsError(f"target {self.name!r}: duplicate class names in {classes}")
        if self.kind == "regression" and classes:
            raise SettingsError(f"target {self.name!r}: a regression target has no classes")
        if self.kind == "regression" and self.name in KNOWN_TARGETS:
            unit, minimum = KNOWN_TARGETS[self.name]
            object.__setattr__(self, "unit", self.unit or unit)
            object.__setattr__(self, "minimum", minimum if self.minimum is None else self.minimum)
        if self.kind == "regression" and self.maximum is None and self.name in KNOWN_MAXIMA:
            object.__setattr__(self, "maximum", KNOWN_MAXIMA[self.name])
        if self.kind == "binary" and classes and len(classes) != 2:
            raise SettingsError(
                f"target {self.name!r}: a binary target has exactly 2 classes, got {classes}"
            )
        for bound in ("minimum", "maximum"):
            number = getattr(self, bound)
            if number is None:
                continue
            if self.kind != "regression":
                raise SettingsError(f"target {self.name!r}: only a regression target has a {bound}")
            if (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or not math.isfinite(number)
            ):
                raise SettingsError(
                    f"target {self.name!r}: {bound} must be a finite number, got {number!r}"
                )
            object.__setattr__(self, bound, float(number))
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SettingsError(
                f"target {self.name!r}: minimum {self.minimum:g} is above maximum {self.maximum:g}"
            )

    @property
    def is_regression(self) -> bool:
        """True for a regression target."""
        return self.kind == "regression"

    def clip(self, values: np.ndarray) -> np.ndarray:
        """``values`` raised to the target's :attr:`minimum` and lowered to its :attr:`maximum`
        (unchanged without them)."""
        values = np.asarray(values, dtype=float)
        if self.minimum is not None:
            values = np.maximum(values, self.minimum)
        if self.maximum is not None:
            values = np.minimum(values, self.maximum)
        return values

    def admits(self, number: float) -> bool:
        """Whether ``number`` is a valid label: finite and within the target's bounds."""
        return (
            math.isfinite(number)
            and (self.minimum is None or number >= self.minimum)
            and (self.maximum is None or number <= self.maximum)
        )


def gated_samples(
    tasks: Sequence[TargetSpec], preds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """For each regression target of :data:`ZERO_WHEN` whose binary gate is also predicted: the
    samples whose predicted probability of the gate's class 1 exceeds 0.5 (a predicted metal)."""
    by_name = {t.name: t for t in tasks}
    out = {}
    for name, gate in ZERO_WHEN.items():
        task, gate_task = by_name.get(name), by_name.get(gate)
        if (
            task is None or gate_task is None or not task.is_regression
            or gate_task.kind != "binary" or task.minimum is None
            or name not in preds or gate not in preds
        ):  # fmt: skip
            continue
        out[name] = np.asarray(preds[gate], dtype=float) > 0.5
    return out


def consistent_predictions(
    tasks: Sequence[TargetSpec], preds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Point predictions as rhoprop reports them: every regression target raised to its physical
    minimum, and each :data:`ZERO_WHEN` target set to that minimum where its gate is predicted
    true (no band gap for a predicted metal). Binary and multiclass outputs are unchanged. One
    rule for ``predict``, ``evaluate`` and ``benchmark``, applied to every model alike."""
    by_name = {t.name: t for t in tasks}
    out = dict(preds)
    for name, values in preds.items():
        task = by_name.get(name)
        if task is not None and task.is_regression:
            out[name] = task.clip(values)
    for name, mask in gated_samples(tasks, preds).items():
        minimum = by_name[name].minimum
        assert minimum is not None  # gated_samples keeps only targets with a minimum
        out[name] = np.where(mask, minimum, out[name])
    return out


@dataclasses.dataclass(frozen=True)
class LabelIssue:
    """One problem found in a label table: a dropped row, a blanked cell or an ignored column."""

    category: str
    id: str
    detail: str
    line: int | None = None
    column: str = ""


@dataclasses.dataclass
class ParsedLabels:
    """A label table after validation.

    Attributes:
        values: clean text cells indexed by id (one column per target, ``""`` = missing); class
            cells hold the canonical class name, numeric cells the number as written.
        targets: the targets in column order.
        issues: rows dropped (duplicate or blank ids), cells blanked, columns ignored.
        duplicate_ids: ids that appeared in more than one row (all their rows were dropped).
    """

    values: pd.DataFrame
    targets: list[TargetSpec]
    issues: list[LabelIssue]
    duplicate_ids: set[str]


def read_raw_labels(
    path: str | os.PathLike[str], id_column: str = "id"
) -> tuple[pd.DataFrame, list[LabelIssue], set[str]]:
    """Read ``labels.csv`` as text, drop rows with a blank or duplicate id, and report them.

    Returns the table indexed by id (text cells, ``""`` = blank), the issues, and the set of
    duplicate ids. A missing file or id column raises :class:`LabelTableError` (the table as a
    whole is unusable); row-level problems never raise.
    """
    path = Path(path)
    sep = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as exc:
        raise LabelTableError(
            f"labels file {path} does not exist; pass an existing CSV file"
        ) from exc
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"cannot read labels file {path}: {exc}") from exc
    header = [
        str(c).strip()
        for c in pd.read_csv(
            path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False
        ).iloc[0]
    ]
    raw.columns = [str(c).strip() for c in raw.columns]
    if id_column not in raw.columns:
        other = next(
            (
                name
                for sym, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars"))
                if len(raw.columns) == 1 and sym in raw.columns[0]
            ),
            None,
        )
        hint = (
            (
                f"; its header line is separated by {other}: rhoprop reads comma-separated files "
                "(tab-separated when named .tsv)"
            )
            if other
            else ""
        )
        raise LabelTableError(
            f"labels file {path} has no id column {id_column!r}; its columns are "
            f"{list(raw.columns)}. Name the id column 'id' or pass --id-column NAME{hint}"
        )
    if len(set(header)) != len(header):
        dup = sorted({c for c in header if header.count(c) > 1})
        where = {c: [i + 1 for i, h in enumerate(header) if h == c] for c in dup}
        raise LabelTableError(
            f"labels file {path} has duplicate column names {dup} (columns {where} of its header); "
            "which column holds the labels is ambiguous: rename or remove one"
        )
    raw = raw.fillna("")
    ids = raw[id_column].str.strip()
    lines = np.arange(len(raw)) + 2  # line 1 is the header
    issues: list[LabelIssue] = []
    blank = ids == ""
    for line in lines[blank.to_numpy()]:
        issues.append(LabelIssue("blank_id", "", f"row without an id in {path.name}", int(line)))
    counts = ids[~blank].value_counts()
    duplicates = set(counts.index[counts > 1])
    for dup_id in sorted(duplicates):
        on_lines = [int(x) for x in lines[(ids == dup_id).to_numpy()]]
        issues.append(
            LabelIssue(
                "duplicate_id",
                dup_id,
                f"id appears on lines {on_lines} of {path.name}; all its rows and its file are "
                "skipped "
                "(which row is right is ambiguous): keep one row",
                on_lines[0],
            )
        )
    keep = (~blank & ~ids.isin(duplicates)).to_numpy()
    table = raw.loc[keep].drop(columns=[id_column]).map(lambda v: v.strip())
    table.index = pd.Index(ids[keep], name="id")
    table.attrs["lines"] = dict(zip(table.index, (int(x) for x in lines[keep]), strict=True))
    return table, issues, duplicates


def parse_labels(
    table: pd.DataFrame,
    schema: Sequence[TargetSpec] | None = None,
    max_classes: int = 20,
    open_classes: Collection[str] = (),
) -> tuple[pd.DataFrame, list[TargetSpec], list[LabelIssue]]:
    """Infer (or take from ``schema``) each column's kind, and clean its cells.

    ``table`` holds text cells indexed by id (as from :func:`read_raw_labels`). Returns the clean
    text table (targets only; bad cells blanked), the targets, and the issues. Multiclass targets
    named in ``open_classes`` take new values as new classes (appended, so existing codes stay);
    for the others a value outside the schema's classes is a bad value.
    """
    lines: dict[str, int] = table.attrs.get("lines", {})
    by_name = {spec.name: spec for spec in (schema or ())}
    missing_cols = [name for name in by_name if name not in table.columns]
    if missing_cols:
        raise LabelTableError(
            f"the schema lists target(s) {missing_cols} that the labels table lacks; its columns "
            f"are {list(table.columns)}"
        )
    issues: list[LabelIssue] = []
    columns: dict[str, pd.Series] = {}
    targets: list[TargetSpec] = []
    for col in table.columns:
        cells = table[col].astype(str).str.strip()
        cells = cells.where(~cells.str.lower().isin(MISSING_TOKENS), "")
        spec = by_name.get(col) or _infer_spec(col, cells, max_classes)
        if isinstance(spec, str):
            issues.append(LabelIssue("ignored_column", "", spec, None, col))
            continue
        if spec.kind == "binary" and not spec.classes:
            spec = dataclasses.replace(spec, classes=("0", "1"))
        if spec.kind == "multiclass" and spec.classes and col in open_classes:
            lowered = {c.lower() for c in spec.classes}
            new = sorted({c for c in cells if c and c.lower() not in lowered})
            spec = dataclasses.replace(spec, classes=spec.classes + tuple(new))
        clean, bad = _clean_cells(spec, cells)
        if spec.kind != "regression" and not spec.classes:
            spec = dataclasses.replace(spec, classes=_default_classes(clean))
        for idx, value in bad:
            issues.append(
                LabelIssue(
                    "bad_value",
                    idx,
                    f"column {col!r}: {value!r} is not {_expected(spec)}; treated as missing",
                    lines.get(idx),
                    col,
                )
            )
        columns[col] = clean
        targets.append(spec)
    values = pd.DataFrame(columns, index=table.index)
    return values, targets, issues


def _infer_spec(name: str, cells: pd.Series, max_classes: int) -> TargetSpec | str:
    """Infer a column's target spec from its non-blank cells, or say why it is not a target."""
    present = cells[cells != ""]
    if present.empty:
        return f"column {name!r} has no values"
    lowered = present.str.lower()
    if lowered.isin(_TRUE | _FALSE).all():
        return TargetSpec(name, "binary", "", ("false", "true"))
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().sum() * 2 > len(present):
        finite = numbers[np.isfinite(numbers)]
        if name in KNOWN_TARGETS:  # a moment that is 0 everywhere is still a number, not a class
            return TargetSpec(name, "regression")
        if len(finite) and set(np.unique(finite)) <= {0.0, 1.0}:
            return TargetSpec(name, "binary", "", ("0", "1"))
        return TargetSpec(name, "regression")
    distinct = sorted(present.unique())
    if len(distinct) < 2:
        return f"column {name!r} holds a single value {distinct[0]!r}; not a target"
    if len(distinct) > max_classes:
        return (
            f"column {name!r} is text with {len(distinct)} distinct values (more than "
            f"{max_classes} classes); not a target. List it in a schema to force a kind"
        )
    kind = "binary" if len(distinct) == 2 else "multiclass"
    return TargetSpec(name, kind, "", tuple(distinct))


def _canonical_class(spec: TargetSpec, cell: str) -> str | None:
    """The class name ``cell`` denotes for a classification target, or None if none."""
    classes = spec.classes
    if cell in classes or (spec.kind == "multiclass" and not classes):
        return cell
    lowered = cell.lower()
    for name in classes:
        if name.lower() == lowered:
            return name
    truth = 1 if lowered in _TRUE else 0 if lowered in _FALSE else None
    if truth is None:
        try:
            number = float(cell)
        except ValueError:
            number = math.nan
        truth = int(number) if number in (0.0, 1.0) else None
    if truth is not None and len(classes) == 2:
        for candidate in (("false", "true")[truth], str(truth)):
            if candidate in classes:
                return candidate
    return None


def _clean_cells(spec: TargetSpec, cells: pd.Series) -> tuple[pd.Series, list[tuple[str, str]]]:
    """Canonicalize a column's cells for ``spec``; returns the clean cells and the bad ones."""
    out = cells.copy()
    bad: list[tuple[str, str]] = []
    for idx, cell in cells.items():
        if cell == "":
            continue
        if spec.kind == "regression":
            try:
                number = float(cell)
            except ValueError:
                number = math.nan
            clean = cell if spec.admits(number) else None
        else:
            clean = _canonical_class(spec, cell)
        if clean is None:
            bad.append((str(idx), cell))
            out[idx] = ""
        else:
            out[idx] = clean
    return out, bad


def _default_classes(cells: pd.Series) -> tuple[str, ...]:
    """Sorted distinct non-blank cells (the class order when a schema gives none)."""
    return tuple(sorted(set(cells[cells != ""])))


def _expected(spec: TargetSpec) -> str:
    """Words for what a cell of ``spec`` should be, for messages."""
    if spec.kind == "regression":
        bounds = [f">= {spec.minimum:g}"] if spec.minimum is not None else []
        bounds += [f"<= {spec.maximum:g}"] if spec.maximum is not None else []
        return " and ".join(["a finite number", *bounds]) if bounds else "a finite number"
    return f"one of the classes {list(spec.classes)}" if spec.classes else "0/1 or true/false"


def encode_labels(values: pd.DataFrame, targets: Iterable[TargetSpec]) -> pd.DataFrame:
    """Turn clean text cells into floats: numbers (regression), class codes, NaN for blanks."""
    out: dict[str, np.ndarray] = {}
    for spec in targets:
        if spec.name not in values.columns:
            out[spec.name] = np.full(len(values), np.nan)
            continue
        cells = values[spec.name].fillna("").astype(str)
        if spec.kind == "regression":
            out[spec.name] = pd.to_numeric(cells.where(cells != ""), errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
        else:
            codes = {name: float(i) for i, name in enumerate(spec.classes)}
            out[spec.name] = np.array([codes.get(c, np.nan) for c in cells], dtype=float)
    return pd.DataFrame(out, index=values.index)


def write_targets(path: str | os.PathLike[str], targets: Sequence[TargetSpec]) -> None:
    """Write the targets schema (``targets.json``) atomically."""
    data = {
        "format_version": TARGETS_FORMAT_VERSION,
        "targets": [spec.to_dict() for spec in targets],
    }
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_targets(path: str | os.PathLike[str]) -> list[TargetSpec]:
    """Read a targets schema written by :func:`write_targets` (or by hand, same format)."""
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelTableError(f"cannot read the targets schema {path}: {exc}") from exc
    example = (
        '{"format_version": 1, "targets": '
        '[{"name": "band_gap", "kind": "regression", "unit": "eV"}]}'
    )
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        raise LabelTableError(f"targets schema {path} must look like {example}")
    version = data.get("format_version", TARGETS_FORMAT_VERSION)
    if version != TARGETS_FORMAT_VERSION:
        raise LabelTableError(
            f"targets schema {path} has format_version {version}; this rhoprop reads "
            f"{TARGETS_FORMAT_VERSION}"
        )
    try:
        specs = [TargetSpec.from_dict(item) for item in data["targets"]]
    except (SettingsError, TypeError) as exc:
        raise LabelTableError(
            f"targets schema {path}: {exc}; expected entries like {example}"
        ) from exc
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise LabelTableError(f"targets schema {path} lists a target twice: {names}")
    return specs


def write_label_values(path: str | os.PathLike[str], values: pd.DataFrame) -> None:
    """Write clean label cells as ``labels.csv`` (``id`` first, blanks for missing), atomically."""
    frame = values.copy()
    frame.index.name = "id"
    atomic_write_text(path, frame.to_csv(lineterminator="\n"))


def read_label_values(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a store's ``labels.csv`` as clean text cells indexed by id (``""`` = missing)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.set_index("id")
