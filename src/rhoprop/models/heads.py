"""Prediction targets and the small per-target heads on top of the shared embedding."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.settings import Settings

KINDS = ("regression", "binary", "multiclass")


@dataclasses.dataclass(frozen=True)
class TaskSpec(Settings):
    """One prediction target.

    Attributes:
        name: target name (a label column of the dataset), e.g. ``"band_gap"``.
        kind: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        unit: unit of a regression target (``"eV"``), ``""`` when dimensionless.
        classes: class names of a classification target, in code order (code i = classes[i]).
    """

    name: str
    kind: str = "regression"
    unit: str = ""
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SettingsError(f"TaskSpec.name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise SettingsError(
                f"TaskSpec.kind of target {self.name!r} must be one of {KINDS}, got {self.kind!r}"
            )
        classes = tuple(str(c) for c in self.classes)
        object.__setattr__(self, "classes", classes)
        if self.kind == "binary" and len(classes) not in (0, 2):
            raise SettingsError(
                f"TaskSpec.classes of binary target {self.name!r} must have 2 names, got {classes!r}"
            )
        if self.kind == "multiclass" and len(classes) < 2:
            raise SettingsError(
                f"TaskSpec.classes of multiclass target {self.name!r} must have >= 2 names, "
                f"got {classes!r}"
            )

    @property
    def is_regression(self) -> bool:
        """True for a regression target."""
        return self.kind == "regression"

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
    def from_target(cls, spec: Any) -> TaskSpec:
        """Build from any object with ``name``, ``kind``, ``unit``, ``classes`` (a dataset TargetSpec)."""
        return cls(
            name=str(spec.name),
            kind=str(spec.kind),
            unit=str(getattr(spec, "unit", "") or ""),
            classes=tuple(getattr(spec, "classes", ()) or ()),
        )


class Head(nn.Module):
    """A two-layer MLP from the embedding to one target's outputs, with dropout (used for MC dropout)."""

    def __init__(self, embed_dim: int, hidden: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs)
        )
        self.n_outputs = n_outputs

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B,) for one output (regression value, binary logit), else (B, K) logits."""
        out = self.net(z)
        return out.squeeze(-1) if self.n_outputs == 1 else out
