"""Train an MSA-3DCNN on a dataset store: one call, same on CPU, one GPU, or many GPUs/nodes.

A run directory holds::

    train_config.json        the TrainConfig (a resumed run must match it, except epochs & devices)
    checkpoints/best-*.ckpt  best val_loss;  checkpoints/last.ckpt  for resuming after a kill
    logs/csv/version_*/metrics.csv, logs/tb/...  CSV and TensorBoard logs (one version per attempt)
    model/                   model.safetensors + model.json (the exported best model)
    run.json                 summary: dataset, split, epochs, best val metrics, timings

Checkpoints contain only tensors and plain Python values and are read with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

import rhoprop
from rhoprop.analysis.metrics import classification_metrics, regression_metrics
from rhoprop.data import DensityDataset
from rhoprop.data.composite import AnyStore
from rhoprop.errors import SettingsError
from rhoprop.grid import augment
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.models.ensemble import Ensemble
from rhoprop.models.features import reads_tier
from rhoprop.models.heads import TaskSpec
from rhoprop.models.hybrid import Hybrid
from rhoprop.models.io import ModelBundle, save_model
from rhoprop.models.msa3dcnn import MSA3DCNN, build_model
from rhoprop.settings import atomic_write_text
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import (
    channel_statistics,
    dataset_label,
    label_matrix,
    open_store,
    select_tasks,
    side_features,
    split_ids,
    store_extra_features,
    store_tiers,
    training_profile,
)
from rhoprop.train.inference import (
    Predictions,
    calibration_scales,
    interval_coverage,
    predict_batches,
)
from rhoprop.train.module import RhopropModule
from rhoprop.train.predict import magnetic_elements
from rhoprop.train.runs import GROUPS_FILE, RUN_FILE, finished_run

CONFIG_FILE = "train_config.json"
LAST_CHECKPOINT = "last.ckpt"
MODEL_DIR = "model"


@dataclasses.dataclass
class TrainResult:
    """What a finished training run produced.

    Attributes:
        run_dir: the run directory.
        model_dir: the exported model (``run_dir/model``).
        targets: names of the targets learned.
        num_parameters: trainable parameters of the network.
        epochs: epochs completed (over all attempts when resumed).
        best_epoch: epoch of the best ``val_loss`` (0-based), the exported weights.
        val: validation metrics of the exported model (``{target: {"mae"|"acc": value}}``).
        resumed: True when the run continued from ``checkpoints/last.ckpt``.
        seconds: wall time of this call.
        finished: True when the run had already finished with these settings and nothing was
            trained (the other fields are those of that run, from ``run.json``).
    """

    run_dir: Path
    model_dir: Path
    targets: list[str]
    num_parameters: int
    epochs: int
    best_epoch: int
    val: dict[str, dict[str, float]]
    resumed: bool
    seconds: float
    finished: bool = False


def loader(
    store: AnyStore,
    ids: list[str],
    tasks: list[TaskSpec],
    config: TrainConfig,
    *,
    shuffle: bool,
    augment: Callable[[np.ndarray], np.ndarray] | None = None,
    tiers: Sequence[str] | None = None,
) -> DataLoader:
    """A DataLoader of DensityDataset dicts streaming from the store, with the global features
    (:func:`~rhoprop.train.data.store_extra_features`) a model of ``config.inputs`` reads
    (``tiers``: a trained model's tiers, for inputs with ``+tier``; default the store's)."""
    extra = (
        store_extra_features(store, ids, config.inputs, tiers=tiers)
        if config.inputs != "image"
        else None
    )
    dataset = DensityDataset(store, ids, [t.name for t in tasks], augment=augment, extra=extra)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        drop_last=False,
    )


class RepeatableAugment:
    """Random cubic rotation (mode ``cube``) or periodic roll (mode ``cell``) of a (C, n, n, n)
    tensor.

    The same operations as :class:`rhoprop.grid.augment.RandomAugment`, with the random stream
    seeded from (seed, DDP rank, DataLoader worker id) instead of the process id, so that a run
    with the same seed and the same number of workers draws the same augmentations.
    """

    def __init__(self, settings: StandardizeSettings, seed: int) -> None:
        self.mode = settings.mode
        self.seed = seed
        self._key: tuple[int, int] | None = None
        self._rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(C, n, n, n) -> (C, n, n, n), randomly rotated (cube) or rolled (cell)."""
        info = torch.utils.data.get_worker_info()
        key = (int(os.environ.get("RANK", 0)), info.id if info is not None else -1)
        if key != self._key:
            self._key, self._rng = key, np.random.default_rng([self.seed, key[0], key[1] + 1])
        if self.mode == "cube":
            return augment.apply_op(
                x, augment.CUBIC_OPS[self._rng.integers(len(augment.CUBIC_OPS))], "cube"
            )
        return augment.roll(x, [int(s) for s in self._rng.integers(0, x.shape[-1], 3)])


