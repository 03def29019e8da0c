"""A deep ensemble: several MSA-3DCNNs trained from different seeds on the same data, used as one
model.

Averaging independently trained networks lowers the variance that dominates on small datasets
(Lakshminarayanan et al. 2017), and their disagreement is an uncertainty that sees more than
dropout does. The members share the training set, so they share the target and input statistics.

The ensemble speaks the :class:`~rhoprop.models.base.MultiTaskModel` interface that training,
inference and model files use: :meth:`Ensemble.features` stacks the members' features,
:meth:`Ensemble.heads_forward` averages their raw outputs (standardized regression values, logits),
:meth:`Ensemble.decode` is the first member's. With MC dropout on (uncertainty sampling), each call
of :meth:`Ensemble.heads_forward` is one member with dropout, the members taken in turn, so the
spread of the draws holds both the members' disagreement and each member's dropout spread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.models.base import MultiTaskModel, Standardizer
from rhoprop.models.heads import TaskSpec
from rhoprop.models.msa3dcnn import MSA3DCNN, MSA3DCNNConfig
from rhoprop.settings import Settings, check_fields, is_int

#: Bumped whenever a change makes old ensemble weights load into a different function.
ENSEMBLE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class EnsembleConfig(Settings):
    """An ensemble of ``members`` MSA-3DCNNs of one architecture ``member``."""

    members: int = 3
    member: MSA3DCNNConfig = dataclasses.field(default_factory=MSA3DCNNConfig)

    def __post_init__(self) -> None:
        check_fields(
            "EnsembleConfig",
            [
                (
                    is_int(self.members) and self.members >= 2,
                    "members must be an int >= 2",
                    self.members,
                ),
                (
                    isinstance(self.member, MSA3DCNNConfig),
                    "member must be an MSA3DCNNConfig",
                    type(self.member).__name__,
                ),
            ],
        )


class Ensemble(nn.Module):
    """Members of one architecture whose raw outputs are averaged (see the module docstring)."""

    def __init__(self, config: EnsembleConfig, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(MSA3DCNN(config.member, tasks) for _ in range(config.members))
        self.tasks: tuple[TaskSpec, ...] = self._models[0].tasks
        self._sampling = False
        self._turn = 0

    @classmethod
    def from_members(cls, members: Sequence[MSA3DCNN]) -> Ensemble:
        """An ensemble holding trained ``members`` (same architecture, targets and statistics)."""
        first = members[0]
        if any(m.config != first.config or m.tasks != first.tasks for m in members):
            raise SettingsError("ensemble members must share their architecture and targets")
        ensemble = cls(EnsembleConfig(members=len(members), member=first.config), first.tasks)
        for mine, theirs in zip(ensemble.members, members, strict=True):
            mine.load_state_dict(theirs.state_dict(), strict=True)
        return ensemble

    @property
    def _models(self) -> Sequence[MultiTaskModel]:
        """``members`` as the models they are (nn.ModuleList types its items as plain Modules)."""
        return cast("Sequence[MultiTaskModel]", self.members)

    @property
    def target_norm(self) -> Standardizer:
        """The members' shared target statistics."""
        return self._models[0].target_norm

    def batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, ...]:
        """The members' inputs from a collated batch."""
        return self._models[0].batch_inputs(batch)

    def features(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """Inputs -> (K, B, F): every member's deterministic features."""
        return torch.stack([member.features(*inputs) for member in self._models])

    def heads_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(K, B, F) -> raw outputs: the members' mean, or one member in turn while sampling."""
        if self._sampling:
            k = self._turn % len(self.members)
            self._turn += 1
            return self._models[k].heads_forward(features[k])
        outs = [member.heads_forward(f) for member, f in zip(self._models, features, strict=True)]
        return {name: torch.stack([o[name] for o in outs]).mean(dim=0) for name in outs[0]}

    def forward(self, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Inputs -> averaged raw outputs (see :meth:`MultiTaskModel.decode`)."""
        return self.heads_forward(self.features(*inputs))

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs -> natural units and probabilities (the members share the statistics)."""
        return self._models[0].decode(outputs)

    def mc_dropout(self, enabled: bool) -> None:
        """Sampling mode: dropout on and one member per draw (True), or the deterministic mean
        (False)."""
        for member in self._models:
            member.mc_dropout(enabled)
        self._sampling, self._turn = enabled, 0

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of all members."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
