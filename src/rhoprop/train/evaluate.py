"""Evaluate a trained run on a split part: metrics per target, baselines beside them, pictures.

:func:`evaluate_models` computes (nothing written but the baselines' cache) and returns an
:class:`EvaluationReport`; :func:`write_evaluation` writes into ``RUN_DIR/eval/<split>_<part>/`` (or
``--out``): ``metrics.csv`` and ``metrics.json`` (one row per model and target), ``predictions.csv``
(per sample: truth, prediction, uncertainty, 90% interval), ``parity_<target>.png``,
``roc_<target>.png``, ``confusion_<target>.png`` and ``learning_curves.png``.
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
from rhoprop.data.composite import AnyStore
from rhoprop.data.labels import consistent_predictions, gated_samples
from rhoprop.errors import SettingsError
from rhoprop.models.heads import TaskSpec
from rhoprop.models.io import ModelBundle, load_model
from rhoprop.progress import Steps, progress
from rhoprop.settings import atomic_write_text
from rhoprop.train.baselines import BaselineSettings, load_cached, mean_predictions, run_baselines
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import dataset_label, label_matrix, open_store
from rhoprop.train.fit import loader
from rhoprop.train.inference import interval90, interval_coverage, predict_batches
from rhoprop.train.runs import model_dirs, read_run, run_dir_of

COLUMNS = [
    "model",
    "target",
    "kind",
    "unit",
    "n",
    "r2",
    "mae",
    "rmse",
    "accuracy",
    "f1",
    "roc_auc",
    "coverage90",
    "coverage90_uncalibrated",
]


@dataclasses.dataclass
class ModelEvaluation:
    """One model's results on one part of a split (computed, nothing written).

    Attributes:
        model_dir: the model directory.
        dataset: the dataset evaluated on (its label); split, part: which samples.
        ids: the samples, in order.
        tasks: the targets evaluated (the model's targets the dataset has).
        rows: one metrics dict per (model, target), rhoprop first, then the baselines
            (:data:`COLUMNS`).
        predictions: per sample and target: truth, prediction, uncertainty, 90 % interval
            (regression) or class, probability (classification).
        probabilities: per target, rhoprop's raw outputs aligned with ``ids`` (regression: the
            clipped prediction; classification: (N,) or (N, K) probabilities), for the figures.
        truth: (N, T) labels aligned with ``ids`` and ``tasks``.
        intervals: per regression target, the (lower, upper) 90 % bounds.
        curves: the training curves of the model's own run (empty when it has none).
        run_name: the model's run directory name (for figure names when a run has several models).
    """

    model_dir: Path
    dataset: str
    split: str
    part: str
    ids: list[str]
    tasks: list[TaskSpec]
    rows: list[dict[str, Any]]
    predictions: pd.DataFrame
    probabilities: dict[str, np.ndarray]
    truth: np.ndarray
    intervals: dict[str, tuple[np.ndarray, np.ndarray]]
    curves: pd.DataFrame
    run_name: str = ""


@dataclasses.dataclass
class EvaluationReport:
    """Metrics of a run (and baselines) on one part of a split.

    Attributes:
        evaluations: one :class:`ModelEvaluation` per model of the run (one per target group).
        out_dir: where the CSV/JSON files and figures were written (None before writing).
        figures: the PNG files written.
    """

    evaluations: list[ModelEvaluation]
    out_dir: Path | None = None
    figures: list[Path] = dataclasses.field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every model's metrics rows, with the dataset each was evaluated on."""
        return [{**row, "dataset": ev.dataset} for ev in self.evaluations for row in ev.rows]

    @property
    def dataset(self) -> str:
        """The dataset(s) evaluated on, comma-separated when the models used different ones."""
        return ", ".join(dict.fromkeys(ev.dataset for ev in self.evaluations))

    @property
    def split(self) -> str:
        """The split name(s)."""
        return ", ".join(dict.fromkeys(ev.split for ev in self.evaluations))

    @property
    def part(self) -> str:
        """The part of the split."""
        return self.evaluations[0].part

    @property
    def n_samples(self) -> int:
        """Samples in the evaluated part (of the largest model's dataset)."""
        return max(len(ev.ids) for ev in self.evaluations)

    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame with the :data:`COLUMNS` and the dataset."""
        return pd.DataFrame(self.rows, columns=[*COLUMNS, "dataset"])


def metric_row(model: str, task: TaskSpec, truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """One metrics row for a model's predictions of one target (NaN for metrics of the other
    kind)."""
    row: dict[str, Any] = {c: math.nan for c in COLUMNS}
    row.update(model=model, target=task.name, kind=task.kind, unit=task.unit)
    row.update(
        regression_metrics(truth, pred)
        if task.is_regression
        else classification_metrics(truth, pred)
    )
    return row


def evaluate_models(
    run: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None = None,
    split: str | None = None,
    part: str = "test",
    baselines: bool = False,
    baseline_settings: BaselineSettings | None = None,
    mc_samples: int | None = None,
    batch_size: int = 16,
    show_progress: bool = True,
) -> EvaluationReport:
    """Evaluate every model of a run (one, or one per target group) on ``part`` of a split; returns
    the results without writing them (trained baselines are cached in ``RUN_DIR/baselines``).

    ``dataset`` and ``split`` default to each model's own. With ``baselines`` the mean, composition
    and CGCNN baselines are trained on the same split; cached baselines for the same samples are
    always included; the mean predictor always is. ``show_progress``: a bar on a terminal, a line
    per model and stage (predictions, baselines) on standard error otherwise.
    """
    if part not in ("train", "val", "test"):
        raise SettingsError(f"part must be 'train', 'val' or 'test', got {part!r}")
    dirs = model_dirs(run)
    evaluations = []
    with progress("evaluate", total=2 * len(dirs), enabled=show_progress) as steps:
        for mdir in dirs:
            evaluations.append(
                _evaluate_model(
                    mdir,
                    dataset,
                    split,
                    part,
                    baselines,
                    baseline_settings,
                    mc_samples,
                    batch_size,
                    steps,
                )
            )
    return EvaluationReport(evaluations)


def model_store(
    mdir: Path,
    bundle: ModelBundle,
    dataset: str | os.PathLike[str] | None = None,
    split: str | None = None,
) -> tuple[str | os.PathLike[str], str, AnyStore]:
    """The dataset a model is evaluated or extended on (``dataset``, else its run's, else the
    one its model.json records), the split name (``split``, else the model's) and the opened
    store; refuses a store standardized differently from the model's training data."""
    own_run = run_dir_of(mdir)
    info = read_run(own_run) if own_run else {}
    ds = (
        dataset
        if dataset is not None
        else info.get("dataset_path") or bundle.training.get("dataset")
    )
    if ds is None:
        raise SettingsError(f"{mdir} does not record its dataset; pass --dataset")
    sp = split or str(bundle.extra.get("split", "default"))
    store = open_store(ds)
    bundle.check_standardize(store.settings)
    return ds, sp, store


def _evaluate_model(
    mdir: Path,
    dataset: str | os.PathLike[str] | None,
    split: str | None,
    part: str,
    baselines: bool,
    baseline_settings: BaselineSettings | None,
    mc_samples: int | None,
    batch_size: int,
    steps: Steps,
) -> ModelEvaluation:
    """One model of :func:`evaluate_models`; advances ``steps`` after predictions and baselines."""
    bundle = load_model(mdir)
    ds, sp, store = model_store(mdir, bundle, dataset, split)
    own_run = run_dir_of(mdir)  # the baselines are cached in it
    ids = store.splits(sp)[part]
    if not ids:
        raise SettingsError(f"split {sp!r} of {store.path} has no {part} samples")
    tasks = [t for t in bundle.tasks if t.name in store.targets]
    labels = label_matrix(store, ids, tasks)
    config = TrainConfig(
        batch_size=batch_size,
        num_workers=0,
        targets=tuple(t.name for t in tasks),
        inputs=bundle.extra.get("inputs", "image"),
    )
    mc = mc_samples or int(bundle.uncertainty.get("samples", 30))
    preds = predict_batches(
        bundle.model,
        loader(store, ids, tasks, config, shuffle=False, tiers=bundle.extra.get("tiers")),
        mc_samples=mc,
    )
    order = np.argsort(preds.indices)
    scales = bundle.uncertainty.get("scale", {})
    rows, frames, outputs, intervals = [], [], {}, {}
    raw = {t.name: preds.mean[t.name][order] for t in tasks}
    final, gates = consistent_predictions(tasks, raw), gated_samples(tasks, raw)
    for j, task in enumerate(tasks):
        mean, std = raw[task.name], preds.std[task.name][order]
        truth = labels[:, j]
        frame = pd.DataFrame({"id": ids, "target": task.name, "truth": truth})
        if task.is_regression:  # intervals from the model's own mean, then clipped (as in predict)
            scale, gated = float(scales.get(task.name, 1.0)), gates.get(task.name)
            low, high = task.minimum, task.maximum
            coverage = interval_coverage(mean, std, truth, scale, low, gated, high)
            coverage_raw = interval_coverage(mean, std, truth, 1.0, low, gated, high)
            lo, hi = interval90(mean, std, scale, low, gated, high)
            mean = final[task.name]
            row = metric_row("rhoprop", task, truth, mean)
            row["coverage90"], row["coverage90_uncalibrated"] = coverage, coverage_raw
            frame = frame.assign(pred=mean, std=scale * std, lo90=lo, hi90=hi)
            intervals[task.name] = (lo, hi)
        else:
            row = metric_row("rhoprop", task, truth, mean)
            frame = frame.assign(
                pred=predicted_classes(mean),
                prob=mean if mean.ndim == 1 else mean.max(1),
                std=std if std.ndim == 1 else std.max(1),
            )
        outputs[task.name] = mean
        rows.append(row)
        frames.append(frame)
    steps.advance(description=f"evaluate {mdir.name}: predictions")
    rows.extend(
        _baseline_rows(
            own_run or Path(mdir),
            tasks,
            store,
            sp,
            part,
            ids,
            labels,
            baselines,
            baseline_settings,
            ds,
        )
    )
    curves = pd.DataFrame()
    if own_run is not None:
        csvs = sorted(
            (own_run / "logs" / "csv").glob("version_*/metrics.csv"),
            key=lambda p: int(p.parent.name.split("_")[1]),
        )
        curves = read_learning_curves(csvs)
    steps.advance(description=f"evaluate {mdir.name}: baselines")
    return ModelEvaluation(
        model_dir=mdir, dataset=dataset_label(ds), split=sp, part=part, ids=list(ids),
        tasks=tasks, rows=rows, predictions=pd.concat(frames), probabilities=outputs,
        truth=labels, intervals=intervals, curves=curves,
        run_name=own_run.name if own_run else "",
    )  # fmt: skip


def write_evaluation(report: EvaluationReport, out_dir: str | os.PathLike[str]) -> EvaluationReport:
    """Write ``metrics.csv``, ``metrics.json``, ``predictions.csv`` and the figures (parity, ROC,
    confusion, learning curves) of ``report`` into ``out_dir``; returns it with ``out_dir`` and
    ``figures`` filled in."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    several = len(report.evaluations) > 1
    for ev in report.evaluations:
        for j, task in enumerate(ev.tasks):
            truth, pred = ev.truth[:, j], ev.probabilities[task.name]
            if not np.isfinite(
                truth
            ).any():  # a target without labels among these samples gets no picture
                continue
            if task.is_regression:
                lo, hi = ev.intervals[task.name]
                figures.append(out / f"parity_{task.name}.png")
                parity_plot(
                    figures[-1],
                    truth,
                    pred,
                    task.name,
                    task.unit,
                    interval=(pred - lo, hi - pred),
                    title=f"{task.name}: rhoprop, {ev.dataset} {ev.split}/{ev.part}",
                )
            else:
                figures.append(out / f"roc_{task.name}.png")
                roc_plot(figures[-1], truth, pred, task.name, task.class_names)
                figures.append(out / f"confusion_{task.name}.png")
                confusion_plot(figures[-1], truth, pred, task.name, task.class_names)
        if not ev.curves.empty:
            figures.append(
                out
                / ("learning_curves.png" if not several else f"learning_curves_{ev.run_name}.png")
            )
            learning_curves_plot(figures[-1], ev.curves, [t.name for t in ev.tasks])
    table = report.table()
    atomic_write_text(out / "metrics.csv", table.to_csv(index=False))
    meta = {
        "datasets": {str(ev.model_dir): ev.dataset for ev in report.evaluations},
        "dataset": report.dataset,
        "split": report.split,
        "part": report.part,
        "n_samples": report.n_samples,
        "models": [str(ev.model_dir) for ev in report.evaluations],
        "rows": json.loads(table.to_json(orient="records")),
    }
    atomic_write_text(out / "metrics.json", json.dumps(meta, indent=2) + "\n")
    frames = [
        ev.predictions.assign(model=str(ev.model_dir)) if several else ev.predictions
        for ev in report.evaluations
    ]
    atomic_write_text(out / "predictions.csv", pd.concat(frames).to_csv(index=False))
    return dataclasses.replace(report, out_dir=out, figures=figures)


def default_out_dir(run: str | os.PathLike[str], report: EvaluationReport) -> Path:
    """Where ``rhoprop evaluate`` writes by default: ``RUN_DIR/eval/<split>_<part>`` (the built-in
    model: ``./eval-builtin/eval/...``, its folder being inside the installed package)."""
    run_path = Path(run)
    first = report.evaluations[0]
    if str(run) == "builtin":
        base = Path("eval-builtin")
    elif run_path.is_dir() and not (run_path / "model.json").is_file():
        base = run_path
    else:
        base = run_dir_of(first.model_dir) or first.model_dir
    return base / "eval" / f"{first.split}_{first.part}"


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
    """:func:`evaluate_models`, then :func:`write_evaluation` into ``out`` (default:
    :func:`default_out_dir`)."""
    report = evaluate_models(
        run, dataset, split, part, baselines, baseline_settings, mc_samples, batch_size
    )
    return write_evaluation(report, Path(out) if out is not None else default_out_dir(run, report))


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
        models = {
            m: {t: np.asarray(v) for t, v in preds.items()} for m, preds in cached["models"].items()
        }
    else:
        train_labels = label_matrix(store, store.splits(split)["train"], tasks)
        models = {"mean": mean_predictions(tasks, train_labels, len(ids))}
    rows = []
    for name, preds in models.items():
        final = consistent_predictions(tasks, preds)
        for j, task in enumerate(tasks):
            if task.name in final:
                rows.append(metric_row(name, task, labels[:, j], final[task.name]))
    return rows
