"""Figures of the target analyses: similarity heatmap, dendrogram, multi-task study curves.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot global state), and
written atomically as PNG.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from scipy.cluster import hierarchy

from rhoprop.settings import atomic_write_bytes

if TYPE_CHECKING:
    from rhoprop.analysis.similarity import Grouping, SimilaritySettings


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> None:
    """Render ``fig`` to PNG and write it atomically to ``path``."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def significance_stars(q: float) -> str:
    """``***`` for q < 0.001, ``**`` < 0.01, ``*`` < 0.05, else empty (NaN: empty)."""
    if not np.isfinite(q):
        return ""
    return "***" if q < 0.001 else "**" if q < 0.01 else "*" if q < 0.05 else ""


def plot_similarity_heatmap(
    grouping: Grouping,
    pairs: pd.DataFrame,
    counts: dict[str, int],
    settings: SimilaritySettings,
    path: str | Path,
) -> None:
    """Annotated heatmap of the grouping similarity, ordered by the clustering, groups outlined.

    Cells show the similarity with Benjamini-Hochberg stars; untested pairs are grey with the
    number of shared labels; the diagonal shows each target's label count.
    """
    names = [grouping.targets[k] for k in grouping.order]
    t = len(names)
    pos = {n: k for k, n in enumerate(names)}
    sim = np.full((t, t), np.nan)
    text = [["" for _ in range(t)] for _ in range(t)]
    untested = np.zeros((t, t), dtype=bool)
    for r in pairs.itertuples(index=False):
        if r.target_a not in pos or r.target_b not in pos:
            continue
        i, j = pos[r.target_a], pos[r.target_b]
        if np.isfinite(r.similarity):
            sim[i, j] = sim[j, i] = r.similarity
            label = f"{r.similarity:.2f}{significance_stars(r.q_similarity)}"
        else:
            untested[i, j] = untested[j, i] = True
            label = f"n={r.n}" if r.status != "constant" else "const"
        text[i][j] = text[j][i] = label
    for k, n in enumerate(names):
        text[k][k] = f"n={counts.get(n, 0)}"
    size = max(4.0, 0.62 * t + 2.0)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    signed = settings.measure in ("pearson", "spearman")
    cmap = "RdBu_r" if signed else "viridis"
    hidden = ~np.isfinite(sim)
    np.fill_diagonal(hidden, True)
    shown = np.ma.masked_array(sim, mask=hidden)
    im = ax.imshow(shown, cmap=cmap, vmin=-1.0 if signed else 0.0, vmax=1.0)
    ax.imshow(np.where(untested, 1.0, np.nan), cmap="Greys", vmin=0, vmax=4, alpha=0.6)
    fontsize = max(4.5, min(9.0, 90.0 / max(t, 1)))
    for i in range(t):
        for j in range(t):
            ax.text(
                j,
                i,
                text[i][j],
                ha="center",
                va="center",
                fontsize=fontsize,
                color="black"
                if i == j
                else "white"
                if (not signed and np.isfinite(sim[i, j]) and sim[i, j] < 0.6)
                else "black",
            )
    for group in grouping.groups:
        if len(group) < 2:
            continue
        idx = sorted(pos[n] for n in group)
        lo, hi = idx[0], idx[-1]
        ax.add_patch(
            Rectangle((lo - 0.5, lo - 0.5), hi - lo + 1, hi - lo + 1, fill=False, lw=2.0, ec="red")
        )
    ax.set_xticks(range(t), names, rotation=60, ha="right", fontsize=fontsize + 1)
    ax.set_yticks(range(t), names, fontsize=fontsize + 1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"{settings.measure} similarity")
    ax.set_title(
        f"Target similarity ({settings.measure}); BH q: * <0.05 ** <0.01 *** <0.001\n"
        f"red boxes: groups (|similarity| >= {settings.threshold}, significant at "
        f"q < {settings.alpha})",
        fontsize=9,
    )
    save_figure(fig, path)


