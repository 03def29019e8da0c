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

from rhoprop.models.base import MultiTaskModel
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
    model: MultiTaskModel,
    batches: Iterable[dict[str, Any]],
    mc_samples: int = 30,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Predictions:
    """Run ``model`` over collated batches (with ``"index"``); MC dropout with ``mc_samples`` passes.

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
            inputs = [t.to(device) if isinstance(t, torch.Tensor) else t for t in model.batch_inputs(batch)]
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


def calibration_scale(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, coverage: float = COVERAGE) -> float:
    """Factor s such that a fraction ``coverage`` of labelled values lies within mean ± Z90·s·std."""
    mask = np.isfinite(truth)
    if not mask.any():
        return 1.0
    resid = np.abs(mean[mask] - truth[mask])
    sigma = np.maximum(std[mask], 1e-12 + 1e-6 * np.abs(mean[mask]).mean())
    return float(max(np.quantile(resid / (Z90 * sigma), coverage), 1e-6))


def interval_coverage(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, scale: float = 1.0) -> float:
    """Fraction of labelled values inside the 90% interval mean ± Z90·scale·std (NaN without labels)."""
    mask = np.isfinite(truth)
    if not mask.any():
        return float("nan")
    return float(np.mean(np.abs(mean[mask] - truth[mask]) <= Z90 * scale * std[mask]))
