"""Hybrid models: the MSA-3DCNN with gradient boosting on the same global features.

rhoprop's hybrid (``hybrid-<inputs>`` in ``rhoprop benchmark``, ``rhoprop hybrid`` for a model
file) combines a network with a gradient boosting fitted on the global features the network reads
beside the density (the density invariants, and with ``density+structure`` the electrons per atom
and the composition). The two learners make different errors: the network is best where the
spatial density matters (volume, crystal system), the gradient boosting where a few global numbers
carry the label (total energy, band gap, bandwidth). Per target the hybrid predicts their mean, or
the network alone where held-out data show the mean is worse (:func:`choose_weights`); measured in
``docs/model.md`` ("Hybrid models").

:func:`blend_predictions` is the rule on arrays (the benchmark's cached predictions);
:class:`Hybrid` is the same rule as a model file: a trained network and the gradient boosting's
trees (:class:`~rhoprop.models.trees.TreeEnsemble`, no pickle) in one ``model.safetensors``, so
``rhoprop predict`` and ``rhoprop evaluate`` use it like any other model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.models.base import Standardizer
from rhoprop.models.ensemble import Ensemble, EnsembleConfig
from rhoprop.models.heads import TaskSpec
from rhoprop.models.msa3dcnn import MSA3DCNN, MSA3DCNNConfig
from rhoprop.models.trees import TreeEnsemble, TreeLayout
from rhoprop.settings import Settings, check_fields

#: Bumped whenever a change makes old hybrid files load into a different function.
HYBRID_VERSION = 1
#: The network classes a hybrid can hold, with their settings classes.
NETWORKS: dict[str, tuple[type[MSA3DCNN] | type[Ensemble], type[Settings]]] = {
    "MSA3DCNN": (MSA3DCNN, MSA3DCNNConfig),
    "Ensemble": (Ensemble, EnsembleConfig),
}


def blend_predictions(
    weights: Mapping[str, float],
    network: Mapping[str, np.ndarray],
    trees: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per target of ``weights``: ``w · network + (1 − w) · trees`` of the two halves' raw outputs.

    Raw outputs are what a model returns before rhoprop's reporting rules
    (:func:`~rhoprop.data.labels.consistent_predictions`): regression values, the probability of
    a binary target, the class probabilities of a multiclass one (rows, so a blend of probability
    rows is a probability row). Halves whose arrays for a target differ in shape are refused."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        a, b = np.asarray(network[name], dtype=float), np.asarray(trees[name], dtype=float)
        if a.shape != b.shape:
            raise SettingsError(
                f"the halves' predictions of {name!r} differ in shape {a.shape} vs {b.shape}; a "
                "hybrid blends predictions of the same samples"
            )
        out[name] = w * a + (1 - w) * b
    return out


#: Fewest held-out labels a target needs before its weight is chosen from them (else the mean).
MIN_SELECTION_LABELS = 30


def selection_score(task: TaskSpec, truth: np.ndarray, pred: np.ndarray) -> float:
    """Lower is better: the MAE of a regression target, the log-loss of a binary (``pred`` the
    probability of class 1) or multiclass one (``pred`` the class-probability rows), over the
    labelled samples (NaN when there is none)."""
    labelled = np.isfinite(truth)
    if not labelled.any():
        return float("nan")
    y, p = truth[labelled], np.asarray(pred, dtype=float)[labelled]
    if task.is_regression:
        return float(np.mean(np.abs(p - y)))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if task.kind == "binary":
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y.astype(int)])))


def choose_weights(
    tasks: Sequence[TaskSpec],
    truth: np.ndarray,
    network: Mapping[str, np.ndarray],
    trees: Mapping[str, np.ndarray],
    min_labels: int = MIN_SELECTION_LABELS,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per target, the network's share: 1 (the network alone) where it scores better than the
    mean of the two on held-out samples (``truth`` (N, T) with NaN for missing labels, raw
    predictions of both halves), else 0.5; 0.5 for targets with fewer than ``min_labels``
    held-out labels. Returns (weights, scores per target of ``mean`` and ``network``)."""
    weights: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    for j, task in enumerate(tasks):
        net = np.asarray(network[task.name], dtype=float)
        mean = blend_predictions({task.name: 0.5}, network, trees)[task.name]
        scores[task.name] = {
            "mean": selection_score(task, truth[:, j], mean),
            "network": selection_score(task, truth[:, j], net),
            "labels": float(np.isfinite(truth[:, j]).sum()),
        }
        enough = scores[task.name]["labels"] >= min_labels
        weights[task.name] = (
            1.0 if enough and scores[task.name]["network"] < scores[task.name]["mean"] else 0.5
        )
    return weights, scores


@dataclasses.dataclass(frozen=True)
class HybridConfig(Settings):
    """A :class:`Hybrid`: its network's class and settings, its trees' sizes.

    Attributes:
        network_class: ``MSA3DCNN`` or ``Ensemble``.
        network: that class's settings (as saved in its own model.json ``config``).
        trees: sizes of the gradient boosting's buffers.
        gradient_boosting: the settings the trees were fitted with (a record, not used to predict).
    """

    network_class: str = "MSA3DCNN"
    network: dict[str, Any] = dataclasses.field(default_factory=dict)
    trees: TreeLayout = dataclasses.field(default_factory=TreeLayout)
    gradient_boosting: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(
            "HybridConfig",
            [
                (
                    self.network_class in NETWORKS,
                    f"network_class must be one of {sorted(NETWORKS)}",
                    self.network_class,
                ),
                (isinstance(self.network, dict), "network must be a dict", self.network),
                (
                    isinstance(self.trees, TreeLayout),
                    "trees must be a TreeLayout",
                    type(self.trees).__name__,
                ),
            ],
        )

    def network_config(self) -> Settings:
        """The network's settings object."""
        return NETWORKS[self.network_class][1].from_dict(self.network)


