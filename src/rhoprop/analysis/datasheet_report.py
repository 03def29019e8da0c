"""The datasheet's output: ``counts.md``, ``counts.json``, two figures and a terminal summary.

:func:`write_datasheet` counts a store with :func:`~rhoprop.analysis.datasheet.datasheet_counts`
and writes the files; :func:`save_datasheet` writes those of a summary already counted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
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
from rhoprop.analysis.datasheet import (
    MAGNETIC_TARGET,
    PROTOTYPE_FROM_CSV,
    PROTOTYPE_FROM_IDS,
    DatasheetSettings,
    DatasheetSummary,
    datasheet_counts,
    labelled_values,
)
from rhoprop.analysis.figures import save_figure
from rhoprop.analysis.markdown import markdown_table
from rhoprop.data.store import DatasetStore
from rhoprop.errors import RhopropError
from rhoprop.settings import atomic_write_text

#: Files written by :func:`write_datasheet`, in the order they are listed.
FILES = ("counts.md", "counts.json", "label_distributions.png", "elements.png")


def _materials(n: int) -> str:
    """``"1 material"``, ``"55 materials"``."""
    return f"{n} material" if n == 1 else f"{n} materials"


def _pct(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}" if total else "0.0"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _element_grid(elements: dict[str, int], columns: int) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of the per-element table: ``columns`` (element, count) pairs side by side,
    filled column by column."""
    items = list(elements.items())
    k = min(columns, max(len(items), 1))
    depth = math.ceil(len(items) / k) if items else 0
    rows = []
    for r in range(depth):
        row: list[Any] = []
        for c in range(k):
            idx = c * depth + r
            row += list(items[idx]) if idx < len(items) else ["", ""]
        rows.append(row)
    return ["element", "materials"] * k, rows


def counts_markdown(summary: DatasheetSummary) -> str:
    """The datasheet's counts as markdown tables ready to paste into the documentation."""
    n = summary.n_materials
    s = summary.settings
    builtin = summary.builtin
    what = f"built-in dataset `{summary.name}`" if builtin else f"dataset `{summary.dataset}`"
    out = [
        f"# Datasheet: {summary.name}",
        "",
        f"Counts of the {what}, written by rhoprop {rhoprop.__version__} "
        "(`rhoprop analyze datasheet`).",
    ]

    def section(title: str, *text: str) -> None:
        out.extend(["", title, "", *(line for t in text for line in (t, ""))])

    overview: list[list[Any]] = [
        ["materials", n],
        ["distinct formulas", summary.n_formulas],
        ["elements", len(summary.elements)],
        ["spin-polarized densities (stored with a spin channel)", summary.n_spin_polarized],
    ]
    if summary.n_magnetic is not None:
        unit = summary.coverage.get(MAGNETIC_TARGET, {}).get("unit", "")
        limit = f"{s.magnetic_threshold:g} {unit}".strip()
        overview.append([f"magnetic (|{MAGNETIC_TARGET}| > {limit})", summary.n_magnetic])
    section("## Overview")
    out.append(markdown_table(["", "materials"], overview, "lr"))

    source = {
        PROTOTYPE_FROM_CSV: ["Prototype from the `prototype` column of materials.csv."],
        PROTOTYPE_FROM_IDS: [
            "Prototype = the id after its last `-` (every id is `<formula>-<prototype>`)."
        ],
    }.get(summary.prototype_source or "", [])
    section("## Materials per prototype", *source)
    prototypes = [[p, c, _pct(c, n)] for p, c in summary.prototypes.items()]
    out.append(
        markdown_table(["prototype", "materials", "%"], prototypes, "lrr")
        if prototypes
        else "No prototypes: the ids are not all `<formula>-<prototype>` and no materials.csv was "
        "given; see the space groups below."
    )

    section("## Materials per space group", f"spglib through pymatgen, symprec {s.symprec:g} Å.")
    groups = [[g["symbol"], g["number"], g["crystal_system"], g["n"]] for g in summary.space_groups]
    out.append(
        markdown_table(["space group", "number", "crystal system", "materials"], groups, "lrlr")
    )

    section("## Materials per number of elements")
    out.append(markdown_table(["elements", "materials"], summary.n_elements.items(), "lr"))

    section(
        "## Materials per element",
        "Number of materials containing each element, most common first.",
    )
    header, grid = _element_grid(summary.elements, s.element_columns)
    out.append(markdown_table(header, grid, "lr" * (len(header) // 2)))

    section("## Classes of the classification targets")
    for k, (name, counts) in enumerate(summary.classes.items()):
        labelled = summary.coverage[name]["n"]
        rows: list[list[Any]] = [[c, v, _pct(v, labelled)] for c, v in counts.items()]
        rows.append(["unlabelled", n - labelled, ""])
        out += ([""] if k else []) + [f"### {name}", ""]
        out.append(markdown_table(["class", "materials", "% of labelled"], rows, "lrr"))
    if not summary.classes:
        out.append("No classification targets.")

    section("## Label coverage")
    coverage = [
        [t, c["kind"], c["unit"], c["n"], f"{c['percent']:.1f}"]
        + [_num(c.get(stat)) for stat in ("min", "median", "max")]
        for t, c in summary.coverage.items()
    ]
    header = ["target", "kind", "unit", "labelled", "%", "min", "median", "max"]
    out.append(markdown_table(header, coverage, "lllrrrrr") if coverage else "No labels.")
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
                    bins=edges.tolist() if len(edges) <= 41 else 40,
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
    """Count ``store`` (:func:`~rhoprop.analysis.datasheet.datasheet_counts`) and write its
    datasheet into ``out_dir`` (:func:`save_datasheet`); returns the numbers with the files."""
    summary = datasheet_counts(store, materials_csv=materials_csv, settings=settings)
    return save_datasheet(summary, store.labels, out_dir)


def save_datasheet(
    summary: DatasheetSummary, labels: pd.DataFrame, out_dir: str | os.PathLike[str]
) -> DatasheetSummary:
    """Write ``counts.md``, ``counts.json``, ``label_distributions.png`` and ``elements.png`` of
    ``summary`` (``labels``: the store's labels, for the histograms) into ``out_dir``; returns the
    summary with the files written."""
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
    plot_label_distributions(labels, summary, files[2])
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
