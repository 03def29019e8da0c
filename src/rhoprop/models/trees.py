"""Gradient-boosted trees as tensors: scikit-learn's fitted histogram gradient boosting, saved in
``model.safetensors`` beside a network and evaluated in torch.

scikit-learn models are normally saved with pickle, which runs code on loading and so must never
be used for files from elsewhere. :class:`TreeEnsemble` keeps only numbers (per node: the
feature, threshold, where a missing value goes, the children and the leaf value), so a hybrid model
(:mod:`rhoprop.models.hybrid`) loads like any other rhoprop model, and its predictions equal
scikit-learn's (tested to 1e-9). Numerical features only (rhoprop's global features have no
categorical column); NaN goes where the fitted tree sends missing values.

Output layout: one raw column per regression or binary target (the value; the log-odds of class 1),
``K`` columns per multiclass target (its class logits); :meth:`TreeEnsemble.decode` turns them into
values, probabilities and class probabilities as the networks' ``decode`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, check_fields, is_int

#: Logit given to a class the training labels never held (probability e^-30 against the others).
ABSENT_LOGIT = -30.0


@dataclasses.dataclass(frozen=True)
class TreeLayout(Settings):
    """Sizes of a :class:`TreeEnsemble`'s buffers (recorded in model.json, so the buffers can be
    allocated before the weights are read)."""

    n_nodes: int = 0
    n_trees: int = 0
    n_features: int = 1
    n_outputs: int = 1
    max_depth: int = 0

    def __post_init__(self) -> None:
        check_fields(
            "TreeLayout",
            [
                (is_int(self.n_nodes) and self.n_nodes >= 0, "n_nodes must be an int >= 0",
                 self.n_nodes),
                (is_int(self.n_trees) and self.n_trees >= 0, "n_trees must be an int >= 0",
                 self.n_trees),
                (is_int(self.n_features) and self.n_features >= 1,
                 "n_features must be an int >= 1", self.n_features),
                (is_int(self.n_outputs) and self.n_outputs >= 1, "n_outputs must be an int >= 1",
                 self.n_outputs),
                (is_int(self.max_depth) and self.max_depth >= 0, "max_depth must be an int >= 0",
                 self.max_depth),
            ],
        )  # fmt: skip


def output_columns(tasks: Sequence[TaskSpec]) -> list[tuple[int, int]]:
    """(first column, number of columns) of each target in the raw output."""
    spans, start = [], 0
    for task in tasks:
        width = task.n_outputs if task.kind == "multiclass" else 1
        spans.append((start, width))
        start += width
    return spans


class TreeEnsemble(nn.Module):
    """Every target's boosted trees in flat buffers; ``forward`` sums the leaves each sample
    reaches into its target's raw columns."""

    feature: torch.Tensor
    threshold: torch.Tensor
    missing_left: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    is_leaf: torch.Tensor
    value: torch.Tensor
    root: torch.Tensor
    column: torch.Tensor
    baseline: torch.Tensor

    def __init__(self, layout: TreeLayout, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.layout = layout
        self.tasks = tuple(tasks)
        self.spans = output_columns(self.tasks)
        width = sum(w for _, w in self.spans)
        if width != layout.n_outputs:
            raise SettingsError(
                f"TreeLayout.n_outputs is {layout.n_outputs} but the targets need {width} columns"
            )
        n, t = layout.n_nodes, layout.n_trees
        self.register_buffer("feature", torch.zeros(n, dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("missing_left", torch.zeros(n, dtype=torch.bool))
        self.register_buffer("left", torch.zeros(n, dtype=torch.int32))
        self.register_buffer("right", torch.zeros(n, dtype=torch.int32))
        self.register_buffer("is_leaf", torch.ones(n, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("root", torch.zeros(t, dtype=torch.int32))
        self.register_buffer("column", torch.zeros(t, dtype=torch.int32))
        self.register_buffer("baseline", torch.zeros(layout.n_outputs, dtype=torch.float64))

    @classmethod
    def from_fitted(cls, fitted: Sequence[Any], n_features: int) -> TreeEnsemble:
        """The trees of :func:`~rhoprop.train.baselines.fit_gradient_boosting`'s result (one
        :class:`~rhoprop.train.baselines.FittedTarget` per target, in output order)."""
        tasks = [f.task for f in fitted]
        spans = output_columns(tasks)
        baseline = np.zeros(sum(w for _, w in spans))
        nodes: list[np.ndarray] = []
        roots: list[int] = []
        columns: list[int] = []
        offset = 0
        for item, (start, width) in zip(fitted, spans, strict=True):
            task, model = item.task, item.model
            if model is None:  # a constant: the mean, or the one class seen
                if task.is_regression:
                    baseline[start] = item.constant
                elif task.kind == "binary":
                    baseline[start] = -ABSENT_LOGIT if int(item.constant) == 1 else ABSENT_LOGIT
                else:
                    baseline[start : start + width] = ABSENT_LOGIT
                    baseline[start + int(item.constant)] = 0.0
                continue
            base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
            if task.is_regression or task.kind == "binary":
                targets_of_tree = [start]
                baseline[start] = base[0]
            else:
                classes = [int(c) for c in model.classes_]
                baseline[start : start + width] = ABSENT_LOGIT
                if len(classes) == 2:  # scikit-learn's binary loss: log-odds of classes[1]
                    baseline[start + classes[0]] = 0.0
                    baseline[start + classes[1]] = base[0]
                    targets_of_tree = [start + classes[1]]
                else:
                    for k, c in enumerate(classes):
                        baseline[start + c] = base[k]
                    targets_of_tree = [start + c for c in classes]
            for iteration in model._predictors:
                for k, predictor in enumerate(iteration):
                    tree = predictor.nodes
                    if bool(np.any(tree["is_categorical"])):
                        raise SettingsError("categorical splits are not supported in rhoprop trees")
                    nodes.append(tree)
                    roots.append(offset)
                    columns.append(targets_of_tree[k])
                    offset += len(tree)
        layout = TreeLayout(
            n_nodes=offset,
            n_trees=len(roots),
            n_features=int(n_features),
            n_outputs=len(baseline),
            max_depth=max((int(t["depth"].max()) for t in nodes), default=0),
        )
        ensemble = cls(layout, tasks)
        if nodes:
            starts = np.repeat(np.asarray(roots), [len(t) for t in nodes])
            flat = np.concatenate(nodes)
            leaf = flat["is_leaf"].astype(bool)
            # children are indices within their tree: make them global (leaves point at themselves)
            own = np.arange(offset)
            left = np.where(leaf, own, flat["left"].astype(np.int64) + starts)
            right = np.where(leaf, own, flat["right"].astype(np.int64) + starts)
            ensemble.feature.copy_(torch.from_numpy(flat["feature_idx"].astype(np.int32)))
            # scikit-learn splits "every value vs missing" at +inf; the largest float sends every
            # finite value the same way and keeps the saved weights finite (load_model checks)
            big = np.finfo(np.float64).max
            threshold = np.nan_to_num(
                flat["num_threshold"].astype(np.float64), posinf=big, neginf=-big
            )
            ensemble.threshold.copy_(torch.from_numpy(threshold))
            ensemble.missing_left.copy_(torch.from_numpy(flat["missing_go_to_left"].astype(bool)))
            ensemble.left.copy_(torch.from_numpy(left.astype(np.int32)))
            ensemble.right.copy_(torch.from_numpy(right.astype(np.int32)))
            ensemble.is_leaf.copy_(torch.from_numpy(leaf))
            ensemble.value.copy_(torch.from_numpy(flat["value"].astype(np.float64)))
            ensemble.root.copy_(torch.as_tensor(roots, dtype=torch.int32))
            ensemble.column.copy_(torch.as_tensor(columns, dtype=torch.int32))
        ensemble.baseline.copy_(torch.from_numpy(baseline))
        return ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) features -> (B, n_outputs) float64 raw outputs (see the module docstring).

        The traversal runs in numpy on one thread: its gathers are small, and torch's thread
        pool made them 300x slower on a busy 2-core machine (2.5 s against 7 ms for one sample,
        measured). Inputs on a GPU are copied to the CPU and the result back."""
        if x.ndim != 2 or x.shape[1] != self.layout.n_features:
            raise SettingsError(
                f"the trees read {self.layout.n_features} features per sample, got shape "
                f"{tuple(x.shape)}"
            )
        xs = x.detach().to("cpu", torch.float64).numpy()
        out = np.repeat(self.baseline.detach().cpu().numpy()[None], len(xs), axis=0)
        if self.layout.n_trees and len(xs):
            feature, threshold = self.feature.cpu().numpy(), self.threshold.cpu().numpy()
            missing_left, value = self.missing_left.cpu().numpy(), self.value.cpu().numpy()
            left, right = self.left.cpu().numpy(), self.right.cpu().numpy()
            node = np.repeat(self.root.cpu().numpy().astype(np.int64)[None], len(xs), axis=0)
            rows = np.arange(len(xs))[:, None]
            for _ in range(self.layout.max_depth):
                v = xs[rows, feature[node]]
                with np.errstate(invalid="ignore"):
                    go_left = np.where(np.isnan(v), missing_left[node], v <= threshold[node])
                node = np.where(go_left, left[node], right[node])
            column = self.column.cpu().numpy()
            order = np.argsort(column, kind="stable")
            ordered = column[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            out[:, ordered[starts]] += np.add.reduceat(value[node][:, order], starts, axis=1)
        return torch.from_numpy(out).to(x.device)

    def decode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs -> regression (B,) values, binary (B,) P(class 1), multiclass (B, K)
        probabilities."""
        out: dict[str, torch.Tensor] = {}
        for task, (start, width) in zip(self.tasks, self.spans, strict=True):
            part = raw[:, start : start + width]
            if task.is_regression:
                out[task.name] = part[:, 0]
            elif task.kind == "binary":
                out[task.name] = torch.sigmoid(part[:, 0])
            else:
                out[task.name] = torch.softmax(part, dim=-1)
        return out
