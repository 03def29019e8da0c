"""Label tables for the target analyses: from a dataset store (or built-in name) or a labels CSV.

A :class:`LabelTable` is what the similarity analysis needs and nothing more: the labels (float,
NaN = missing, classification targets as float class codes), each target's kind and unit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from rhoprop.errors import LabelTableError

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".tsv", ".tsv.gz")


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Labels of one dataset: ``labels`` indexed by material id (float, NaN = missing).

    Attributes:
        labels: one column per target; classification targets hold float class codes 0..k-1.
        kinds: target name -> ``"regression"``, ``"binary"`` or ``"multiclass"``.
        units: target name -> unit string (empty when unknown).
        classes: target name -> class names (classification targets only).
        source: where the labels came from (path or built-in name).
        notes: problems found while reading (dropped rows, blanked cells, ignored columns).
    """

    labels: pd.DataFrame
    kinds: dict[str, str]
    units: dict[str, str]
    classes: dict[str, tuple[str, ...]]
    source: str
    notes: tuple[str, ...] = ()

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
            notes=self.notes,
        )


def is_label_csv(source: str | Path) -> bool:
    """True when ``source`` names an existing labels CSV/TSV file (not a dataset store)."""
    path = Path(source)
    return path.is_file() and path.name.lower().endswith(_CSV_SUFFIXES)


def load_label_table(source: str | Path) -> LabelTable:
    """Load the labels of a dataset store, a built-in dataset name, or a labels CSV file.

    CSV files are read as by ``rhoprop dataset build`` (an ``id`` column; kinds inferred: numeric
    columns are regression, 0/1 or true/false columns binary, text columns with few values
    multiclass).
    """
    if is_label_csv(source):
        return read_label_csv(source)
    from rhoprop.data.composite import open_dataset

    store = open_dataset(source)
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


def read_label_csv(path: str | Path, id_column: str = "id") -> LabelTable:
    """Read a labels CSV the way ``rhoprop dataset build`` does (same kinds, classes, checks).

    A ``targets.json`` beside the CSV (as ``rhoprop generate`` writes) fixes kinds, units and class
    order of the columns it lists, like ``rhoprop dataset build --schema``.

    Rows with a blank or duplicate id and cells that do not parse are dropped or blanked and
    listed in :attr:`LabelTable.notes`.
    """
    from rhoprop.data.labels import encode_labels, parse_labels, read_raw_labels, read_targets

    raw, issues, _ = read_raw_labels(path, id_column=id_column)
    schema_path = Path(path).parent / "targets.json"
    schema = read_targets(schema_path) if schema_path.is_file() else None
    if schema is not None:
        schema = [spec for spec in schema if spec.name in raw.columns]
    values, specs, more = parse_labels(raw, schema)
    if not specs:
        raise LabelTableError(
            f"labels file {path} has no target column with values besides {id_column!r}"
        )
    labels = encode_labels(values, specs)
    return LabelTable(
        labels=labels,
        kinds={s.name: s.kind for s in specs},
        units={s.name: s.unit for s in specs},
        classes={s.name: tuple(s.classes) for s in specs if s.kind != "regression"},
        source=str(path),
        notes=tuple(i.detail for i in [*issues, *more]),
    )
