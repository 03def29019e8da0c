"""Prediction targets and the small per-target heads on top of the shared embedding."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from rhoprop.data.labels import TargetSpec
from rhoprop.errors import SettingsError


@dataclasses.dataclass(frozen=True)
class TaskSpec(TargetSpec):
    """A dataset :class:`~rhoprop.data.TargetSpec` (validated there) with what a head needs from
    it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind == "multiclass" and len(self.classes) < 2:
            raise SettingsError(
                f"target {self.name!r}: a multiclass head needs the class names (at least 2), got "
                f"{self.classes}"
            )

    @property
    def n_outputs(self) -> int:
        """Outputs of the head: 1 (regression value or binary logit) or the number of classes."""
        return len(self.classes) if self.kind == "multiclass" else 1

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes (``("0", "1")`` for a binary target without names)."""
        if self.kind == "binary" and not self.classes:
            return ("0", "1")
        return self.classes

    @classmethod
    def from_target(cls, spec: TargetSpec) -> TaskSpec:
        """The TaskSpec of a dataset's TargetSpec."""
        return cls.from_dict(spec.to_dict())


class Head(nn.Module):
    """A two-layer MLP from the embedding to one target's outputs, with dropout (used for MC
    dropout)."""

    def __init__(self, embed_dim: int, hidden: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )
        self.n_outputs = n_outputs

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B,) for one output (regression value, binary logit), else (B, K) logits."""
        out = self.net(z)
        return out.squeeze(-1) if self.n_outputs == 1 else out
