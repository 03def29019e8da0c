"""Batched inference with MC-dropout uncertainties, and their calibration.

Point predictions come from the deterministic network (dropout off), so they are exactly
repeatable; the uncertainty of each value is the spread of ``mc_samples`` passes with dropout on
(Gal & Ghahramani 2016), reusing one pass of the deterministic trunk. Raw MC-dropout spreads are
usually too narrow, so each regression target gets a scale factor fitted on the validation split
such that 90% of validation values fall inside ``mean ± 1.645 · scale · std``; ``rhoprop
evaluate`` reports the fraction of *test* values inside that interval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from rhoprop.models.base import Predictor
from rhoprop.models.heads import TaskSpec

#: Two-sided 90% interval of a normal distribution: mean ± Z90 · std.
Z90 = 1.6448536269514722
COVERAGE = 0.9


@dataclasses.dataclass
class Predictions:
    """Predictions of one model on N samples.

    Attributes:
        tasks: the targets, in model order.
        mean: per target, the point prediction: regression (N,) in natural units, binary (N,)
            probability of class 1, multiclass (N, K) class probabilities.
        std: per target, the MC-dropout standard deviation, same shape as ``mean`` (zeros when
            ``mc_samples`` is 1).
        indices: (N,) dataset positions of the samples, in prediction order.
    """

    tasks: tuple[TaskSpec, ...]
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    indices: np.ndarray


@torch.no_grad()
def predict_batches(
    model: Predictor,
    batches: Iterable[dict[str, Any]],
    mc_samples: int = 30,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Predictions:
    """Run ``model`` over collated batches (with ``"index"``); MC dropout with ``mc_samples``
    passes.

    ``device`` defaults to the first GPU when there is one, else the CPU.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    means: dict[str, list[torch.Tensor]] = {t.name: [] for t in model.tasks}
    stds: dict[str, list[torch.Tensor]] = {t.name: [] for t in model.tasks}
    indices: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in batches:
            inputs = [
                t.to(device) if isinstance(t, torch.Tensor) else t
                for t in model.batch_inputs(batch)
            ]
            feats = model.features(*inputs)  # (B, F), deterministic
            point = model.decode(model.heads_forward(feats))
            if mc_samples > 1:
                model.mc_dropout(True)
                draws = [model.decode(model.heads_forward(feats)) for _ in range(mc_samples)]
                model.mc_dropout(False)
            for task in model.tasks:
                means[task.name].append(point[task.name].float().cpu())
                if mc_samples > 1:
                    stack = torch.stack([d[task.name] for d in draws]).float()
                    stds[task.name].append(stack.std(dim=0).cpu())
                else:
                    stds[task.name].append(torch.zeros_like(point[task.name]).float().cpu())
            indices.append(torch.as_tensor(batch["index"]).reshape(-1).cpu())
    return Predictions(
        tasks=model.tasks,
        mean={k: _cat(v) for k, v in means.items()},
        std={k: _cat(v) for k, v in stds.items()},
        indices=_cat(indices).astype(np.int64),
    )


def _cat(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def conformal_quantile(scores: np.ndarray, coverage: float = COVERAGE) -> float:
    """Split-conformal quantile: the ``ceil((n + 1) * coverage)``-th smallest score (the largest
    when n is too small), so that a new exchangeable score falls below it with probability >=
    coverage."""
    scores = np.sort(np.asarray(scores, dtype=float))
    if scores.size == 0:
        return float("nan")
    k = min(int(np.ceil((scores.size + 1) * coverage)), scores.size)
    return float(scores[k - 1])


def normalized_residuals(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|mean - truth| / (Z90 * std) over the labelled values: the scale each value's interval would
    need."""
    mask = np.isfinite(truth)
    sigma = (
        np.maximum(std[mask], 1e-12 + 1e-6 * np.abs(mean[mask]).mean()) if mask.any() else std[mask]
    )
    return np.abs(mean[mask] - truth[mask]) / (Z90 * sigma)


def calibration_scale(
    mean: np.ndarray, std: np.ndarray, truth: np.ndarray, coverage: float = COVERAGE
) -> float:
    """Factor s such that a new value lies within mean ± Z90·s·std with probability ``coverage``
    (split-conformal quantile of the normalized residuals; 1.0 without labels)."""
    scores = normalized_residuals(mean, std, truth)
    if scores.size == 0:
        return 1.0
    return max(conformal_quantile(scores, coverage), 1e-6)


def calibration_scales(
    per_target: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], coverage: float = COVERAGE
) -> dict[str, float]:
    """Per-target scales from (mean, std, truth) on the calibration set, each at least the scale of
    all targets' residuals pooled, so that a target whose few calibration values happen to be easy
    does not get a narrower interval than the model as a whole supports."""
    scores = {name: normalized_residuals(*arrays) for name, arrays in per_target.items()}
    pooled_scores = np.concatenate(list(scores.values())) if scores else np.zeros(0)
    pooled = conformal_quantile(pooled_scores, coverage) if pooled_scores.size else 1.0
    return {
        name: max(conformal_quantile(s, coverage) if s.size else pooled, pooled, 1e-6)
        for name, s in scores.items()
    }


def interval90(
    mean: np.ndarray | float,
    std: np.ndarray | float,
    scale: float = 1.0,
    minimum: float | None = None,
    gated: np.ndarray | None = None,
    maximum: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the 90% interval mean ± Z90·scale·std, both raised to a target's physical
    ``minimum`` and lowered to its ``maximum``; where ``gated`` (a predicted metal's band gap,
    :func:`~rhoprop.data.labels.gated_samples`) the lower bound is the minimum itself, so the
    interval holds the reported value."""
    mean, half = np.asarray(mean, dtype=float), Z90 * scale * np.asarray(std, dtype=float)
    lo, hi = mean - half, mean + half
    if minimum is not None:
        lo, hi = np.maximum(lo, minimum), np.maximum(hi, minimum)
        if gated is not None:
            lo = np.where(gated, minimum, lo)
    if maximum is not None:
        lo, hi = np.minimum(lo, maximum), np.minimum(hi, maximum)
    return lo, hi


def interval_coverage(
    mean: np.ndarray,
    std: np.ndarray,
    truth: np.ndarray,
    scale: float = 1.0,
    minimum: float | None = None,
    gated: np.ndarray | None = None,
    maximum: float | None = None,
) -> float:
    """Fraction of labelled values inside the 90% interval (:func:`interval90`; NaN without
    labels)."""
    mask = np.isfinite(truth)
    if not mask.any():
        return float("nan")
    lo, hi = interval90(
        mean[mask], std[mask], scale, minimum, None if gated is None else gated[mask], maximum
    )
    return float(np.mean((lo <= truth[mask]) & (truth[mask] <= hi)))
