"""The multi-task study's trainer on a dataset store: ``rhoprop.train`` plus test-split metrics.

Presets: ``quick`` (the ``small`` MSA-3DCNN, 10 epochs with early stopping, 2 seeds), sized for
about two hours on 2 CPU cores for ~10 targets on ~600 materials at n = 32 (about 40 trainings);
``full`` (the ``default`` model, 50 epochs with early stopping, 3 seeds) for a GPU; ``benchmark``
(the ``compact`` model with the recipe ``rhoprop benchmark`` scores: 60 cosine epochs, patience 15,
learning rate 2e-3, one thread), meant for ``--folds``, where its "all targets" training is the
benchmark's own network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rhoprop
from rhoprop.analysis.benchmark import NETWORK_RECIPE
from rhoprop.errors import SettingsError
from rhoprop.train.config import TrainConfig

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "model": "small",
        "epochs": 10,
        "batch_size": 16,
        "lr": 2e-3,
        "patience": 4,
        "mc_samples": 1,
    },
    "full": {
        "model": "default",
        "epochs": 50,
        "batch_size": 16,
        "lr": 1e-3,
        "patience": 10,
        "mc_samples": 1,
    },
    # the network recipe of `rhoprop benchmark` (docs/model.md): what the benchmark compares
    "benchmark": NETWORK_RECIPE,
}
PRESET_SEEDS: dict[str, tuple[int, ...]] = {
    "quick": (0, 1),
    "full": (0, 1, 2),
    "benchmark": (0, 1, 2),
}
#: TrainConfig fields that do not change what is learned, left out of the result cache key.
NOT_IN_KEY = (
    "targets",
    "seed",
    "progress",
    "accelerator",
    "devices",
    "strategy",
    "num_nodes",
    "num_workers",
)


def preset_config(preset: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a study preset (``quick`` or ``full``), ``overrides`` applied."""
    if preset not in PRESETS:
        raise SettingsError(f"unknown study preset {preset!r}; valid presets are {sorted(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_dict({**values, "progress": False})


def split_fingerprint(splits: dict[str, list[str]]) -> str:
    """A short hash of a split's train/val/test ids (results on another split never mix)."""
    payload = json.dumps({p: sorted(splits.get(p, [])) for p in ("train", "val", "test")})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclasses.dataclass
class RhopropTrainer:
    """``train_fn`` of :func:`rhoprop.analysis.study.run_study`: trains with ``rhoprop.train`` and
    returns metrics on the split's test part (point predictions, no MC dropout).

    Attributes:
        dataset: dataset store path or built-in name.
        base: training configuration; ``targets`` and ``seed`` are set per training.
        keep_checkpoints: keep each run's Lightning checkpoints (the exported model is always kept).
        only: train and test on the samples this selects (:func:`~rhoprop.train.data.subset_ids`,
            e.g. ``has_spin``); empty: every sample.
        folds: 0: every training uses the split ``base.split``; k >= 2: the replicate passed as
            ``seed`` is a fold of k-fold cross-validation grouped by formula (the folds and
            early-stopping formulas of ``rhoprop benchmark``, seed ``base.seed``), and every
            training uses ``base.seed``.
        splits: the train/val/test ids of ``base.split`` (read from the store), within ``only``;
            with ``folds``, those of fold 0.
        fold_splits: with ``folds``, the train/val/test ids of every fold.
    """

    dataset: str
    base: TrainConfig
    keep_checkpoints: bool = False
    only: str = ""
    folds: int = 0
    splits: dict[str, list[str]] = dataclasses.field(init=False, repr=False)
    fold_splits: list[dict[str, list[str]]] = dataclasses.field(init=False, repr=False)
    _labels: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from rhoprop.train.data import open_store

        store = open_store(self.dataset)
        self.fold_splits = []
        if self.folds:
            self._init_folds(store)
            return
        try:
            self.splits = store.splits(self.base.split)
        except (SettingsError, FileNotFoundError, KeyError) as exc:
            raise SettingsError(
                f"dataset {self.dataset} has no split {self.base.split!r} ({exc}); make one with "
                f"`rhoprop dataset split {self.dataset} --name {self.base.split}` or pass --split"
            ) from exc
        if self.only:
            from rhoprop.train.data import subset_ids

            keep = set(subset_ids(store, self.only))
            self.splits = {p: [i for i in ids if i in keep] for p, ids in self.splits.items()}
            self._size = len(keep)
        else:
            self._size = len(store)

    def _init_folds(self, store: Any) -> None:
        from rhoprop.analysis.benchmark import (
            BenchmarkSettings,
            composition_folds,
            fold_parts,
            formulas_of,
        )

        if not (isinstance(self.folds, int) and self.folds >= 2):
            raise SettingsError(f"folds must be 0 (a split) or an int >= 2, got {self.folds}")
        assignment = composition_folds(store, self.folds, self.base.seed, self.only)
        formulas = formulas_of(store)
        rule = BenchmarkSettings(folds=self.folds, seed=self.base.seed, models=("mean",))
        self.fold_splits = [fold_parts(assignment, formulas, k, rule) for k in range(self.folds)]
        empty = [k for k, parts in enumerate(self.fold_splits) if not parts["test"]]
        if empty:
            raise SettingsError(f"fold(s) {empty} of {self.folds} hold no sample; use fewer folds")
        self.splits = self.fold_splits[0]
        self._size = len(assignment)

    def labelled(self, parts: dict[str, list[str]], targets: Sequence[str]) -> dict[str, list[str]]:
        """``parts`` with the training and early-stopping materials that have no label of
        ``targets`` left out: a model of some targets is fitted on the materials labelled with
        them (a single-task bulk-modulus model on the EOS tier's materials, not on every density);
        the test part stays whole (metrics count the labelled ones)."""
        from rhoprop.train.data import open_store

        labels = open_store(self.dataset).labels
        wanted = [t for t in targets if t in labels.columns]
        has = labels[wanted].notna().any(axis=1)
        keep = set(has.index[has.to_numpy()])
        return {
            p: ids if p == "test" else [i for i in ids if i in keep] for p, ids in parts.items()
        }

    def labels_digest(self, targets: Sequence[str], replicate: int) -> str:
        """:func:`~rhoprop.train.data.labels_digest` of ``targets`` over every part of one
        replicate: what a training of them is fitted to and scored on (the study's result cache
        reuses a result only while it is unchanged)."""
        from rhoprop.train.data import labels_digest, open_store

        if self._labels is None:
            self._labels = open_store(self.dataset).labels
        parts = self.parts(int(replicate))
        ids = [i for p in ("train", "val", "test") for i in parts.get(p, [])]
        return labels_digest(self._labels, ids, sorted(targets))

    def parts(self, replicate: int) -> dict[str, list[str]]:
        """train / val / test ids of one replicate (the split, or fold ``replicate``)."""
        if not self.folds:
            return self.splits
        if not 0 <= replicate < self.folds:
            raise SettingsError(f"fold {replicate} does not exist (folds 0..{self.folds - 1})")
        return self.fold_splits[replicate]

    @property
    def config(self) -> dict[str, Any]:
        """What determines a result: trainer, dataset and split identity, the training settings."""
        train = {k: v for k, v in self.base.key_dict().items() if k not in NOT_IN_KEY}
        return {
            "trainer": "rhoprop.train",
            "rhoprop": rhoprop.__version__,
            "dataset": str(self.dataset),
            "samples": self._size,
            **({"only": self.only} if self.only else {}),
            **(
                {
                    "folds": self.folds,
                    "fold_ids": split_fingerprint(
                        {
                            p: [f"{k}:{i}" for k, s in enumerate(self.fold_splits) for i in s[p]]
                            for p in ("train", "val", "test")
                        }
                    ),
                }
                if self.folds
                else {"split": self.base.split, "split_ids": split_fingerprint(self.splits)}
            ),
            # since 2026-12-07 each model is fitted on the materials labelled with its targets
            "fit_on": "labelled",
            "train": train,
        }

    def __call__(self, targets: list[str], seed: int, out_dir: Path) -> dict[str, dict[str, float]]:
        """Train on ``targets`` with ``seed`` in ``out_dir/run``; return {target: test metrics}.

        With ``folds``, ``seed`` is the fold and the training seed is ``base.seed``."""
        from rhoprop.train.fit import train

        parts = self.labelled(self.parts(int(seed)), targets)
        training_seed = self.base.seed if self.folds else int(seed)
        config = dataclasses.replace(self.base, targets=tuple(targets), seed=training_seed)
        run = Path(out_dir) / "run"
        result = train(self.dataset, run, config, parts=parts)
        if result is None:  # a non-zero DDP rank: rank 0 reports
            return {}
        metrics = metrics_on(self.dataset, result.model_dir, parts["test"], config.batch_size)
        for name in metrics:
            metrics[name].update(epochs=float(result.epochs), best_epoch=float(result.best_epoch))
        if not self.keep_checkpoints:
            shutil.rmtree(run / "checkpoints", ignore_errors=True)
        return metrics


def metrics_on(
    dataset: str, model_dir: Path, ids: Sequence[str], batch_size: int = 16
) -> dict[str, dict[str, float]]:
    """Metrics of the model in ``model_dir`` on ``ids``: r2, mae, rmse or accuracy, f1, roc_auc."""
    from rhoprop.analysis.metrics import classification_metrics, regression_metrics
    from rhoprop.models.io import load_model
    from rhoprop.train.data import label_matrix, open_store
    from rhoprop.train.fit import loader
    from rhoprop.train.inference import predict_batches

    if not ids:
        raise SettingsError(
            f"the split of {dataset} has no test samples; the study evaluates on the test part"
        )
    bundle = load_model(model_dir)
    store = open_store(dataset)
    tasks = list(bundle.tasks)
    config = TrainConfig(
        batch_size=batch_size,
        num_workers=0,
        targets=tuple(t.name for t in tasks),
        inputs=bundle.extra.get("inputs", "image"),
    )
    tiers = bundle.extra.get("tiers")
    preds = predict_batches(
        bundle.model,
        loader(store, list(ids), tasks, config, shuffle=False, tiers=tiers),
        mc_samples=1,
    )
    order = np.argsort(preds.indices)
    labels = label_matrix(store, list(ids), tasks)
    out: dict[str, dict[str, float]] = {}
    for j, task in enumerate(tasks):
        pred = preds.mean[task.name][order]
        values = (
            regression_metrics(labels[:, j], pred)
            if task.is_regression
            else classification_metrics(labels[:, j], pred)
        )
        out[task.name] = {k: float(v) for k, v in values.items()}
    return out
