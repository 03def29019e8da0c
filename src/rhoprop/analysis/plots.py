"""Pictures of model quality: parity plots, ROC curves, confusion matrices, learning curves.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display needed) and
written atomically as PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from rhoprop.analysis.figures import save_figure
from rhoprop.analysis.metrics import confusion, regression_metrics


def _label(name: str, unit: str) -> str:
    return f"{name} ({unit})" if unit else name


def parity_plot(
    path: str | os.PathLike[str],
    truth: np.ndarray,
    pred: np.ndarray,
    name: str,
    unit: str = "",
    interval: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> None:
    """Predicted vs true values with the identity line, R²/MAE/RMSE in a box, optional 90% error
    bars.

    ``interval`` is each prediction's interval as an (N,) half-width, or as the (below, above)
    distances of its bounds from the prediction (an interval clipped at a physical minimum).
    """
    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    mask = np.isfinite(truth)
    m = regression_metrics(truth, pred)
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot()
    t, p = truth[mask], pred[mask]
    if interval is not None:
        yerr = np.asarray(interval, dtype=float)
        yerr = yerr[:, mask] if yerr.ndim == 2 else yerr[mask]
        ax.errorbar(t, p, yerr=yerr, fmt="none", ecolor="0.75", lw=0.8, zorder=1)
    ax.scatter(t, p, s=14, alpha=0.8, edgecolor="none", zorder=2)
    both = np.concatenate([t, p]) if len(t) else np.array([0.0, 1.0])
    lo, hi = float(both.min()), float(both.max())
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"true {_label(name, unit)}")
    ax.set_ylabel(f"predicted {_label(name, unit)}")
    text = f"n = {m['n']}\nR² = {m['r2']:.3f}\nMAE = {m['mae']:.3g}\nRMSE = {m['rmse']:.3g}"
    ax.text(
        0.04,
        0.96,
        text,
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
    )
    ax.set_title(title or name, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def roc_plot(
    path: str | os.PathLike[str],
    truth: np.ndarray,
    proba: np.ndarray,
    name: str,
    classes: Sequence[str],
) -> None:
    """ROC curve of a binary target (from (N,) P(class 1)), or one-vs-rest curves of a multiclass
    one."""
    truth, proba = np.asarray(truth, dtype=float), np.asarray(proba, dtype=float)
    mask = np.isfinite(truth)
    y, p = truth[mask].astype(int), proba[mask]
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot()
    curves = (
        [(1, p, classes[1] if len(classes) > 1 else "1")]
        if p.ndim == 1
        else [(k, p[:, k], c) for k, c in enumerate(classes)]
    )
    for k, score, label in curves:
        positives = y == k
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, score)
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC: {name}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def confusion_plot(
    path: str | os.PathLike[str],
    truth: np.ndarray,
    proba: np.ndarray,
    name: str,
    classes: Sequence[str],
) -> None:
    """Confusion matrix (counts, rows true class, columns predicted class)."""
    cm = confusion(truth, proba, len(classes))
    fig = Figure(figsize=(1.2 + 0.6 * len(classes), 1.0 + 0.6 * len(classes)))
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion: {name}", fontsize=10)
    save_figure(fig, path)


def read_learning_curves(csv_paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """Per-epoch metrics from Lightning CSV logs (several attempts of a resumed run: later ones
    win)."""
    frames = []
    for order, path in enumerate(csv_paths):
        frame = pd.read_csv(path)
        if "epoch" not in frame:
            continue
        frame = frame.dropna(subset=["epoch"]).groupby("epoch").last()
        frame["attempt"] = order
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    merged = pd.concat(frames).reset_index()
    merged = merged.sort_values(["epoch", "attempt"]).groupby("epoch").last()
    return merged.drop(columns=["attempt"])


def learning_curves_plot(
    path: str | os.PathLike[str], curves: pd.DataFrame, targets: Sequence[str]
) -> None:
    """Train/val loss per epoch, and each target's validation metric per epoch."""
    panels = [t for t in targets if f"val_{t}_mae" in curves or f"val_{t}_acc" in curves]
    ncols = min(3, 1 + len(panels))
    nrows = math.ceil((1 + len(panels)) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.0 * nrows))
    ax = fig.add_subplot(nrows, ncols, 1)
    for key in ("train_loss", "val_loss"):
        if key in curves:
            series = curves[key].dropna()
            ax.plot(series.index, series.values, marker=".", label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("loss (sum over targets)", fontsize=10)
    ax.legend(fontsize=8)
    for i, target in enumerate(panels, start=2):
        ax = fig.add_subplot(nrows, ncols, i)
        metric = "mae" if f"val_{target}_mae" in curves else "acc"
        for stage in ("train", "val"):
            key = f"{stage}_{target}_{metric}"
            if key in curves:
                series = curves[key].dropna()
                ax.plot(series.index, series.values, marker=".", label=stage)
        ax.set_xlabel("epoch")
        ax.set_title(f"{target} {metric.upper()}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, Path(path))