def make_augment(settings: StandardizeSettings, config: TrainConfig) -> RepeatableAugment | None:
    """The training augmentation for ``settings`` (None when ``config.augment`` is off)."""
    return RepeatableAugment(settings, config.seed) if config.augment else None


def _prepare_run(out: Path, config: TrainConfig) -> bool:
    """Write or check ``train_config.json``; True when ``checkpoints/last.ckpt`` exists to resume
    from."""
    cfg_path = out / CONFIG_FILE
    if cfg_path.is_file():
        config.check_resumable_from(TrainConfig.from_json(cfg_path))
    elif out.exists() and any(out.iterdir()):
        raise SettingsError(
            f"--out {out} exists and is not a rhoprop run (no {CONFIG_FILE}); choose an empty or "
            "new folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    config.to_json(cfg_path)
    return (out / "checkpoints" / LAST_CHECKPOINT).is_file()


def make_trainer(
    out: Path, config: TrainConfig, steps_per_epoch: int
) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Lightning Trainer writing checkpoints (best val_loss, last) and CSV/TensorBoard logs under
    ``out``."""
    _quiet_lightning()
    best = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best-{epoch:03d}",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
    )
    # Lightning's save_last writes last.ckpt only when a best checkpoint is written: after the last
    # improvement it stopped, so a killed run resumed epochs behind. Its own callback, every epoch:
    last = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks: list[L.Callback] = [best, last, LearningRateMonitor(logging_interval="epoch")]
    if not config.progress:  # no bar: a line per epoch, so that a log shows how far a run is
        callbacks.append(EpochLines(out))
    if config.patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=config.patience))
    loggers = [CSVLogger(out / "logs", name="csv"), TensorBoardLogger(out / "logs", name="tb")]
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.lightning_devices(),
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,  # type: ignore[arg-type]
        callbacks=callbacks,
        logger=loggers,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        num_sanity_val_steps=0,
        sync_batchnorm=_sync_batchnorm(config),
    )
    if isinstance(trainer.accelerator, CPUAccelerator) and config.precision == "16-mixed":
        raise SettingsError(
            "precision '16-mixed' needs a GPU; on a CPU use '32-true' or 'bf16-mixed'"
        )
    return trainer, best


class EpochLines(L.Callback):
    """One line per finished epoch on stderr (rank 0): epoch, losses, seconds, the run folder."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {**trainer.logged_metrics, **trainer.callback_metrics}
        parts = [f"{k} {float(metrics[k]):.4g}" for k in ("train_loss", "val_loss") if k in metrics]
        print(
            f"{time.strftime('%H:%M:%S')} {self.out}: epoch {trainer.current_epoch + 1}/"
            f"{trainer.max_epochs} {', '.join(parts)} ({time.monotonic() - self.start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )


def _sync_batchnorm(config: TrainConfig) -> bool:
    """BatchNorm statistics synchronized across processes: for distributed runs on GPUs (PyTorch's
    SyncBatchNorm needs CUDA; distributed CPU runs keep per-process statistics)."""
    gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    devices = config.lightning_devices()
    several = (isinstance(devices, list) and len(devices) > 1) or (
        isinstance(devices, int) and devices > 1
    )
    return gpu and (several or config.num_nodes > 1 or config.strategy.startswith("ddp"))


def _quiet_lightning() -> None:
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.seed",
        "lightning.fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*The number of training batches.*",
        ".*isinstance.treespec, LeafSpec.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        # per-target metrics are already summed across ranks by torchmetrics:
        ".*It is recommended to use `self.log.*sync_dist=True.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def load_checkpoint_weights(module: RhopropModule, path: str | os.PathLike[str]) -> None:
    """Load the weights of a Lightning checkpoint into ``module`` (``weights_only=True``,
    strict)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"], strict=True)


def _epoch_of(path: str) -> int:
    match = re.search(r"epoch=(\d+)", Path(path).name)
    return int(match.group(1)) if match else -1


def summarize(preds: Predictions, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Short per-target metrics (MAE or accuracy) of predictions against an (N, T) label matrix."""
    out: dict[str, dict[str, float]] = {}
    for j, task in enumerate(preds.tasks):
        if task.is_regression:
            out[task.name] = {"mae": regression_metrics(labels[:, j], preds.mean[task.name])["mae"]}
        else:
            out[task.name] = {
                "acc": classification_metrics(labels[:, j], preds.mean[task.name])["accuracy"]
            }
    return out


def train(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    parts: dict[str, list[str]] | None = None,
) -> TrainResult | None:
    """Train on ``dataset`` (a store path or built-in name) into run directory ``out``.

    The train/val/test ids are the dataset's split ``config.split``, or ``parts`` when given (a
    cross-validation fold). Resumes from ``out/checkpoints/last.ckpt`` when it exists (after a
    kill, or to extend ``epochs``). Returns the result on the main process and None on the other
    DDP ranks.
    """
    config = config or TrainConfig()
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        if config.ensemble > 1:
            return _train_ensemble(dataset, Path(out), config, parts)
        return _train(dataset, Path(out), config, parts)
    finally:
        torch.set_num_threads(threads)


MEMBERS_DIR = "members"


def _finished_result(out: Path, done: dict[str, Any], t0: float) -> TrainResult | None:
    """The result of a run that had finished with the same settings (None on DDP ranks > 0)."""
    if int(os.environ.get("RANK", 0)) != 0:
        return None
    keep = {f.name for f in dataclasses.fields(TrainResult)} - {
        "run_dir",
        "model_dir",
        "seconds",
        "finished",
    }
    return TrainResult(
        run_dir=out,
        model_dir=out / MODEL_DIR,
        seconds=time.perf_counter() - t0,
        finished=True,
        **{k: done[k] for k in keep},
    )


def _train_ensemble(
    dataset: str | os.PathLike[str],
    out: Path,
    config: TrainConfig,
    parts: dict[str, list[str]] | None,
) -> TrainResult | None:
    """Train ``config.ensemble`` members (seeds ``seed + k``) as runs ``out/members/<k>``, then
    export their average as ``out/model``, calibrated on the validation part like a single model."""
    from rhoprop.models.io import load_model

    t0 = time.perf_counter()
    store = open_store(dataset)
    done = finished_run(out, config.to_dict(), store.path)
    if done is not None:  # rerun of a finished run with the same settings: nothing to train
        return _finished_result(out, done, t0)
    parts = parts if parts is not None else split_ids(store, config.split)
    tasks = select_tasks(store, config.targets, parts["train"])
    resume = _prepare_run(out, config)
    results = []
    for k in range(config.ensemble):
        member = dataclasses.replace(config, ensemble=1, seed=config.seed + k)
        results.append(_train(dataset, out / MEMBERS_DIR / str(k), member, parts))
    if any(r is None for r in results):  # not rank zero
        return None
    members = [load_model(r.model_dir).model for r in results if r is not None]
    ensemble = Ensemble.from_members(members)  # type: ignore[arg-type]
    model_dir, val = export_model(
        out, ensemble, store, parts, tasks, config, dataset_label(dataset), best_epoch=-1
    )
    result = TrainResult(
        run_dir=out, model_dir=model_dir, targets=[t.name for t in tasks],
        num_parameters=ensemble.num_parameters,
        epochs=max(r.epochs for r in results if r is not None), best_epoch=-1, val=val,
        resumed=resume, seconds=time.perf_counter() - t0,
    )  # fmt: skip
    _write_summary(out, result, dataset, store, parts, config)
    return result


def build_fitted_model(
    store: AnyStore, train_ids: list[str], tasks: list[TaskSpec], config: TrainConfig
) -> MSA3DCNN:
    """The MSA-3DCNN ``config`` describes for ``store``'s tensors, its normalizers fitted on
    ``train_ids``: targets, side features, input channels and global features (training-set
    statistics in buffers)."""
    settings = store.settings
    overrides: dict[str, Any] = {} if config.dropout is None else {"dropout": config.dropout}
    extra = (
        store_extra_features(store, train_ids, config.inputs) if config.inputs != "image" else None
    )
    model = build_model(
        config.model, tasks, in_channels=settings.n_channels,
        side_features=settings.n_side_features,
        extra_features=0 if extra is None else extra.shape[1], **overrides,
    )  # fmt: skip
    labels = label_matrix(store, train_ids, tasks)
    model.target_norm.fit(torch.from_numpy(labels), [t.is_regression for t in tasks])
    if settings.n_side_features:
        model.side_norm.fit(torch.from_numpy(side_features(store, train_ids)))
    if model.input_norm is not None:
        mean, std = channel_statistics(store, train_ids)
        model.input_norm.mean.copy_(torch.from_numpy(mean))
        model.input_norm.std.copy_(torch.from_numpy(std))
    if model.extra_norm is not None and extra is not None:
        model.extra_norm.fit(torch.from_numpy(extra))
    return model


def _train(
    dataset: str | os.PathLike[str],
    out: Path,
    config: TrainConfig,
    parts: dict[str, list[str]] | None,
) -> TrainResult | None:
    t0 = time.perf_counter()
    store = open_store(dataset)
    done = finished_run(out, config.to_dict(), store.path)
    if done is not None:  # rerun of a finished run with the same settings: nothing to train
        return _finished_result(out, done, t0)
    parts = parts if parts is not None else split_ids(store, config.split)
    tasks = select_tasks(store, config.targets, parts["train"])
    resume = _prepare_run(out, config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    settings = store.settings
    model = build_fitted_model(store, parts["train"], tasks, config)
    module = RhopropModule(model, config)
    train_loader = loader(
        store, parts["train"], tasks, config, shuffle=True, augment=make_augment(settings, config)
    )
    val_loader = loader(store, parts["val"], tasks, config, shuffle=False)
    trainer, best = make_trainer(out, config, len(train_loader))
    last = out / "checkpoints" / LAST_CHECKPOINT
    trainer.fit(
        module, train_loader, val_loader, ckpt_path=str(last) if resume else None, weights_only=True
    )
    if not trainer.is_global_zero:
        return None
    best_path = best.best_model_path or str(out / "checkpoints" / LAST_CHECKPOINT)
    load_checkpoint_weights(module, best_path)
    model_dir, val = export_model(
        out,
        model,
        store,
        parts,
        tasks,
        config,
        dataset_label(dataset),
        best_epoch=_epoch_of(best_path),
    )
    result = TrainResult(
        run_dir=out,
        model_dir=model_dir,
        targets=[t.name for t in tasks],
        num_parameters=model.num_parameters,
        epochs=trainer.current_epoch,
        best_epoch=_epoch_of(best_path),
        val=val,
        resumed=resume,
        seconds=time.perf_counter() - t0,
    )
    _write_summary(out, result, dataset, store, parts, config)
    return result


def _write_summary(
    out: Path, result: TrainResult, dataset: str | os.PathLike[str], store: AnyStore,
    parts: dict[str, list[str]], config: TrainConfig,
) -> None:  # fmt: skip
    """Write ``out/run.json``: the result, the dataset and split sizes, the TrainConfig."""
    summary = {
        **{
            k: v for k, v in dataclasses.asdict(result).items() if k not in ("run_dir", "model_dir")
        },
        "dataset": dataset_label(dataset),
        "dataset_path": str(store.path),
        "split": config.split,
        "n_train": len(parts["train"]),
        "n_val": len(parts["val"]),
        "n_test": len(parts["test"]),
        "rhoprop_version": rhoprop.__version__,
        "train_config": config.to_dict(),
    }
    atomic_write_text(out / RUN_FILE, json.dumps(summary, indent=2) + "\n")


def calibrate(
    model: MSA3DCNN | Ensemble | Hybrid,
    store: AnyStore,
    ids: list[str],
    tasks: list[TaskSpec],
    config: TrainConfig,
    calibrated_on: str,
    tiers: list[str] | None = None,
) -> tuple[dict[str, Any], Predictions, np.ndarray]:
    """MC-dropout predictions of ``ids`` (a validation part), the split-conformal 90 % interval
    scale per regression target from them, and their labels: (uncertainty record, predictions,
    labels). ``calibrated_on`` names the part in the record."""
    labels = label_matrix(store, ids, tasks)
    preds = predict_batches(
        model,
        loader(store, ids, tasks, config, shuffle=False, tiers=tiers),
        mc_samples=config.mc_samples,
        seed=config.seed,
    )
    per_target, raw_coverage = {}, {}
    for j, task in enumerate(tasks):
        if task.is_regression:
            per_target[task.name] = (preds.mean[task.name], preds.std[task.name], labels[:, j])
            raw_coverage[task.name] = interval_coverage(*per_target[task.name])
    uncertainty = {
        "method": "mc_dropout",
        "calibration": (
            "split-conformal quantile per target, at least the quantile of all targets pooled"
        ),
        "samples": config.mc_samples,
        "interval": 0.9,
        "scale": calibration_scales(per_target),
        "calibrated_on": calibrated_on,
        "val_coverage_uncalibrated": raw_coverage,
    }
    return uncertainty, preds, labels


def export_model(
    out: Path,
    model: MSA3DCNN | Ensemble,
    store: AnyStore,
    parts: dict[str, list[str]],
    tasks: list[TaskSpec],
    config: TrainConfig,
    dataset: str,
    best_epoch: int,
) -> tuple[Path, dict[str, dict[str, float]]]:
    """Calibrate MC-dropout intervals on the val split and write ``out/model``; returns (path, val
    metrics)."""
    model = model.cpu().eval()
    uncertainty, preds, val_labels = calibrate(
        model, store, parts["val"], tasks, config, f"{config.split}/val"
    )
    bundle = ModelBundle(
        model=model,
        standardize=store.settings,
        training={
            **training_profile(store, parts["train"], dataset),
            "magnetic_elements": magnetic_elements(store, parts["train"]),
        },
        uncertainty=uncertainty,
        extra={
            "train_config": config.to_dict(),
            "best_epoch": best_epoch,
            "split": config.split,
            "inputs": config.inputs,
            **({"tiers": store_tiers(store)} if reads_tier(config.inputs) else {}),
        },
    )
    model_dir = save_model(out / MODEL_DIR, bundle)
    return model_dir, summarize(preds, val_labels)


def train_groups(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    groups: list[list[str]],
    config: TrainConfig | None = None,
) -> list[TrainResult | None]:
    """Train one model per target group into ``out/group_<i>``; ``out/groups.json`` lists them."""
    config = config or TrainConfig()
    out = Path(out)
    runs = [f"group_{i}" for i in range(len(groups))]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / GROUPS_FILE, json.dumps({"groups": groups, "runs": runs}, indent=2) + "\n"
    )
    return [
        train(dataset, out / run, dataclasses.replace(config, targets=tuple(group)))
        for run, group in zip(runs, groups, strict=True)
    ]
