"""The LightningModule: an injected multi-task model, masked losses, task weighting, per-target
metrics.

One shared :meth:`RhopropModule.step` serves training and validation. Per-target metrics are
accumulated as (sum, count) pairs that Lightning/torchmetrics reduce across DDP ranks, so a
target with no label in some batch (or on some rank) still gets the exact epoch mean. Keys:
``{stage}_loss`` (sum of the per-target mean losses of the targets with at least
``monitor_min_labels`` labels in the stage's data, or of every target when none has that many;
the objective when weighting is equal), ``{stage}_loss_all`` (the same sum over every target,
logged when it differs),
``{stage}_{target}_loss``, ``{stage}_{target}_mae`` (regression, natural units) and
``{stage}_{target}_acc`` (classification).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric

from rhoprop.models.base import MultiTaskModel
from rhoprop.models.losses import TaskWeighting, masked_loss
from rhoprop.train.config import TrainConfig


class WeightedMean(Metric):
    """Mean of values with weights, summed across processes; NaN when the total weight is 0."""

    full_state_update = False
    total: torch.Tensor
    weight: torch.Tensor
    #: total weight (number of items) seen by the last :meth:`compute`, summed across processes
    last_weight: float = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "weight", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, value: torch.Tensor, weight: float) -> None:
        """Add ``value`` (a mean over ``weight`` items)."""
        if weight > 0:
            self.total += value.detach().to(torch.float64) * weight
            self.weight += weight

    def compute(self) -> torch.Tensor:
        """The weighted mean (NaN without any weight)."""
        self.last_weight = float(self.weight)  # synced across processes inside compute
        return (
            self.total / self.weight
            if self.weight > 0
            else torch.tensor(math.nan, dtype=torch.float64)
        )


def monitored_targets(counts: Mapping[str, float], min_labels: int) -> list[str]:
    """The targets whose losses make up ``val_loss`` (and ``train_loss``): those with at least
    ``min_labels`` labels among ``counts`` (target -> number of labels of the stage), or all of
    them when none has that many (a tiny validation part still gets a monitor)."""
    enough = [k for k, n in counts.items() if n >= min_labels]
    return enough if enough else list(counts)


class RhopropModule(L.LightningModule):
    """Trains a :class:`~rhoprop.models.base.MultiTaskModel` on batches of DensityDataset dicts."""

    def __init__(self, model: MultiTaskModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.weighting = TaskWeighting(model.tasks, config.weighting)
        keys = []
        for task in model.tasks:
            keys.append(f"{task.name}_loss")
            keys.append(f"{task.name}_mae" if task.is_regression else f"{task.name}_acc")
        self.train_metrics = nn.ModuleDict({k: WeightedMean() for k in keys})
        self.val_metrics = nn.ModuleDict({k: WeightedMean() for k in keys})

    def forward(self, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The model's inputs (e.g. x (B, C, n, n, n), side (B, S)) -> raw head outputs."""
        return self.model(*inputs)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        """Loss of one batch (masked per target, weighted), updating the stage's metrics."""
        y = batch["y"]  # (B, T), NaN = missing
        out = self.model(*self.model.batch_inputs(batch))
        y_std = self.model.target_norm(y)  # classification columns have mean 0, std 1: unchanged
        decoded = self.model.decode({k: v.detach() for k, v in out.items()})
        losses, present = [], []
        metrics = self._metrics(stage)
        for i, task in enumerate(self.model.tasks):
            loss, n = masked_loss(task, out[task.name], y_std[:, i], self.config.regression_loss)
            losses.append(loss)
            present.append(n > 0)
            metrics[f"{task.name}_loss"].update(loss, n)
            key = f"{task.name}_mae" if task.is_regression else f"{task.name}_acc"
            metrics[key].update(self._score(i, decoded[task.name], y[:, i]), n)
        stacked = torch.stack(losses)
        total = self.weighting(stacked, torch.tensor(present, device=stacked.device))
        if stage == "train":
            self.log(
                "train_objective",
                total,
                on_step=True,
                on_epoch=False,
                prog_bar=True,
                batch_size=y.shape[0],
            )
        return total

    def _score(self, i: int, pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """Mean absolute error (regression) or accuracy (classification) over the labelled
        samples."""
        mask = torch.isfinite(truth)
        if not mask.any():
            return torch.zeros((), device=truth.device)
        pred, truth = pred[mask], truth[mask]
        task = self.model.tasks[i]
        if task.is_regression:
            return (pred - truth).abs().mean()
        label = (pred > 0.5).long() if task.kind == "binary" else pred.argmax(dim=-1)
        return (label == truth.long()).float().mean()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimization step."""
        return self.step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate validation metrics."""
        self.step(batch, "val")

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training metrics."""
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation metrics (``val_loss`` is what checkpoints and early stopping
        watch)."""
        self._log_epoch("val")

    def _metrics(self, stage: str) -> Mapping[str, WeightedMean]:
        metrics = self.train_metrics if stage == "train" else self.val_metrics
        return cast("Mapping[str, WeightedMean]", metrics)  # a ModuleDict of WeightedMean

    def _log_epoch(self, stage: str) -> None:
        values: dict[str, torch.Tensor] = {}
        counts: dict[str, float] = {}
        for key, metric in self._metrics(stage).items():
            values[f"{stage}_{key}"] = (
                metric.compute().float()
            )  # synced across ranks by torchmetrics
            counts[key] = metric.last_weight
            metric.reset()
        losses = {t.name: values[f"{stage}_{t.name}_loss"] for t in self.model.tasks}
        finite = {k: v for k, v in losses.items() if torch.isfinite(v)}
        watched = monitored_targets(
            {k: counts[f"{k}_loss"] for k in finite}, self.config.monitor_min_labels
        )
        values[f"{stage}_loss"] = (
            torch.stack([finite[k] for k in watched]).sum() if watched else torch.tensor(math.nan)
        )
        if len(watched) < len(finite):
            values[f"{stage}_loss_all"] = torch.stack(list(finite.values())).sum()
        if self.weighting.log_var is not None:
            for task, w in zip(self.model.tasks, self.weighting.weights(), strict=True):
                values[f"weight_{task.name}"] = w.float()
        loss = values.pop(f"{stage}_loss")
        # A target without labels in this stage's data has NaN metrics: not logged (same on every
        # rank).
        self.log_dict({k: v for k, v in values.items() if torch.isfinite(v)}, sync_dist=False)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "val", sync_dist=False)

    def configure_optimizers(self) -> Any:
        """AdamW (no weight decay on norms, biases and task log-variances), optional cosine
        decay."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            (no_decay if p.ndim <= 1 or name.startswith("weighting.") else decay).append(p)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.config.lr,
        )
        if self.config.schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.config.epochs, eta_min=self.config.lr * 0.01
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
