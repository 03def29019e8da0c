"""Typed training settings, saved as ``train_config.json`` beside every run."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from rhoprop.errors import SettingsError
from rhoprop.models.features import INPUTS
from rhoprop.models.losses import REGRESSION_LOSSES, WEIGHTINGS
from rhoprop.models.msa3dcnn import MODEL_SIZES
from rhoprop.settings import Settings, check_fields, is_int

PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
SCHEDULES = ("cosine", "constant")
TRAIN_INPUTS = (*INPUTS, "image")

#: Fields that may change when a killed or finished run is resumed (the rest must match).
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "patience",
        "devices",
        "accelerator",
        "strategy",
        "num_nodes",
        "num_workers",
        "precision",
        "progress",
        "mc_samples",
        "threads",
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig(Settings):
    """How a model is trained.

    Attributes:
        targets: targets to learn; empty means every labelled target of the dataset.
        model: model size (``tiny``, ``small``, ``default``, ``large``).
        inputs: what the model reads besides the image (:mod:`rhoprop.models.features`):
            ``density`` (the tensor and its physical invariants, the paper's setting),
            ``density+structure`` (also electrons per atom and composition from the file's
            structure), or ``image`` (the tensor alone, no global branch).
        ensemble: number of networks trained from seeds ``seed, seed + 1, ...`` and averaged
            (a deep ensemble; 1: a single network). Each member is its own resumable run in
            ``RUN_DIR/members/<k>``.
        dropout: dropout of the embedding and heads; None keeps the size's default.
        epochs: maximum number of epochs.
        batch_size: samples per batch (per device).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        schedule: ``cosine`` (cosine decay over ``epochs``) or ``constant``.
        weighting: task weighting, ``equal`` or ``uncertainty`` (learned, Kendall et al. 2018).
        regression_loss: ``l1`` (the default since 2026-12-06: lower cross-validated MAE than
            ``mse`` on 31 of 34 target-variant pairs, ``docs/model.md``), ``mse`` or ``huber``, on
            standardized regression targets.
        augment: random periodic translations and point-group operations (rhoprop.grid.augment).
        seed: seed of everything random (a CPU run with the same seed is repeatable).
        patience: epochs without improvement of ``val_loss`` before stopping early (0: never).
        monitor_min_labels: least number of validation labels a target needs to count in
            ``val_loss``, the sum of per-target losses that checkpoints and early stopping watch.
            A target with fewer (say 5 phonon labels among 1,000 materials) is still trained,
            logged and evaluated, but its noisy validation loss cannot pick the epoch. When no
            target has that many, every target counts. 0: every target counts (the rule before
            2026-12-06).
        split: name of the dataset split (``rhoprop dataset split``) giving train/val/test ids.
        accelerator: ``auto``, ``cpu``, ``gpu``...
        devices: ``auto``, a number of devices (``"2"``), or a comma list of device ids (``"0,1"``).
        strategy: Lightning strategy: ``auto``, ``ddp``, ``ddp_spawn``, ``fsdp``...
        num_nodes: number of nodes (multi-node DDP under torchrun or SLURM).
        precision: ``32-true``, ``16-mixed`` or ``bf16-mixed`` (mixed precision on GPU).
        num_workers: DataLoader worker processes per device.
        mc_samples: stochastic forward passes for MC-dropout uncertainties.
        progress: show a progress bar.
        threads: CPU threads of torch in each process (None: torch's default). On a busy machine
            or for tiny models, 1 thread is often several times faster than more.
    """

    targets: tuple[str, ...] = ()
    model: str = "default"
    inputs: str = "density+structure"
    ensemble: int = 1
    dropout: float | None = None
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    weighting: str = "equal"
    regression_loss: str = "l1"
    augment: bool = True
    seed: int = 0
    patience: int = 10
    monitor_min_labels: int = 10
    split: str = "default"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    num_workers: int = 0
    mc_samples: int = 30
    progress: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))
        object.__setattr__(self, "devices", str(self.devices))
        checks = [
            (self.model in MODEL_SIZES, f"model must be one of {sorted(MODEL_SIZES)}", self.model),
            (self.inputs in TRAIN_INPUTS, f"inputs must be one of {TRAIN_INPUTS}", self.inputs),
            (
                is_int(self.ensemble) and self.ensemble >= 1,
                "ensemble must be an int >= 1",
                self.ensemble,
            ),
            (
                self.dropout is None or 0.0 <= self.dropout < 1.0,
                "dropout must be in [0, 1) or null",
                self.dropout,
            ),
            (is_int(self.epochs) and self.epochs >= 1, "epochs must be an int >= 1", self.epochs),
            (
                is_int(self.batch_size) and self.batch_size >= 1,
                "batch_size must be an int >= 1",
                self.batch_size,
            ),
            (self.lr > 0, "lr must be > 0", self.lr),
            (self.weight_decay >= 0, "weight_decay must be >= 0", self.weight_decay),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}", self.schedule),
            (
                self.weighting in WEIGHTINGS,
                f"weighting must be one of {WEIGHTINGS}",
                self.weighting,
            ),
            (
                self.regression_loss in REGRESSION_LOSSES,
                f"regression_loss must be one of {REGRESSION_LOSSES}",
                self.regression_loss,
            ),
            (isinstance(self.augment, bool), "augment must be true or false", self.augment),
            (is_int(self.seed), "seed must be an int", self.seed),
            (
                is_int(self.patience) and self.patience >= 0,
                "patience must be an int >= 0",
                self.patience,
            ),
            (
                is_int(self.monitor_min_labels) and self.monitor_min_labels >= 0,
                "monitor_min_labels must be an int >= 0",
                self.monitor_min_labels,
            ),
            (
                self.accelerator in ACCELERATORS,
                f"accelerator must be one of {ACCELERATORS}",
                self.accelerator,
            ),
            (
                _valid_devices(self.devices),
                "devices must be 'auto', a count like '2' or ids like '0,1'",
                self.devices,
            ),
            (
                is_int(self.num_nodes) and self.num_nodes >= 1,
                "num_nodes must be an int >= 1",
                self.num_nodes,
            ),
            (
                self.precision in PRECISIONS,
                f"precision must be one of {PRECISIONS}",
                self.precision,
            ),
            (
                is_int(self.num_workers) and self.num_workers >= 0,
                "num_workers must be an int >= 0",
                self.num_workers,
            ),
            (
                is_int(self.mc_samples) and self.mc_samples >= 1,
                "mc_samples must be an int >= 1",
                self.mc_samples,
            ),
            (
                self.threads is None or (is_int(self.threads) and self.threads >= 1),
                "threads must be an int >= 1 or null",
                self.threads,
            ),
        ]
        check_fields("TrainConfig", checks)

    def lightning_devices(self) -> int | list[int] | str:
        """``devices`` as Lightning wants it: ``"auto"``, a count, or a list of ids."""
        if self.devices == "auto":
            return "auto"
        if "," in self.devices:
            return [int(d) for d in self.devices.split(",") if d.strip()]
        return int(self.devices)

    def check_resumable_from(self, old: TrainConfig) -> None:
        """Raise SettingsError when resuming a run made with ``old`` would change what is
        trained."""
        mine, theirs = self.to_dict(), old.to_dict()
        diff = sorted(k for k in mine if mine[k] != theirs[k] and k not in RESUMABLE_CHANGES)
        if diff:
            detail = ", ".join(f"{k}: run {theirs[k]!r} vs now {mine[k]!r}" for k in diff)
            raise SettingsError(
                f"cannot resume: the run was started with other settings ({detail}); use the run's "
                "train_config.json, or another --out for a new run"
            )


def _valid_devices(devices: str) -> bool:
    if devices == "auto":
        return True
    parts = [p.strip() for p in devices.split(",")] if "," in devices else [devices.strip()]
    return (
        all(p.isdigit() for p in parts if p)
        and any(parts)
        and ("," in devices or int(parts[0]) >= 1)
    )


def load_train_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a JSON file (or the defaults), with the non-None ``overrides`` applied."""
    base = TrainConfig.from_json(path) if path is not None else TrainConfig()
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise SettingsError(f"unknown TrainConfig option(s) {unknown}")
    return TrainConfig.from_dict({**base.to_dict(), **given})
