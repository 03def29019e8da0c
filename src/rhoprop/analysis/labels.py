"""Label tables for the target analyses: from a dataset store (or built-in name) or a labels CSV.

A :class:`LabelTable` is what the similarity analysis needs and nothing more: the labels (float,
NaN = missing, classification targets as float class codes), each target's kind and unit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from rhoprop.errors import LabelTableError

KINDS = ("regression", "binary", "multiclass")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".tsv")
_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Labels of one dataset: ``labels`` indexed by material id (float, NaN = missing).

    Attributes:
        labels: one column per target; classification targets hold float class codes 0..k-1.
        kinds: target name -> ``"regression"``, ``"binary"`` or ``"multiclass"``.
        units: target name -> unit string (empty when unknown).
        classes: target name -> class names (classification targets only).
        source: where the labels came from (path or built-in name).
    """

    labels: pd.DataFrame
    kinds: dict[str, str]
    units: dict[str, str]
    classes: dict[str, tuple[str, ...]]
    source: str

    @property
    def targets(self) -> list[str]:
        """Target names in column order."""
        return list(self.labels.columns)

    def select(self, targets: list[str] | None) -> LabelTable:
        """Return the table restricted to ``targets`` (all when None); unknown names raise."""
        if not targets:
            return self
        unknown = [t for t in targets if t not in self.kinds]
        if unknown:
            raise LabelTableError(
                f"unknown target(s) {unknown} in {self.source}; available: {self.targets}"
            )
        return LabelTable(
            labels=self.labels[list(targets)],
            kinds={t: self.kinds[t] for t in targets},
            units={t: self.units.get(t, "") for t in targets},
            classes={t: self.classes[t] for t in targets if t in self.classes},
            source=self.source,
        )


def is_label_csv(source: str | Path) -> bool:
    """True when ``source`` names an existing labels CSV/TSV file (not a dataset store)."""
    path = Path(source)
    return path.is_file() and path.name.lower().endswith(_CSV_SUFFIXES)


def load_label_table(source: str | Path) -> LabelTable:
    """Load the labels of a dataset store, a built-in dataset name, or a labels CSV file.

    CSV files need an ``id`` column (else the first column is the id); target kinds are inferred:
    text columns are multiclass, columns holding only 0/1 (or true/false) are binary, other numeric
    columns are regression.
    """
    if is_label_csv(source):
        return read_label_csv(source)
    try:
        from rhoprop.data import DatasetStore
        from rhoprop.datasets import resolve
    except ImportError as exc:  # the store lands in another module; say so plainly
        raise LabelTableError(
            f"{source!r} is not a labels CSV file and the dataset store (rhoprop.data) is not "
            f"available in this installation ({exc}); pass a labels CSV path instead"
        ) from exc
    store = DatasetStore(resolve(str(source)))
    specs = store.targets
    labels = store.labels.astype(float)
    kinds = {name: spec.kind for name, spec in specs.items() if name in labels.columns}
    return LabelTable(
        labels=labels[list(kinds)],
        kinds=kinds,
        units={name: (specs[name].unit or "") for name in kinds},
        classes={
            name: tuple(str(c) for c in (specs[name].classes or ()))
            for name in kinds
            if kinds[name] != "regression"
        },
        source=str(source),
    )


def read_label_csv(path: str | Path) -> LabelTable:
    """Read a labels CSV (``id`` column + one column per target, blanks = missing) into a table."""
    path = Path(path)
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"cannot read labels file {path}: {exc}") from exc
    if raw.shape[1] < 2:
        raise LabelTableError(
            f"labels file {path} has {raw.shape[1]} column(s); expected an id column and at least "
            "one target column"
        )
    id_col = "id" if "id" in raw.columns else raw.columns[0]
    ids = raw[id_col].astype(str).str.strip()
    dup = sorted(set(ids[ids.duplicated()]))
    if dup:
        raise LabelTableError(
            f"labels file {path}: duplicate id(s) {dup[:10]} in column {id_col!r}; ids must be unique"
        )
    labels: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    classes: dict[str, tuple[str, ...]] = {}
    for col in raw.columns:
        if col == id_col:
            continue
        values, kind, names = _encode_column(raw[col])
        if kind is None:
            continue
        labels[col], kinds[col] = values, kind
        if names:
            classes[col] = names
    if not labels:
        raise LabelTableError(f"labels file {path} has no column with any value besides {id_col!r}")
    frame = pd.DataFrame(labels, index=pd.Index(ids, name="id"))
    return LabelTable(frame, kinds, {t: "" for t in kinds}, classes, str(path))


def _encode_column(column: pd.Series) -> tuple[np.ndarray, str | None, tuple[str, ...]]:
    """Encode one raw text column: (float values, kind or None when empty, class names)."""
    text = column.astype("string").str.strip()
    text = text.mask(text == "")
    present = text.dropna()
    if present.empty:
        return np.full(len(column), np.nan), None, ()
    lowered = present.str.lower()
    if lowered.isin(_TRUE | _FALSE).all():
        values = text.str.lower().map(lambda v: 1.0 if v in _TRUE else (0.0 if v in _FALSE else np.nan))
        return values.to_numpy(dtype=float, na_value=np.nan), "binary", ("false", "true")
    numeric = pd.to_numeric(present, errors="coerce")
    if numeric.notna().all():
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if set(np.unique(finite)) <= {0.0, 1.0}:
            return values, "binary", ("0", "1")
        return values, "regression", ()
    names = tuple(sorted(present.unique()))
    codes = {name: float(i) for i, name in enumerate(names)}
    values = text.map(lambda v: codes.get(v, np.nan) if isinstance(v, str) else np.nan)
    return values.to_numpy(dtype=float, na_value=np.nan), "multiclass", names
