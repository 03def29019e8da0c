"""Evaluate a trained run on a split part: metrics per target, baselines beside them, pictures.

Writes into ``RUN_DIR/eval/<split>_<part>/`` (or ``--out``): ``metrics.csv`` and ``metrics.json``
(one row per model and target), ``predictions.csv`` (per sample: truth, prediction, uncertainty,
90% interval), ``parity_<target>.png``, ``roc_<target>.png``, ``confusion_<target>.png`` and
``learning_curves.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rhoprop.analysis.metrics import classification_metrics, predicted_classes, regression_metrics
from rhoprop.analysis.plots import (
    confusion_plot,
    learning_curves_plot,
    parity_plot,
    read_learning_curves,
    roc_plot,
)
from rhoprop.errors import SettingsError
from rhoprop.models.heads import TaskSpec
from rhoprop.models.io import load_model
from rhoprop.settings import atomic_write_text
from rhoprop.train.baselines import BaselineSettings, load_cached, mean_predictions, run_baselines
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import dataset_label, label_matrix, open_store
from rhoprop.train.fit import loader
from rhoprop.train.inference import interval90, interval_coverage, predict_batches
from rhoprop.train.runs import model_dirs, read_run, run_dir_of

COLUMNS = ["model", "target", "kind", "unit", "n", "r2", "mae", "rmse", "accuracy", "f1", "roc_auc",
           "coverage90", "coverage90_uncalibrated"]


@dataclasses.dataclass
class EvaluationReport:
    """Metrics of a run (and baselines) on one part of a split.

    Attributes:
        rows: one dict per (model, target) with the :data:`COLUMNS`.
        out_dir: where the CSV/JSON files and figures were written.
        figures: the PNG files written.
        dataset: dataset evaluated on; split: split name; part: ``train``/``val``/``test``.
        n_samples: samples in that part.
    """

    rows: list[dict[str, Any]]
    out_dir: Path
    figures: list[Path]
    dataset: str
    split: str
    part: str
    n_samples: int

    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame with the :data:`COLUMNS`."""
        return pd.DataFrame(self.rows, columns=COLUMNS)