class Hybrid(nn.Module):
    """A trained network and gradient-boosted trees on the network's own global features; the
    prediction is the mean of the two (:func:`blend_predictions`), or per target the network
    alone where its :attr:`network_weight` is 1.

    It speaks the inference interface of :class:`~rhoprop.models.base.Predictor`: the trees'
    raw outputs ride along as the last columns of :meth:`features`, and :meth:`decode` averages
    the decoded outputs, so MC-dropout draws vary the network's half only.
    """

    network_weight: torch.Tensor

    def __init__(self, config: HybridConfig, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.config = config
        cls = NETWORKS[config.network_class][0]
        self.network: MSA3DCNN | Ensemble = cls(config.network_config(), tasks)  # type: ignore[arg-type]
        self.trees = TreeEnsemble(config.trees, self.network.tasks)
        # per target, the network's share of the prediction: 0.5 (the mean) or 1 (the network
        # alone, where held-out data showed the trees hurt: rhoprop.train.hybrid)
        self.register_buffer("network_weight", torch.full((len(self.network.tasks),), 0.5))
        self.tasks: tuple[TaskSpec, ...] = self.network.tasks
        member = (
            self.network.config.member
            if isinstance(self.network, Ensemble)
            else self.network.config
        )
        if not member.extra_features:
            raise SettingsError(
                "a hybrid needs a network that reads global features (inputs density or "
                "density+structure); this one reads the image only"
            )

    @classmethod
    def from_parts(
        cls, network: MSA3DCNN | Ensemble, trees: TreeEnsemble, gradient_boosting: Mapping[str, Any]
    ) -> Hybrid:
        """A hybrid holding a trained ``network`` and fitted ``trees`` (same targets)."""
        if [t.name for t in trees.tasks] != [t.name for t in network.tasks]:
            raise SettingsError("the trees and the network must predict the same targets in order")
        config = HybridConfig(
            network_class=type(network).__name__,
            network=cast(Settings, network.config).to_dict(),
            trees=trees.layout,
            gradient_boosting=dict(gradient_boosting),
        )
        hybrid = cls(config, network.tasks)
        hybrid.network.load_state_dict(network.state_dict(), strict=True)
        hybrid.trees.load_state_dict(trees.state_dict(), strict=True)
        return hybrid

    @property
    def target_norm(self) -> Standardizer:
        """The network's target statistics."""
        return self.network.target_norm

    def batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, ...]:
        """The network's inputs, then the global features the trees read."""
        return (*self.network.batch_inputs(batch), batch["extra"])

    def features(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """Inputs -> the network's features with the trees' raw outputs appended (last axis)."""
        *net_inputs, extra = inputs
        assert extra is not None
        feats = self.network.features(*cast(list[Any], net_inputs))
        raw = self.trees(extra).to(feats.dtype)
        if feats.ndim == 3:  # an ensemble's (K, B, F)
            raw = raw.expand(feats.shape[0], -1, -1)
        return torch.cat([feats, raw], dim=-1)

    def heads_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's raw outputs per target, and the trees' raw outputs under ``"trees"``."""
        width = self.config.trees.n_outputs
        out = self.network.heads_forward(features[..., :-width])
        raw = features[..., -width:]
        return {**out, "trees": raw[0] if raw.ndim == 3 else raw}

    def forward(self, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Inputs -> raw outputs (see :meth:`heads_forward`)."""
        return self.heads_forward(self.features(*inputs))

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs -> per target the weighted mean (:attr:`network_weight`) of the network's
        and the trees' values and probabilities."""
        net = self.network.decode({t.name: outputs[t.name] for t in self.tasks})
        trees = self.trees.decode(outputs["trees"].to(torch.float64))
        out = {}
        for i, task in enumerate(self.tasks):
            w = self.network_weight[i].to(net[task.name].dtype)
            out[task.name] = w * net[task.name] + (1 - w) * trees[task.name].to(w.dtype)
        return out

    def weights(self) -> dict[str, float]:
        """The network's share of each target's prediction."""
        return {t.name: float(w) for t, w in zip(self.tasks, self.network_weight, strict=True)}

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Set the network's share of the named targets' predictions (each in [0, 1])."""
        names = [t.name for t in self.tasks]
        for name, w in weights.items():
            if name not in names or not 0.0 <= float(w) <= 1.0:
                raise SettingsError(
                    f"weight of {name!r} must be in [0, 1] for a target of the model, got {w!r}"
                )
            self.network_weight[names.index(name)] = float(w)

    def mc_dropout(self, enabled: bool) -> None:
        """MC dropout in the network (the trees are deterministic)."""
        self.network.mc_dropout(enabled)

    @property
    def num_parameters(self) -> int:
        """Trainable parameters (the network's; the trees are fitted, not trained)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
