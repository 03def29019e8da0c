"""Train the baselines on a run's own split and predict one part of it, for the evaluation report.

Results are cached as ``RUN_DIR/baselines/<split>_<part>.json`` (ids, predictions per model and
target, settings), which ``rhoprop evaluate`` picks up when its samples are the same.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader

from rhoprop.data.composite import AnyStore
from rhoprop.errors import SettingsError
from rhoprop.models.baselines import (
    CGCNN,
    CGCNNConfig,
    GraphDataset,
    collate_graphs,
    composition_features,
)
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, atomic_write_text, check_fields, is_int, is_number
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import label_matrix, open_store, split_ids
from rhoprop.train.fit import load_checkpoint_weights, make_trainer
from rhoprop.train.inference import predict_batches
from rhoprop.train.module import RhopropModule

MODELS = ("mean", "composition", "cgcnn")


@dataclasses.dataclass(frozen=True)
class BaselineSettings(Settings):
    """Settings of the baselines (saved with their predictions).

    Attributes:
        models: which baselines to train (``mean``, ``composition``, ``cgcnn``).
        gb_max_iter: boosting iterations of the composition model.
        gb_learning_rate: learning rate of the composition model.
        cgcnn: architecture of the graph network.
        cgcnn_epochs: maximum epochs of the graph network.
        cgcnn_patience: early-stopping patience (epochs) of the graph network.
        cgcnn_batch_size: crystals per batch.
        cgcnn_lr: learning rate of the graph network.
        seed: seed of both models.
        threads: OpenMP threads of each gradient-boosting fit. One by default: the fits take
            seconds, and scikit-learn's OpenMP threads spin-wait for cores that other work (a DFT
            batch, a network's training) holds; measured on 2 busy cores, a 300-iteration fit on
            800 materials took 228 s with every core's thread and 2.6 s with one. The result does
            not depend on it.
    """

    models: tuple[str, ...] = MODELS
    gb_max_iter: int = 300
    gb_learning_rate: float = 0.05
    cgcnn: CGCNNConfig = dataclasses.field(default_factory=CGCNNConfig)
    cgcnn_epochs: int = 150
    cgcnn_patience: int = 30
    cgcnn_batch_size: int = 32
    cgcnn_lr: float = 2e-3
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        unknown = [m for m in self.models if m not in MODELS]
        check_fields(
            "BaselineSettings",
            [
                (not unknown, f"models must be among {MODELS}", unknown),
                (
                    is_int(self.gb_max_iter) and self.gb_max_iter >= 1,
                    "gb_max_iter must be an int >= 1",
                    self.gb_max_iter,
                ),
                (
                    is_number(self.gb_learning_rate) and self.gb_learning_rate > 0,
                    "gb_learning_rate must be > 0",
                    self.gb_learning_rate,
                ),
                (
                    isinstance(self.cgcnn, CGCNNConfig),
                    "cgcnn must be a CGCNNConfig",
                    type(self.cgcnn).__name__,
                ),
                (
                    is_int(self.cgcnn_epochs) and self.cgcnn_epochs >= 1,
                    "cgcnn_epochs must be an int >= 1",
                    self.cgcnn_epochs,
                ),
                (
                    is_int(self.cgcnn_patience) and self.cgcnn_patience >= 0,
                    "cgcnn_patience must be an int >= 0",
                    self.cgcnn_patience,
                ),
                (
                    is_int(self.cgcnn_batch_size) and self.cgcnn_batch_size >= 1,
                    "cgcnn_batch_size must be an int >= 1",
                    self.cgcnn_batch_size,
                ),
                (
                    is_number(self.cgcnn_lr) and self.cgcnn_lr > 0,
                    "cgcnn_lr must be > 0",
                    self.cgcnn_lr,
                ),
                (is_int(self.seed), "seed must be an int", self.seed),
                (
                    is_int(self.threads) and self.threads >= 1,
                    "threads must be an int >= 1",
                    self.threads,
                ),
            ],
        )


def mean_predictions(
    tasks: Sequence[TaskSpec], train_labels: np.ndarray, n: int
) -> dict[str, np.ndarray]:
    """The training mean (regression) or training class frequencies (classification), for ``n``
    samples."""
    out: dict[str, np.ndarray] = {}
    for j, task in enumerate(tasks):
        y = train_labels[:, j][np.isfinite(train_labels[:, j])]
        if task.is_regression:
            out[task.name] = np.full(n, float(y.mean()) if len(y) else np.nan)
        else:
            k = max(task.n_outputs, 2)
            freq = np.bincount(y.astype(int), minlength=k)[:k] / max(len(y), 1)
            out[task.name] = np.full(n, freq[1]) if task.kind == "binary" else np.tile(freq, (n, 1))
    return out


@dataclasses.dataclass
class FittedTarget:
    """One target's gradient boosting (:func:`fit_gradient_boosting`): the fitted scikit-learn
    model, or None where the training labels allow only a constant (``constant``: the mean of a
    regression target, the class of a classification target that has one class only)."""

    task: TaskSpec
    model: HistGradientBoostingRegressor | HistGradientBoostingClassifier | None
    constant: float = float("nan")


def fit_gradient_boosting(
    tasks: Sequence[TaskSpec],
    train_x: np.ndarray,
    train_labels: np.ndarray,
    settings: BaselineSettings,
) -> list[FittedTarget]:
    """Histogram gradient boosting, one model per target, fitted on the rows labelled for it
    (with ``settings.threads`` OpenMP threads): the model of the composition, density-invariants
    and hybrid baselines."""
    fitted: list[FittedTarget] = []
    with threadpool_limits(settings.threads, user_api="openmp"):
        for j, task in enumerate(tasks):
            mask = np.isfinite(train_labels[:, j])
            x, y = train_x[mask], train_labels[mask, j]
            params = dict(
                max_iter=settings.gb_max_iter,
                learning_rate=settings.gb_learning_rate,
                min_samples_leaf=int(np.clip(len(y) // 10, 2, 20)),
                random_state=settings.seed,
            )
            if task.is_regression:
                if len(y) >= 4:
                    fitted.append(
                        FittedTarget(task, HistGradientBoostingRegressor(**params).fit(x, y))
                    )
                else:
                    fitted.append(FittedTarget(task, None, float(y.mean())))
                continue
            codes = np.unique(y.astype(int))
            if len(codes) == 1:
                fitted.append(FittedTarget(task, None, float(codes[0])))
            else:
                model = HistGradientBoostingClassifier(**params).fit(x, y.astype(int))
                fitted.append(FittedTarget(task, model))
    return fitted


def gradient_boosting_predict(
    fitted: Sequence[FittedTarget], x: np.ndarray, threads: int = 1
) -> dict[str, np.ndarray]:
    """Raw predictions of :func:`fit_gradient_boosting`'s models for ``x``: regression values, the
    probability of class 1 (binary), class probabilities (multiclass)."""
    out: dict[str, np.ndarray] = {}
    with threadpool_limits(threads, user_api="openmp"):
        for item in fitted:
            task = item.task
            if task.is_regression:
                out[task.name] = (
                    item.model.predict(x) if item.model is not None
                    else np.full(len(x), item.constant)
                )  # fmt: skip
                continue
            k = max(task.n_outputs, 2)
            proba = np.zeros((len(x), k))
            if item.model is None:
                proba[:, int(item.constant)] = 1.0
            else:
                proba[:, item.model.classes_] = item.model.predict_proba(x)
            out[task.name] = proba[:, 1] if task.kind == "binary" else proba
    return out


def composition_predictions(
    tasks: Sequence[TaskSpec],
    train_x: np.ndarray,
    train_labels: np.ndarray,
    eval_x: np.ndarray,
    settings: BaselineSettings,
) -> dict[str, np.ndarray]:
    """Gradient boosting on composition features, one model per target, fitted on the labelled
    training rows (with ``settings.threads`` OpenMP threads)."""
    fitted = fit_gradient_boosting(tasks, train_x, train_labels, settings)
    return gradient_boosting_predict(fitted, eval_x, settings.threads)


def cgcnn_predictions(
    tasks: Sequence[TaskSpec],
    structures: dict[str, list[Any]],
    labels: dict[str, np.ndarray],
    settings: BaselineSettings,
    work_dir: Path,
    accelerator: str = "auto",
) -> dict[str, np.ndarray]:
    """Train a CGCNN on the ``train`` structures (early stopping on ``val``) and predict
    ``eval``."""
    shutil.rmtree(work_dir, ignore_errors=True)
    torch.manual_seed(settings.seed)
    model = CGCNN(settings.cgcnn, tasks)
    model.target_norm.fit(torch.from_numpy(labels["train"]), [t.is_regression for t in tasks])
    config = TrainConfig(
        model="tiny",
        epochs=settings.cgcnn_epochs,
        batch_size=settings.cgcnn_batch_size,
        lr=settings.cgcnn_lr,
        augment=False,
        seed=settings.seed,
        patience=settings.cgcnn_patience,
        accelerator=accelerator,
        devices="1",
        progress=False,
    )
    data = {
        part: GraphDataset(structures[part], labels[part], settings.cgcnn) for part in structures
    }
    loaders = {
        part: DataLoader(
            ds, batch_size=config.batch_size, shuffle=part == "train", collate_fn=collate_graphs
        )
        for part, ds in data.items()
    }
    module = RhopropModule(model, config)
    trainer, best = make_trainer(work_dir, config, len(loaders["train"]))
    trainer.fit(module, loaders["train"], loaders["val"])
    load_checkpoint_weights(module, best.best_model_path)
    preds = predict_batches(model.cpu(), loaders["eval"], mc_samples=1)
    order = np.argsort(preds.indices)
    return {k: v[order] for k, v in preds.mean.items()}


def cache_path(run_dir: str | os.PathLike[str], split: str, part: str) -> Path:
    """Where the baseline predictions of ``split``/``part`` of a run are cached."""
    return Path(run_dir) / "baselines" / f"{split}_{part}.json"


def run_baselines(
    run_dir: str | os.PathLike[str],
    tasks: Sequence[TaskSpec],
    dataset: str | os.PathLike[str],
    split: str = "default",
    part: str = "test",
    settings: BaselineSettings | None = None,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Train the baselines on ``split``'s train part of ``dataset`` and predict its ``part``; cache
    and return.

    Returns ``{"ids": [...], "models": {model: {target: list}}, "seconds": {model: s}, ...}``.
    """
    settings = settings or BaselineSettings()
    store: AnyStore = open_store(dataset)
    parts = split_ids(store, split)
    eval_ids = parts[part]
    if not eval_ids:
        raise SettingsError(
            f"split {split!r} of {store.path} has no {part} samples to evaluate baselines on"
        )
    labels = {p: label_matrix(store, parts[p], tasks) for p in ("train", "val")}
    labels["eval"] = label_matrix(store, eval_ids, tasks)
    structures = {
        p: [store.structure(i) for i in ids]
        for p, ids in (("train", parts["train"]), ("val", parts["val"]), ("eval", eval_ids))
    }
    models: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name in settings.models:
        t0 = time.perf_counter()
        if name == "mean":
            models[name] = mean_predictions(tasks, labels["train"], len(eval_ids))
        elif name == "composition":
            feats = {
                p: np.stack([composition_features(s) for s in structures[p]])
                for p in ("train", "eval")
            }
            models[name] = composition_predictions(
                tasks, feats["train"], labels["train"], feats["eval"], settings
            )
        else:
            work = Path(run_dir) / "baselines" / "cgcnn"
            models[name] = cgcnn_predictions(tasks, structures, labels, settings, work, accelerator)
        seconds[name] = time.perf_counter() - t0
    result = {
        "dataset": str(store.path),
        "split": split,
        "part": part,
        "ids": list(eval_ids),
        "targets": [t.name for t in tasks],
        "settings": settings.to_dict(),
        "seconds": seconds,
        "models": {
            m: {t: np.asarray(v).tolist() for t, v in preds.items()} for m, preds in models.items()
        },
    }
    atomic_write_text(cache_path(run_dir, split, part), json.dumps(result) + "\n")
    return result


def load_cached(
    run_dir: str | os.PathLike[str], split: str, part: str, ids: Sequence[str]
) -> dict[str, Any] | None:
    """Cached baseline predictions for exactly these ``ids`` (None when absent or for other
    samples)."""
    path = cache_path(run_dir, split, part)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("ids") == list(ids) else None
