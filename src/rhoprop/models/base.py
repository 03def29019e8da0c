"""What every rhoprop multi-task model shares: standardizers, one head per target, decoding.

A :class:`MultiTaskModel` maps an input to a dict of raw head outputs (regression values in
standardized units, classification logits); :meth:`MultiTaskModel.decode` turns them into
natural units and probabilities. The normalization statistics live in buffers, so they travel
with the weights in ``model.safetensors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Self

import torch
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.models.heads import Head, TaskSpec


class Standardizer(nn.Module):
    """Per-column ``(v - mean) / std`` with the statistics in buffers; fitted ignoring NaN."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    @torch.no_grad()
    def fit(self, values: torch.Tensor, columns: Sequence[bool] | None = None) -> None:
        """Set mean and std from ``values`` (N, D) ignoring NaN; columns where ``columns`` is False
        keep 0/1."""
        values = values.to(torch.float64)
        finite = torch.isfinite(values)
        count = finite.sum(dim=0).clamp(min=1)
        filled = torch.where(finite, values, torch.zeros_like(values))
        mean = filled.sum(dim=0) / count
        var = (torch.where(finite, values - mean, torch.zeros_like(values)) ** 2).sum(dim=0) / count
        std = var.sqrt()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        mean = torch.where(finite.any(dim=0), mean, torch.zeros_like(mean))
        if columns is not None:
            keep = torch.tensor(list(columns), dtype=torch.bool)
            mean = torch.where(keep, mean, torch.zeros_like(mean))
            std = torch.where(keep, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """(B, D) natural -> (B, D) standardized."""
        return (v - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, D) natural."""
        return z * self.std + self.mean


class Predictor(Protocol):
    """What inference needs from a model: a :class:`MultiTaskModel`, or an
    :class:`~rhoprop.models.ensemble.Ensemble`, which speaks that interface without subclassing it.
    """

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The targets, in output order."""
        ...

    @property
    def target_norm(self) -> Standardizer:
        """The target normalization statistics."""
        ...

    def batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, ...]:
        """The positional inputs of :meth:`features` taken from a collated batch dict."""
        ...

    def features(self, *inputs: Any) -> torch.Tensor:
        """Inputs (as :meth:`batch_inputs` gives them) -> deterministic features."""
        ...

    def heads_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features -> raw outputs per target (see :meth:`decode`)."""
        ...

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs -> natural units and probabilities."""
        ...

    def mc_dropout(self, enabled: bool) -> None:
        """Switch sampling (MC dropout) on or off."""
        ...

    def to(self, device: str | torch.device) -> Self:
        """The model on ``device`` (as :meth:`torch.nn.Module.to`)."""
        ...

    def eval(self) -> Self:
        """The model in evaluation mode (as :meth:`torch.nn.Module.eval`)."""
        ...


class MultiTaskModel(nn.Module):
    """Base class: a deterministic feature extractor, a shared embedding, one :class:`Head` per
    target.

    Subclasses implement :meth:`features` (inputs -> (B, F)) and call
    ``super().__init__(tasks, feature_dim, embed_dim, head_hidden, dropout)``. Dropout sits only
    after the features (embedding and heads), so MC-dropout samples reuse one feature pass.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        feature_dim: int,
        embed_dim: int,
        head_hidden: int,
        dropout: float,
    ) -> None:
        super().__init__()
        tasks = tuple(tasks)
        if not tasks:
            raise SettingsError("a model needs at least one target; got an empty target list")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise SettingsError(f"target names must be distinct, got {names}")
        self.tasks: tuple[TaskSpec, ...] = tasks
        self.target_norm = Standardizer(len(tasks))
        self.embedding = nn.Sequential(
            nn.Linear(feature_dim, embed_dim), nn.SiLU(), nn.Dropout(dropout)
        )
        self.heads = nn.ModuleDict(
            {t.name: Head(embed_dim, head_hidden, t.n_outputs, dropout) for t in tasks}
        )

    def features(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """Inputs -> (B, F) deterministic features; implemented by subclasses."""
        raise NotImplementedError

    def batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, ...]:
        """The positional inputs of :meth:`features` taken from a collated batch dict."""
        raise NotImplementedError

    def heads_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, F) -> {target: (B,) value/logit or (B, K) logits}, regression in standardized
        units."""
        z = self.embedding(features)  # (B, E)
        return {name: head(z) for name, head in self.heads.items()}

    def forward(self, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Inputs -> {target: (B,) or (B, K)} raw outputs (see :meth:`decode`)."""
        return self.heads_forward(self.features(*inputs))

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs -> natural units: regression (B,) values, binary (B,) P(class 1), multiclass
        (B, K) probabilities."""
        decoded: dict[str, torch.Tensor] = {}
        for i, task in enumerate(self.tasks):
            out = outputs[task.name]
            if task.kind == "regression":
                decoded[task.name] = out * self.target_norm.std[i] + self.target_norm.mean[i]
            elif task.kind == "binary":
                decoded[task.name] = torch.sigmoid(out)
            else:
                decoded[task.name] = torch.softmax(out, dim=-1)
        return decoded

    def mc_dropout(self, enabled: bool) -> None:
        """Switch only the dropout layers to sampling (True) or to deterministic eval (False)."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.train(enabled)

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
