"""Metrics of predictions against labels: R², MAE, RMSE (regression); accuracy, F1, ROC-AUC
(classification).

Every function takes numpy arrays with NaN for missing labels and ignores those samples; a
metric that is undefined for the data (R² of a constant, ROC-AUC with one class present) is NaN.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

REGRESSION_METRICS = ("r2", "mae", "rmse")
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc")


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``{"n", "r2", "mae", "rmse"}`` over the samples with a label (truth not NaN)."""
    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    mask = np.isfinite(truth)
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "r2": math.nan, "mae": math.nan, "rmse": math.nan}
    err = pred[mask] - truth[mask]
    ss_tot = float(np.sum((truth[mask] - truth[mask].mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else math.nan
    return {
        "n": n,
        "r2": r2,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
    }


def predicted_classes(proba: np.ndarray) -> np.ndarray:
    """Class codes from probabilities: (N,) P(class 1) thresholded at 0.5, or argmax of (N, K)."""
    proba = np.asarray(proba, dtype=float)
    return (proba > 0.5).astype(int) if proba.ndim == 1 else proba.argmax(axis=1)


def classification_metrics(truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """``{"n", "accuracy", "f1", "roc_auc"}``: binary from (N,) P(class 1), multiclass from (N, K).

    F1 is of class 1 for binary targets and macro-averaged for multiclass; ROC-AUC is one-vs-rest
    macro-averaged for multiclass, over the classes present in ``truth``.
    """
    truth, proba = np.asarray(truth, dtype=float), np.asarray(proba, dtype=float)
    mask = np.isfinite(truth)
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "accuracy": math.nan, "f1": math.nan, "roc_auc": math.nan}
    y = truth[mask].astype(int)
    p = proba[mask]
    label = predicted_classes(p)
    binary = p.ndim == 1
    f1 = f1_score(y, label, average="binary" if binary else "macro", zero_division=0)
    present = np.unique(y)
    if len(present) < 2:
        auc = math.nan
    elif binary:
        auc = roc_auc_score(y, p)
    else:
        cols = p[:, present]
        cols = cols / np.clip(cols.sum(axis=1, keepdims=True), 1e-12, None)
        auc = (
            roc_auc_score(y, cols, multi_class="ovr", average="macro", labels=present)
            if len(present) > 2
            else roc_auc_score(y == present[1], cols[:, 1])
        )
    return {
        "n": n,
        "accuracy": float(accuracy_score(y, label)),
        "f1": float(f1),
        "roc_auc": float(auc),
    }


def confusion(truth: np.ndarray, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) confusion matrix (rows: true class, columns: predicted) over the labelled samples."""
    truth = np.asarray(truth, dtype=float)
    mask = np.isfinite(truth)
    if not mask.any():
        return np.zeros((n_classes, n_classes), dtype=int)
    return confusion_matrix(
        truth[mask].astype(int),
        predicted_classes(np.asarray(proba)[mask]),
        labels=list(range(n_classes)),
    )
