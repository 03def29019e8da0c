"""The datasheet of a dataset store: what is in it, as markdown tables, JSON and two figures.

:func:`write_datasheet` counts the materials of a store (total, spin-polarized, magnetic), per
prototype, space group, number of elements and element, per class of every classification target,
and the label coverage of every target, then writes ``counts.md``, ``counts.json``,
``label_distributions.png`` and ``elements.png``.

Prototypes come from, in this order: the ``prototype`` column of a ``materials.csv`` given by the
caller (as ``rhoprop generate`` writes); else the id suffix after the last ``-`` when *every* id is
``<formula>-<prototype>`` with the formula part matching the composition of the stored structure
(``Si-diamond``, ``NiTiSn-half_heusler``); else none, and the materials are grouped by space group
only (spglib through pymatgen), which the datasheet always lists too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

import rhoprop
from rhoprop.analysis.figures import save_figure
from rhoprop.data.labels import TargetSpec
from rhoprop.data.store import DatasetError, DatasetStore
from rhoprop.datasets import BUILTIN_ROOT
from rhoprop.errors import LabelTableError, RhopropError, SettingsError
from rhoprop.settings import Settings, atomic_write_text

FORMAT_VERSION = 1
#: Files written by :func:`write_datasheet`, in the order they are listed.
FILES = ("counts.md", "counts.json", "label_distributions.png", "elements.png")
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
        files: the files written, in :data:`FILES` order.
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


def _cell(value: Any) -> str:
    """A markdown table cell: pipes escaped, newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool]
) -> list[str]:
    """A GitHub markdown table (right-aligned columns where ``right``)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _materials(n: int) -> str:
    """``"1 material"``, ``"55 materials"``."""
    return f"{n} material" if n == 1 else f"{n} materials"


def _pct(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}" if total else "0.0"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def counts_markdown(summary: DatasheetSummary) -> str:
    """The datasheet's counts as markdown tables ready to paste into the documentation."""
    n = summary.n_materials
    s = summary.settings
    what = (
        f"built-in dataset `{summary.name}`" if summary.builtin else f"dataset `{summary.dataset}`"
    )
    out = [f"# Datasheet: {summary.name}", ""]
    out.append(
        f"Counts of the {what}, written by rhoprop {rhoprop.__version__} "
        "(`rhoprop analyze datasheet`)."
    )
    out += ["", "## Overview", ""]
    rows: list[list[Any]] = [
        ["materials", n],
        ["distinct formulas", summary.n_formulas],
        ["elements", len(summary.elements)],
        ["spin-polarized densities (stored with a spin channel)", summary.n_spin_polarized],
    ]
    if summary.n_magnetic is not None:
        unit = summary.coverage.get(MAGNETIC_TARGET, {}).get("unit", "")
        limit = f"{s.magnetic_threshold:g} {unit}".strip()
        rows.append([f"magnetic (|{MAGNETIC_TARGET}| > {limit})", summary.n_magnetic])
    out += _table(["", "materials"], rows, [False, True])

    out += ["", "## Materials per prototype", ""]
    if summary.prototype_source == PROTOTYPE_FROM_CSV:
        out += ["Prototype from the `prototype` column of materials.csv.", ""]
    elif summary.prototype_source == PROTOTYPE_FROM_IDS:
        out += ["Prototype = the id after its last `-` (every id is `<formula>-<prototype>`).", ""]
    if summary.prototypes:
        out += _table(
            ["prototype", "materials", "%"],
            [[p, c, _pct(c, n)] for p, c in summary.prototypes.items()],
            [False, True, True],
        )
    else:
        out.append(
            "No prototypes: the ids are not all `<formula>-<prototype>` and no materials.csv was "
            "given; see the space groups below."
        )

    out += [
        "",
        "## Materials per space group",
        "",
        f"spglib through pymatgen, symprec {s.symprec:g} Å.",
        "",
    ]
    out += _table(
        ["space group", "number", "crystal system", "materials"],
        [[g["symbol"], g["number"], g["crystal_system"], g["n"]] for g in summary.space_groups],
        [False, True, False, True],
    )

    out += ["", "## Materials per number of elements", ""]
    out += _table(
        ["elements", "materials"], [[k, v] for k, v in summary.n_elements.items()], [False, True]
    )

    out += [
        "",
        "## Materials per element",
        "",
        "Number of materials containing each element, most common first.",
        "",
    ]
    items = list(summary.elements.items())
    k = min(s.element_columns, max(len(items), 1))
    depth = math.ceil(len(items) / k) if items else 0
    grid = []
    for r in range(depth):
        row: list[Any] = []
        for c in range(k):
            idx = c * depth + r
            row += list(items[idx]) if idx < len(items) else ["", ""]
        grid.append(row)
    out += _table(["element", "materials"] * k, grid, [False, True] * k)

    out += ["", "## Classes of the classification targets", ""]
    if summary.classes:
        for name, counts in summary.classes.items():
            labelled = summary.coverage[name]["n"]
            out += [f"### {name}", ""]
            rows = [[c, v, _pct(v, labelled)] for c, v in counts.items()]
            rows.append(["unlabelled", n - labelled, ""])
            out += _table(["class", "materials", "% of labelled"], rows, [False, True, True])
            out.append("")
        out.pop()
    else:
        out.append("No classification targets.")

    out += ["", "## Label coverage", ""]
    if summary.coverage:
        out += _table(
            ["target", "kind", "unit", "labelled", "%", "min", "median", "max"],
            [
                [t, c["kind"], c["unit"], c["n"], f"{c['percent']:.1f}", _num(c.get("min")),
                 _num(c.get("median")), _num(c.get("max"))]
                for t, c in summary.coverage.items()
            ],
            [False, False, False, True, True, True, True, True],
        )  # fmt: skip
    else:
        out.append("No labels.")
    return "\n".join(out) + "\n"