def metric_row(model: str, task: TaskSpec, truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """One metrics row for a model's predictions of one target (NaN for metrics of the other kind)."""
    row: dict[str, Any] = {c: math.nan for c in COLUMNS}
    row.update(model=model, target=task.name, kind=task.kind, unit=task.unit)
    row.update(regression_metrics(truth, pred) if task.is_regression else classification_metrics(truth, pred))
    return row


def evaluate_run(
    run: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None = None,
    split: str | None = None,
    part: str = "test",
    out: str | os.PathLike[str] | None = None,
    baselines: bool = False,
    baseline_settings: BaselineSettings | None = None,
    mc_samples: int | None = None,
    batch_size: int = 16,
) -> EvaluationReport:
    """Evaluate every model of a run (one, or one per target group) on ``part`` of a split.

    ``dataset`` and ``split`` default to the run's own. With ``baselines`` the mean, composition
    and CGCNN baselines are trained on the same split (cached in ``RUN_DIR/baselines``); cached
    baselines for the same samples are always included; the mean predictor always is.
    """
    if part not in ("train", "val", "test"):
        raise SettingsError(f"part must be 'train', 'val' or 'test', got {part!r}")
    dirs = model_dirs(run)
    run_dir = Path(run) if Path(run).is_dir() and not (Path(run) / "model.json").is_file() else None
    rows: list[dict[str, Any]] = []
    prediction_frames: list[pd.DataFrame] = []
    figures: list[Path] = []
    out_dir: Path | None = Path(out) if out is not None else None
    n_samples = 0
    for mdir in dirs:
        bundle = load_model(mdir)
        own_run = run_dir_of(mdir)
        info = read_run(own_run) if own_run else {}
        ds = dataset if dataset is not None else info.get("dataset_path") or bundle.training.get("dataset")
        if ds is None:
            raise SettingsError(f"{mdir} does not record its dataset; pass --dataset")
        sp = split or bundle.extra.get("split", "default")
        store = open_store(ds)
        bundle.check_standardize(store.settings)
        parts = store.splits(sp)
        ids = parts[part]
        if not ids:
            raise SettingsError(f"split {sp!r} of {store.path} has no {part} samples")
        n_samples = len(ids)
        tasks = [t for t in bundle.tasks if t.name in store.targets]
        if out_dir is None:  # the built-in model's folder is inside the installed package: use the cwd
            base = Path("eval-builtin") if str(run) == "builtin" else run_dir or own_run or mdir
            out_dir = base / "eval" / f"{sp}_{part}"
        out_dir.mkdir(parents=True, exist_ok=True)
        labels = label_matrix(store, ids, tasks)
        config = TrainConfig(batch_size=batch_size, num_workers=0, targets=tuple(t.name for t in tasks))
        mc = mc_samples or int(bundle.uncertainty.get("samples", 30))
        preds = predict_batches(bundle.model, loader(store, ids, tasks, config, shuffle=False),
                                mc_samples=mc)
        order = np.argsort(preds.indices)
        scales = bundle.uncertainty.get("scale", {})
        for j, task in enumerate(tasks):
            mean, std = preds.mean[task.name][order], preds.std[task.name][order]
            truth = labels[:, j]
            if task.is_regression:  # intervals from the model's own mean, then clipped (as in predict)
                scale = float(scales.get(task.name, 1.0))
                coverage = interval_coverage(mean, std, truth, scale, task.minimum)
                coverage_raw = interval_coverage(mean, std, truth, minimum=task.minimum)
                lo, hi = interval90(mean, std, scale, task.minimum)
                mean = task.clip(mean)
            row = metric_row("rhoprop", task, truth, mean)
            frame = pd.DataFrame({"id": ids, "target": task.name, "truth": truth})
            if task.is_regression:
                row["coverage90"], row["coverage90_uncalibrated"] = coverage, coverage_raw
                frame = frame.assign(pred=mean, std=scale * std, lo90=lo, hi90=hi)
                if row["n"] > 0:  # a target without labels among these samples gets no picture
                    figures.append(out_dir / f"parity_{task.name}.png")
                    parity_plot(figures[-1], truth, mean, task.name, task.unit, interval=(mean - lo, hi - mean),
                                title=f"{task.name}: rhoprop, {sp}/{part}")
            else:
                classes = task.class_names
                frame = frame.assign(pred=predicted_classes(mean),
                                     prob=mean if mean.ndim == 1 else mean.max(1),
                                     std=std if std.ndim == 1 else std.max(1))
                if row["n"] > 0:
                    figures.append(out_dir / f"roc_{task.name}.png")
                    roc_plot(figures[-1], truth, mean, task.name, classes)
                    figures.append(out_dir / f"confusion_{task.name}.png")
                    confusion_plot(figures[-1], truth, mean, task.name, classes)
            rows.append(row)
            prediction_frames.append(frame)
        rows.extend(_baseline_rows(own_run or out_dir, tasks, store, sp, part, ids, labels, baselines,
                                   baseline_settings, ds))
        if own_run is not None:
            csvs = sorted((own_run / "logs" / "csv").glob("version_*/metrics.csv"),
                          key=lambda p: int(p.parent.name.split("_")[1]))
            curves = read_learning_curves(csvs)
            if not curves.empty:
                name = "learning_curves.png" if len(dirs) == 1 else f"learning_curves_{own_run.name}.png"
                figures.append(out_dir / name)
                learning_curves_plot(figures[-1], curves, [t.name for t in tasks])
    assert out_dir is not None  # dirs is never empty
    report = EvaluationReport(rows=rows, out_dir=out_dir, figures=figures, dataset=dataset_label(ds),
                              split=sp, part=part, n_samples=n_samples)
    table = report.table()
    atomic_write_text(out_dir / "metrics.csv", table.to_csv(index=False))
    meta = {"dataset": report.dataset, "split": sp, "part": part, "n_samples": n_samples,
            "models": [str(d) for d in dirs], "rows": json.loads(table.to_json(orient="records"))}
    atomic_write_text(out_dir / "metrics.json", json.dumps(meta, indent=2) + "\n")
    atomic_write_text(out_dir / "predictions.csv", pd.concat(prediction_frames).to_csv(index=False))
    return report


def _baseline_rows(
    run_dir: Path,
    tasks: list[TaskSpec],
    store: Any,
    split: str,
    part: str,
    ids: list[str],
    labels: np.ndarray,
    train_baselines: bool,
    settings: BaselineSettings | None,
    dataset: str | os.PathLike[str],
) -> list[dict[str, Any]]:
    cached = load_cached(run_dir, split, part, ids)
    wanted = [t.name for t in tasks]
    if train_baselines and (cached is None or any(t not in cached["targets"] for t in wanted)):
        cached = run_baselines(run_dir, tasks, dataset, split, part, settings)
    if cached is not None:
        models = {m: {t: np.asarray(v) for t, v in preds.items()} for m, preds in cached["models"].items()}
    else:
        train_labels = label_matrix(store, store.splits(split)["train"], tasks)
        models = {"mean": mean_predictions(tasks, train_labels, len(ids))}
    rows = []
    for name, preds in models.items():
        for j, task in enumerate(tasks):
            if task.name in preds:
                pred = task.clip(preds[task.name]) if task.is_regression else preds[task.name]
                rows.append(metric_row(name, task, labels[:, j], pred))
    return rows
