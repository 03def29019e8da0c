"""The labels of a build: the new table merged with the stored samples' labels, then written.

A rebuild or an append keeps the labels of samples already in the store whose ids the new table
does not name, and the kinds, units and class codes of an earlier build (new multiclass values
become new classes after the old ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from rhoprop.data.labels import (
    LabelIssue,
    TargetSpec,
    parse_labels,
    read_label_values,
    read_raw_labels,
    read_targets,
    write_label_values,
    write_targets,
)
from rhoprop.data.report import ReportEntry


def issue_entry(issue: LabelIssue, labels_path: Path) -> ReportEntry:
    """A report entry from a label-table issue."""
    return ReportEntry(
        issue.category, issue.id, str(labels_path), issue.detail, issue.line, issue.column
    )


def prepare_labels(
    labels: Path,
    out: Path,
    id_column: str,
    schema: Path | None,
    stored: set[str],
    max_classes: int,
) -> tuple[pd.DataFrame, pd.DataFrame, list[TargetSpec], list[ReportEntry], set[str]]:
    """Parse the label table merged with the stored samples' old labels.

    Returns the raw table (ids of the new table), the clean values of all ids, the targets,
    the report entries and the duplicate ids.
    """
    raw, issues, duplicates = read_raw_labels(labels, id_column)
    merged = raw
    if (out / "labels.csv").is_file():
        old = read_label_values(out / "labels.csv")
        keep = (
            old.index.isin(list(stored))
            & ~old.index.isin(raw.index)
            & ~old.index.isin(list(duplicates))
        )
        if keep.any():
            merged = pd.concat([raw, old.loc[keep]]).fillna("")
            merged.attrs = raw.attrs
    open_classes: set[str] = set()
    if schema is not None:
        specs: list[TargetSpec] | None = read_targets(schema)
    elif (out / "targets.json").is_file():
        # Keep kinds, units and class codes of an earlier build; new multiclass values (an append
        # may bring them) become new classes after the old ones.
        specs = [s for s in read_targets(out / "targets.json") if s.name in merged.columns]
        open_classes = {s.name for s in specs if s.kind == "multiclass"}
    else:
        specs = None
    values, targets, more = parse_labels(merged, specs, max_classes, open_classes)
    entries = [issue_entry(i, labels) for i in issues + more]
    return raw, values, targets, entries, duplicates


def write_labels(
    out: Path, values: pd.DataFrame, targets: list[TargetSpec], ids: Iterable[str]
) -> None:
    """Write ``labels.csv`` (rows of ``ids`` only) and ``targets.json``."""
    wanted = [i for i in values.index if i in set(ids)]
    write_targets(out / "targets.json", targets)
    write_label_values(out / "labels.csv", values.loc[wanted, [t.name for t in targets]])
