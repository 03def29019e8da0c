"""Terminal tables (rich) and files for training, evaluation and prediction results."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rhoprop.models.heads import TaskSpec
from rhoprop.models.msa3dcnn import MODEL_SIZES, build_model
from rhoprop.settings import atomic_write_text
from rhoprop.train.evaluate import EvaluationReport
from rhoprop.train.fit import TrainResult
from rhoprop.train.predict import PredictionResult


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def print_sizes(console: Console) -> None:
    """Table of the model sizes with their parameter counts (one regression target, one channel)."""
    table = Table(title="MSA-3DCNN sizes")
    for col in (
        "size",
        "widths",
        "depths",
        "branches (kernel, dilation)",
        "total stride",
        "parameters",
    ):
        table.add_column(col)
    for name in MODEL_SIZES:
        model = build_model(name, [TaskSpec("y")])
        cfg = model.config
        table.add_row(
            name,
            str(cfg.widths),
            str(cfg.depths),
            str(cfg.branches),
            str(cfg.total_stride),
            f"{model.num_parameters:,}",
        )
    console.print(table)


def print_train_result(result: TrainResult, console: Console) -> None:
    """Summary of a finished run: model size, parameters, epochs, validation metrics of the exported
    model."""
    if result.finished:
        console.print(
            f"run {escape(str(result.run_dir))} already finished with these settings "
            f"({result.epochs} epoch(s), best epoch {result.best_epoch}): nothing trained; raise "
            "--epochs to train longer"
        )
    else:
        how = "resumed from checkpoints/last.ckpt" if result.resumed else "new run"
        console.print(
            f"trained {len(result.targets)} target(s), {result.num_parameters:,} parameters, "
            f"{result.epochs} epoch(s) ({how}), best epoch {result.best_epoch}, "
            f"{result.seconds:.0f} s"
        )
    table = Table(title="validation (exported model)")
    table.add_column("target")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for target, metrics in result.val.items():
        for key, value in metrics.items():
            table.add_row(target, key.upper(), _num(value))
    console.print(table)
    console.print(f"model: {escape(str(result.model_dir))}")


def print_evaluation(report: EvaluationReport, console: Console) -> None:
    """Two tables (regression, classification): a row per target and model, baselines under
    rhoprop."""
    frame = report.table()
    title = f"{report.dataset} {report.split}/{report.part} ({report.n_samples} samples)"
    kinds = [
        (
            "regression",
            frame[frame.kind == "regression"],
            [("R²", "r2"), ("MAE", "mae"), ("RMSE", "rmse"), ("in 90%", "coverage90")],
        ),
        (
            "classification",
            frame[frame.kind != "regression"],
            [("accuracy", "accuracy"), ("F1", "f1"), ("ROC-AUC", "roc_auc")],
        ),
    ]
    for kind, rows_of_kind, columns in kinds:
        if rows_of_kind.empty:
            continue
        table = Table(title=f"{title}: {kind}")
        table.add_column("target", no_wrap=True)
        table.add_column("model", no_wrap=True, min_width=11)
        table.add_column("n", justify="right", min_width=3)
        for header, _ in columns:
            table.add_column(header, justify="right")
        for target, rows in rows_of_kind.groupby("target", sort=False):
            for i, (_, row) in enumerate(rows.iterrows()):
                unit = row["unit"] if isinstance(row["unit"], str) and row["unit"] else ""
                label = {0: str(target), 1: f"({unit})" if unit else ""}.get(i, "")
                table.add_row(
                    label,
                    row["model"],
                    _num(row["n"]),
                    *(_num(row[key]) for _, key in columns),
                    end_section=i == len(rows) - 1,
                )
        console.print(table)
    console.print(
        f"written to {escape(str(report.out_dir))} (metrics.csv, metrics.json, predictions.csv, "
        f"{len(report.figures)} figures)"
    )


def write_predictions(
    result: PredictionResult, out: str | os.PathLike[str]
) -> tuple[Path, Path] | None:
    """Write ``out.csv`` (one row per file and target) and ``out.json`` (rows, warnings, errors),
    each atomically; an ``out`` ending in ``.csv`` or ``.json`` names the same pair. Without any
    prediction nothing is written (earlier results are not replaced by empty ones) and None is
    returned."""
    if not result.rows:
        return None
    out = Path(out)
    if out.suffix.lower() in (".csv", ".json"):
        out = out.with_suffix("")
    csv_path, json_path = out.with_name(out.name + ".csv"), out.with_name(out.name + ".json")
    atomic_write_text(csv_path, pd.DataFrame(result.rows).to_csv(index=False))
    data = {
        "models": [str(m) for m in result.models],
        "predictions": result.rows,
        "warnings": result.warnings,
        "errors": result.errors,
    }
    atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
    return csv_path, json_path


def print_predictions(
    result: PredictionResult, console: Console, err_console: Console | None = None
) -> None:
    """A table per file (target, value ± uncertainty, 90% interval or probability) on ``console``;
    the warnings and the files that could not be read as ``warning:``/``error:`` lines on
    ``err_console`` (default: ``console``)."""
    err_console = err_console or console
    by_file: dict[str, list[dict[str, Any]]] = {}
    for row in result.rows:
        by_file.setdefault(row["file"], []).append(row)
    for file, rows in by_file.items():
        table = Table(title=f"{escape(Path(file).name)}: {rows[0]['formula']}")
        for col in ("target", "prediction", "± (1σ)", "90% interval / probability", "unit"):
            table.add_column(col, justify="left" if col in ("target", "unit") else "right")
        for row in rows:
            if row["kind"] == "regression":
                interval = f"[{_num(row['lo90'])}, {_num(row['hi90'])}]"
                table.add_row(
                    row["target"],
                    _num(row["value"]),
                    _num(row["uncertainty"]),
                    interval,
                    row["unit"],
                )
            else:
                table.add_row(
                    row["target"],
                    str(row["value"]),
                    _num(row["uncertainty"]),
                    f"p = {row['probability']:.2f}",
                    "",
                )
        console.print(table)
        for note in result.warnings.get(file, []):
            err_console.print(f"[bold yellow]warning:[/] {escape(note)}", soft_wrap=True)
    for message in result.errors.values():
        err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