def plot_label_distributions(
    labels: pd.DataFrame, summary: DatasheetSummary, path: str | os.PathLike[str], ncols: int = 4
) -> None:
    """Grid of one panel per target: a histogram (regression, unit on the x axis) or bars per class
    (classification), with the number of labels in each title."""
    names = list(summary.coverage)
    panels = max(len(names), 1)
    ncols = min(ncols, panels)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.7 * nrows))
    if not names:
        ax = fig.add_subplot()
        ax.text(
            0.5, 0.5, "no labels in this dataset", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_axis_off()
    for k, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        info = summary.coverage[name]
        values = labelled_values(labels, name)
        ax.set_title(f"{name} (n={info['n']})", fontsize=9)
        if info["kind"] == "regression":
            if len(values):
                edges = np.histogram_bin_edges(values, bins="auto")
                ax.hist(
                    values,
                    bins=edges if len(edges) <= 41 else 40,
                    color="tab:blue",
                    edgecolor="white",
                    lw=0.5,
                )
            else:
                ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(info["unit"] or "(no unit)", fontsize=8)
        else:
            counts = summary.classes[name]
            bars = ax.bar(range(len(counts)), list(counts.values()), color="tab:orange")
            ax.bar_label(bars, fontsize=7)
            many = len(counts) > 3
            ax.set_xticks(range(len(counts)), list(counts), rotation=45 if many else 0,
                          ha="right" if many else "center", fontsize=7)  # fmt: skip
            ax.margins(y=0.15)
        ax.set_ylabel("materials", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"Label distributions: {summary.name} ({_materials(summary.n_materials)})", fontsize=11
    )
    fig.tight_layout()
    save_figure(fig, path)


def _table_position(z: int) -> tuple[float, int]:
    """(row, column), 0-based, of element ``z`` in an 18-column periodic table; the lanthanides and
    actinides sit in two rows below, after a half-row gap."""
    from pymatgen.core import Element

    if 57 <= z <= 71:
        return 7.5, 2 + z - 57
    if 89 <= z <= 103:
        return 8.5, 2 + z - 89
    element = Element.from_Z(z)
    return float(element.row - 1), int(element.group - 1)


def plot_elements(summary: DatasheetSummary, path: str | os.PathLike[str]) -> None:
    """Periodic-table heatmap of the number of materials containing each element (counts shown)."""
    from pymatgen.core import Element

    counts = summary.elements
    top = max(counts.values(), default=1)
    cmap = colormaps["viridis"]
    norm = Normalize(vmin=0, vmax=top)
    fig = Figure(figsize=(12.0, 6.8))
    ax = fig.add_subplot()
    for z in range(1, 119):
        symbol = Element.from_Z(z).symbol
        row, col = _table_position(z)
        count = counts.get(symbol, 0)
        face = cmap(norm(count)) if count else (0.96, 0.96, 0.96, 1.0)
        ax.add_patch(Rectangle((col, row), 0.94, 0.94, facecolor=face, edgecolor="0.7", lw=0.5))
        dark = count and norm(count) < 0.6
        color = "white" if dark else ("black" if count else "0.6")
        ax.text(col + 0.47, row + 0.36, symbol, ha="center", va="center", fontsize=9, color=color,
                fontweight="bold" if count else "normal")  # fmt: skip
        if count:
            ax.text(
                col + 0.47,
                row + 0.72,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color=color,
            )
    ax.set_xlim(-0.1, 18.0)
    ax.set_ylim(9.6, -0.1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.025, pad=0.01, label="materials"
    )
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    ax.set_title(
        f"Materials per element: {summary.name} ({_materials(summary.n_materials)}, "
        f"{len(counts)} elements)",
        fontsize=11,
    )
    save_figure(fig, path)


def write_datasheet(
    store: DatasetStore,
    out_dir: str | os.PathLike[str],
    materials_csv: str | os.PathLike[str] | None = None,
    settings: DatasheetSettings | None = None,
) -> DatasheetSummary:
    """Write the datasheet of ``store`` into ``out_dir`` (``counts.md``, ``counts.json``,
    ``label_distributions.png``, ``elements.png``) and return its numbers with the files written."""
    summary = datasheet_counts(store, materials_csv=materials_csv, settings=settings)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RhopropError(
            f"datasheet output {out} exists and is not a folder; give a folder (--out DIR)"
        )
    out.mkdir(parents=True, exist_ok=True)
    files = tuple(out / name for name in FILES)
    atomic_write_text(files[0], counts_markdown(summary))
    atomic_write_text(
        files[1],
        json.dumps(summary.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n",
    )
    plot_label_distributions(store.labels, summary, files[2])
    plot_elements(summary, files[3])
    return dataclasses.replace(summary, files=files)


def print_datasheet(summary: DatasheetSummary, console: Any) -> None:
    """Print a short rich summary of a datasheet and the files written."""
    from rich.markup import escape

    magnetic = "" if summary.n_magnetic is None else f", {summary.n_magnetic} magnetic"
    console.print(
        f"[bold]{escape(summary.dataset)}[/]: {_materials(summary.n_materials)} "
        f"({summary.n_formulas} formulas, {len(summary.elements)} elements, "
        f"{summary.n_spin_polarized} spin-polarized{magnetic})",
        soft_wrap=True,
    )
    if summary.prototypes:
        top = ", ".join(f"{p} {c}" for p, c in list(summary.prototypes.items())[:8])
        more = (
            f", ... ({len(summary.prototypes)} prototypes)" if len(summary.prototypes) > 8 else ""
        )
        console.print(
            f"prototypes ({summary.prototype_source}): {escape(top)}{more}", soft_wrap=True
        )
    top_sg = ", ".join(f"{g['symbol']} {g['n']}" for g in summary.space_groups[:6])
    console.print(f"space groups ({len(summary.space_groups)}): {escape(top_sg)}", soft_wrap=True)
    for name, counts in summary.classes.items():
        console.print(
            f"{name}: " + ", ".join(f"{escape(c)} {v}" for c, v in counts.items()), soft_wrap=True
        )
    labelled = ", ".join(f"{t} {c['n']}" for t, c in summary.coverage.items())
    console.print(f"labelled: {labelled or 'none'}", soft_wrap=True)
    for path in summary.files:
        console.print(f"wrote {escape(str(path))}", soft_wrap=True)