def plot_dendrogram(grouping: Grouping, settings: SimilaritySettings, path: str | Path) -> None:
    """Dendrogram of the average-linkage clustering with the cut line at ``1 - threshold``."""
    t = len(grouping.targets)
    fig = Figure(figsize=(max(5.0, 0.5 * t + 2.0), 4.0))
    ax = fig.add_subplot()
    cut = 1.0 - settings.threshold
    if t >= 2:
        hierarchy.dendrogram(
            grouping.linkage,
            labels=grouping.targets,
            ax=ax,
            color_threshold=cut,
            above_threshold_color="grey",
            leaf_rotation=60,
        )
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.axhline(cut, color="red", ls="--", lw=1.0, label=f"cut: similarity {settings.threshold}")
    ax.set_ylabel(f"1 - |{settings.measure}|  (not significant: 1)")
    ax.set_ylim(0.0, 1.05)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Average-linkage clustering of targets", fontsize=10)
    save_figure(fig, path)


def _spread_labels(
    ends: list[tuple[str, float, float]], gap: float
) -> list[tuple[str, float, float, float]]:
    """Vertical positions for end-of-line labels: (label, x, y) -> (label, x, y, label y), labels
    sharing an x at least ``gap`` apart, in the order of their points and centred on them."""
    placed: list[tuple[str, float, float, float]] = []
    for x in sorted({x for _, x, _ in ends}):
        column = sorted((e for e in ends if e[1] == x), key=lambda e: e[2])
        ys = [y for _, _, y in column]
        for i in range(1, len(ys)):
            ys[i] = max(ys[i], ys[i - 1] + gap)
        shift = (sum(y for _, _, y in column) - sum(ys)) / len(ys)
        placed += [
            (t, xx, y, y_text + shift) for (t, xx, y), y_text in zip(column, ys, strict=True)
        ]
    return placed


def plot_study(summary: pd.DataFrame, path: str | Path) -> None:
    """Score against the number of co-trained targets: markers per setup, a line per target.

    The line joins single, group and all; random groups sit just right of their group.

    ``summary`` has columns target, kind, config, n_cotrained, score, score_std, score_name.
    """
    configs = {"single": "o", "group": "s", "random": "^", "all": "D"}
    colors = {"single": "black", "group": "tab:red", "random": "tab:blue", "all": "tab:green"}
    panels = [name for name in ("R2", "AUC") if (summary["score_name"] == name).any()]
    fig = Figure(figsize=(6.0 * max(len(panels), 1), 4.5))
    for k, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        part = summary[summary["score_name"] == name]
        offsets = {"single": 0.0, "group": -0.08, "random": 0.08, "all": 0.0}
        ends = []
        for target, rows in part.groupby("target", sort=True):
            line = rows[rows["config"] != "random"].sort_values("n_cotrained")
            ax.plot(line["n_cotrained"], line["score"], color="0.75", lw=0.8, zorder=1)
            last = line.iloc[-1] if len(line) else rows.iloc[-1]
            ends.append((str(target), float(last["n_cotrained"]), float(last["score"])))
        scores = part["score"].to_numpy(dtype=float)
        gap = 0.045 * max(float(np.nanmax(scores) - np.nanmin(scores)), 1e-9)
        dx = 0.04 * float(part["n_cotrained"].max())
        for target, x, y, y_text in _spread_labels(ends, gap):
            ax.annotate(
                target,
                (x, y),
                xytext=(x + dx, y_text),
                textcoords="data",
                fontsize=6,
                ha="left",
                va="center",
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5},
            )
        for config, marker in configs.items():
            rows = part[part["config"] == config]
            if rows.empty:
                continue
            ax.errorbar(
                rows["n_cotrained"] + offsets[config],
                rows["score"],
                yerr=rows["score_std"].fillna(0.0),
                fmt=marker,
                color=colors[config],
                label=config,
                ms=5,
                capsize=2,
                zorder=2,
            )
        locator = ax.xaxis.get_major_locator()
        if isinstance(locator, MaxNLocator):  # the default AutoLocator is one
            locator.set_params(integer=True)
        ax.set_xlim(0.0, part["n_cotrained"].max() * 1.35 + 0.5)
        ax.set_xlabel("number of co-trained targets")
        ax.set_ylabel(f"test {name} (mean ± std over seeds)")
        ax.legend(fontsize=8)
        ax.set_title(f"{name} vs number of co-trained targets", fontsize=10)
    save_figure(fig, path)
