"""Masked per-target losses and task weighting (equal, or learned uncertainty after Kendall et al.
2018).

A missing label is NaN in the target tensor. It contributes nothing to its head's loss; a batch
with no label for a head gives that head a loss of exactly zero that is still connected to the
head's parameters (so DDP sees a gradient, zero, for every parameter).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.models.heads import TaskSpec

REGRESSION_LOSSES = ("mse", "huber", "l1")
WEIGHTINGS = ("equal", "uncertainty")


def masked_loss(
    task: TaskSpec, output: torch.Tensor, target: torch.Tensor, regression_loss: str = "mse"
) -> tuple[torch.Tensor, int]:
    """Mean loss of one head over the labelled samples, and how many there were.

    ``output`` is (B,) (regression in standardized units, binary logit) or (B, K) logits;
    ``target`` is (B,) with NaN where the label is missing (class codes as floats).
    """
    mask = torch.isfinite(target)
    n = int(mask.sum())
    if n == 0:
        return output.sum() * 0.0, 0
    y = torch.where(mask, target, torch.zeros_like(target))  # no NaN reaches the graph
    if task.kind == "regression":
        if regression_loss == "mse":
            per = F.mse_loss(output, y, reduction="none")
        elif regression_loss == "huber":
            per = F.huber_loss(output, y, reduction="none", delta=1.0)
        elif regression_loss == "l1":
            per = F.l1_loss(output, y, reduction="none")
        else:
            raise SettingsError(
                f"regression_loss must be one of {REGRESSION_LOSSES}, got {regression_loss!r}"
            )
    elif task.kind == "binary":
        per = F.binary_cross_entropy_with_logits(output, y, reduction="none")
    else:
        per = F.cross_entropy(output, y.long(), reduction="none")
    return (per * mask.to(per.dtype)).sum() / n, n


class TaskWeighting(nn.Module):
    """Combines per-target losses into one; only targets with labels in the batch take part."""

    factor: torch.Tensor

    def __init__(self, tasks: Sequence[TaskSpec], method: str = "equal") -> None:
        super().__init__()
        if method not in WEIGHTINGS:
            raise SettingsError(f"task weighting must be one of {WEIGHTINGS}, got {method!r}")
        self.method = method
        # Kendall et al.: 1/(2σ²) for regression (Gaussian), 1/σ² for classification (softmax).
        factors = [0.5 if t.kind == "regression" else 1.0 for t in tasks]
        self.register_buffer("factor", torch.tensor(factors))
        self.log_var = nn.Parameter(torch.zeros(len(tasks))) if method == "uncertainty" else None

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """losses (T,), present (T,) bool -> scalar total loss."""
        if self.log_var is None:
            return (losses * present.to(losses.dtype)).sum()
        s = self.log_var
        per = self.factor * torch.exp(-s) * losses + 0.5 * s
        # A task absent from the batch adds zero but stays in the graph (DDP needs every gradient).
        return torch.where(present, per, per * 0.0).sum()

    def weights(self) -> torch.Tensor:
        """(T,) current effective weight of each task's loss."""
        if self.log_var is None:
            return torch.ones_like(self.factor)
        return (self.factor * torch.exp(-self.log_var)).detach()
