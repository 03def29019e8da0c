"""Cross-tier transfer: does adding another tier's materials to training lower the error on one
tier's materials, the targets only that tier has included?

The question of the multi-task issue that the paper could not ask: the EOS tier (``gpaw-v1``)
holds the expensive targets (bulk modulus, elastic constants) for a few hundred materials; the
fast tier (``gpaw-scf-v1``) adds thousands of densities labelled with the cheap targets only. A
network trained on both shares its trunk between them and masks the labels a tier lacks.

:func:`run_transfer` answers with a learning curve over the number of added materials. It
cross-validates on the composite store with the benchmark's folds (grouped by reduced formula
over all tiers, so a formula computed in both tiers is never on both sides of a split): for every
fold the *base* tier's training and early-stopping parts stay fixed, a nested share of the other
tiers' training materials (``fractions``; 0 = the base tier alone; whole formulas, ordered by a
seeded hash) is added to the training part, and every model is scored on the base tier's test
part only. Each (model, fold, fraction) is cached like a benchmark step, so an interrupted run
continues where it stopped. Writing tables and figures is :func:`write_transfer`'s job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rhoprop.analysis.benchmark import (
    COLUMNS,
    MODELS,
    NETWORK_RECIPE,
    BenchmarkSettings,
    _fmt,
    _unit_hash,
    benchmark_tasks,
    composition_folds,
    fold_parts,
    fold_predictions,
    formulas_of,
    is_cached,
    score_rows,
)
from rhoprop.analysis.markdown import markdown_table
from rhoprop.data.composite import CompositeStore
from rhoprop.data.labels import consistent_predictions
from rhoprop.errors import SettingsError
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, atomic_write_text, check_fields, is_int, is_number
from rhoprop.train.baselines import BaselineSettings
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import dataset_label, label_matrix, open_store, subset_ids

TRANSFER_COLUMNS = (*COLUMNS, "fraction", "n_added")


@dataclasses.dataclass(frozen=True)
class TransferSettings(Settings):
    """What :func:`run_transfer` runs (saved beside its results).

    Attributes:
        base: the tier scored (a member store's name); empty: the first store named.
        fractions: shares of the other tiers' training formulas added to the base tier's training
            part (nested: each smaller set is part of the larger; 0 is the base tier alone).
        models: models trained at every fraction (names of the benchmark's models).
        targets: targets scored; empty: every target with at least ``min_labels`` labels in the
            base tier.
        folds, seed, min_labels, val_fraction: as in the benchmark
            (:class:`~rhoprop.analysis.benchmark.BenchmarkSettings`); the early-stopping part is
            the base tier's validation formulas at every fraction.
        baselines: settings of the gradient-boosting and CGCNN baselines.
        train: training settings of the MSA-3DCNN variants (``inputs`` and ``seed`` set per run).
        only: study the samples this selects (:func:`~rhoprop.train.data.subset_ids`; e.g.
            ``ids:FILE`` pins the study to fixed materials while the stores grow); empty: every
            sample.
    """

    base: str = ""
    fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    models: tuple[str, ...] = ("mean", "composition", "msa3dcnn-density+structure")
    targets: tuple[str, ...] = ()
    folds: int = 5
    seed: int = 0
    min_labels: int = 30
    val_fraction: float = 0.15
    baselines: BaselineSettings = dataclasses.field(default_factory=BaselineSettings)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(**NETWORK_RECIPE, progress=False)
    )
    only: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "targets", tuple(self.targets))
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise SettingsError(
                f"TransferSettings: unknown or no model(s) {unknown or list(self.models)}; valid "
                f"models are {list(MODELS)}"
            )
        fractions = self.fractions
        check_fields(
            "TransferSettings",
            [
                (is_int(self.folds) and self.folds >= 2, "folds must be an int >= 2", self.folds),
                (
                    bool(fractions)
                    and all(0.0 <= f <= 1.0 for f in fractions)
                    and len(set(fractions)) == len(fractions),
                    "fractions must be distinct shares in [0, 1], e.g. 0,0.25,0.5,1",
                    fractions,
                ),
                (
                    is_number(self.val_fraction) and 0.0 < self.val_fraction < 0.5,
                    "val_fraction must be in (0, 0.5)",
                    self.val_fraction,
                ),
                (
                    is_int(self.min_labels) and self.min_labels >= 1,
                    "min_labels must be an int >= 1",
                    self.min_labels,
                ),
            ],
        )

    def benchmark(self) -> BenchmarkSettings:
        """The benchmark settings every step runs with (folds, seeds, model settings)."""
        return BenchmarkSettings(
            folds=self.folds, seed=self.seed, models=self.models, targets=self.targets,
            min_labels=self.min_labels, val_fraction=self.val_fraction,
            train_fractions=(1.0,), curve_models=(), baselines=self.baselines, train=self.train,
            only=self.only,
        )  # fmt: skip


@dataclasses.dataclass
class TransferResult:
    """A row per model, target, fold and fraction (:data:`TRANSFER_COLUMNS`), scored on the base
    tier's part of every test fold."""

    dataset: str
    base: str
    added: list[str]
    settings: TransferSettings
    rows: pd.DataFrame
    seconds: dict[str, float]

    def summary(self) -> pd.DataFrame:
        """Per model, target and fraction: mean and std over folds, and the change against the
        same model on the base tier alone, paired over folds."""
        return transfer_summary(self.rows)


def added_part(
    ids: Sequence[str], formulas: dict[str, str], fraction: float, seed: int
) -> list[str]:
    """The share ``fraction`` of the formulas of ``ids`` (whole formulas, first in a seeded hash
    order, so a smaller share is part of a larger one); none at 0."""
    if fraction <= 0.0:
        return []
    if fraction >= 1.0:
        return list(ids)
    groups = sorted({formulas[i] for i in ids}, key=lambda f: _unit_hash(f"added:{seed}:{f}"))
    keep = set(groups[: round(fraction * len(groups))])
    return [i for i in ids if formulas[i] in keep]


def transfer_parts(
    folds: dict[str, int],
    formulas: dict[str, str],
    tier_of: dict[str, str],
    base: str,
    fold: int,
    fraction: float,
    settings: TransferSettings,
) -> dict[str, list[str]]:
    """train / val / test ids of one fold at one fraction: the base tier's parts of the
    benchmark's fold, plus ``fraction`` of the other tiers' training formulas in train (their
    early-stopping formulas are never added, so validation and training never share a formula)."""
    whole = fold_parts(folds, formulas, fold, settings.benchmark())
    mine = {p: [i for i in ids if tier_of[i] == base] for p, ids in whole.items()}
    others = [i for i in whole["train"] if tier_of[i] != base]
    mine["train"] = mine["train"] + added_part(others, formulas, fraction, settings.seed)
    return mine


def transfer_tasks(store: CompositeStore, base: str, settings: TransferSettings) -> list[TaskSpec]:
    """The targets scored: ``settings.targets``, or those with ``min_labels`` labels in the base
    tier."""
    chosen = subset_ids(store, settings.only)
    in_base = [i for i in chosen if store.tier(i) == base]
    return benchmark_tasks(store, settings.benchmark(), in_base, f" in tier {base}")


def run_transfer(
    dataset: str,
    work_dir: str | Path,
    settings: TransferSettings | None = None,
    on_step: Callable[[str], None] | None = None,
    cached_only: bool = False,
) -> TransferResult:
    """Train every model of ``settings`` at every fraction on every fold of ``dataset`` (two or
    more stores, e.g. ``"gpaw-v1,gpaw-scf-v1"``) and score it on the base tier's test part.

    Each (model, fold, fraction) is computed once and kept in ``work_dir/cache`` (keyed by the
    settings, targets and ids), so a rerun continues where an interrupted one stopped.
    ``on_step`` receives a line per finished step. ``cached_only``: train nothing, and score each
    (model, fraction) whose every fold is already in the cache (a report of a run still going, or
    one stopped part-way).
    """
    settings = settings or TransferSettings()
    store = open_store(dataset)
    if not isinstance(store, CompositeStore):
        raise SettingsError(
            f"a transfer study needs two or more stores, e.g. gpaw-v1,gpaw-scf-v1; got {dataset}"
        )
    base = settings.base or store.tiers[0]
    if base not in store.tiers:
        raise SettingsError(f"base tier {base!r} is not one of the stores {store.tiers}")
    work = Path(work_dir)
    bench = settings.benchmark()
    tasks = transfer_tasks(store, base, settings)
    folds = composition_folds(store, settings.folds, settings.seed, settings.only)
    formulas = formulas_of(store)
    tier_of = {i: store.tier(i) for i in store.ids}
    label = dataset_label(dataset)
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for fraction in sorted(settings.fractions):
        for model in settings.models:
            every = [
                transfer_parts(folds, formulas, tier_of, base, fold, fraction, settings)
                for fold in range(settings.folds)
            ]
            tags = [f"fold{fold}-added{fraction:g}" for fold in range(settings.folds)]
            if cached_only and not all(
                is_cached(model, store, tasks, p, bench, work, tag)
                for p, tag in zip(every, tags, strict=True)
            ):
                continue
            for fold, parts in enumerate(every):
                if not parts["test"]:
                    raise SettingsError(
                        f"fold {fold} of {settings.folds} holds no material of tier {base}; use "
                        "fewer folds"
                    )
            abouts = [{"fold": k, "fraction": fraction} for k in range(settings.folds)]
            computed = fold_predictions(
                model, store, str(dataset), tasks, every, bench, work, tags, abouts
            )
            for fold, (parts, (preds, elapsed)) in enumerate(zip(every, computed, strict=True)):
                seconds[model] = seconds.get(model, 0.0) + elapsed
                fit = label_matrix(store, parts["train"] + parts["val"], tasks)
                n_train = {t.name: int(np.isfinite(fit[:, j]).sum()) for j, t in enumerate(tasks)}
                truth = label_matrix(store, parts["test"], tasks)
                preds = consistent_predictions(tasks, preds)
                n_added = sum(tier_of[i] != base for i in parts["train"])
                for row in score_rows(label, model, fold, tasks, truth, preds, n_train):
                    rows.append({**row, "fraction": fraction, "n_added": n_added})
                if on_step is not None:
                    on_step(
                        f"{model} fold {fold} + {fraction:g} of the other tiers "
                        f"({n_added} materials): {elapsed:.1f} s"
                    )
    frame = pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))
    added = [t for t in store.tiers if t != base]
    return TransferResult(label, base, added, settings, frame, seconds)


def transfer_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model, target and fraction: mean and std over folds of MAE, R² and ROC-AUC, the mean
    number of added materials, and against the same model at fraction 0 (the base tier alone):
    mean change of MAE (or ROC-AUC), folds improved, and a two-sided paired t-test over folds
    (NaN with fewer than 3 folds or no spread)."""
    from scipy import stats

    out = []
    for (model, target), group in rows.groupby(["model", "target"], sort=False):
        regression = group["mae"].notna().any()
        metric = "mae" if regression else "roc_auc"
        table = group.pivot_table(index="fold", columns="fraction", values=metric)
        base = table[0.0] if 0.0 in table.columns else None
        for fraction, part in group.groupby("fraction", sort=True):
            row: dict[str, Any] = {
                "model": model,
                "target": target,
                "fraction": float(fraction),
                "n_added": float(part["n_added"].mean()),
                "folds": len(part),
            }
            for name in ("mae", "r2", "roc_auc"):
                row[f"{name}_mean"] = float(part[name].mean())
                row[f"{name}_std"] = float(part[name].std())
            change = improved = p = math.nan
            if base is not None and fraction != 0.0:
                pair = pd.concat([base, table[fraction]], axis=1).dropna()
                diff = pair.iloc[:, 1] - pair.iloc[:, 0]
                change = float(diff.mean())
                improved = float((diff < 0).sum() if regression else (diff > 0).sum())
                if len(pair) >= 3 and float(diff.std()) > 0:
                    p = float(stats.ttest_rel(pair.iloc[:, 1], pair.iloc[:, 0]).pvalue)
            row.update(change=change, folds_improved=improved, p=p)
            out.append(row)
    return pd.DataFrame(out)


def render_transfer(result: TransferResult) -> str:
    """Markdown: per target and model, the MAE (ROC-AUC) at every fraction, mean ± std over
    folds, with the paired change against the base tier alone."""
    summary = result.summary()
    fractions = sorted(result.rows["fraction"].unique())
    added = summary.groupby("fraction")["n_added"].mean()
    header = ["target", "model", *(f"+{f:g} ({added[f]:.0f})" for f in fractions)]
    table = []
    for (target, model), group in summary.groupby(["target", "model"], sort=False):
        regression = group["mae_mean"].notna().any()
        col = "mae" if regression else "roc_auc"
        cells = []
        for f in fractions:
            r = group[group["fraction"] == f]
            if r.empty:
                cells.append("")
                continue
            r0 = r.iloc[0]
            text = _fmt(float(r0[f"{col}_mean"]), float(r0[f"{col}_std"]))
            if f != 0.0 and np.isfinite(r0["folds_improved"]):
                text += f" ({int(r0['folds_improved'])}/{int(r0['folds'])}"
                text += f", p {r0['p']:.2g})" if np.isfinite(r0["p"]) else ")"
            cells.append(text)
        table.append([f"{target}{'' if regression else ' (AUC)'}", model, *cells])
    n_base = result.rows.groupby("fraction")["n_train"].max()
    lines = [
        f"# Cross-tier transfer on {result.dataset}: scored on {result.base}",
        "",
        f"Models trained on {result.base}'s training folds plus a share of the training "
        f"formulas of {', '.join(result.added)} (column: share, mean number of materials added), "
        f"scored on {result.base}'s part of every test fold ({result.settings.folds} folds "
        "grouped by formula over all tiers). MAE (ROC-AUC for classes), mean ± std over folds; "
        "in brackets the folds where it is better than the same model on the base tier alone "
        "and the paired t-test's p.",
        "",
        markdown_table(header, table, "ll" + "r" * len(fractions)),
        "",
        f"Most labels per target in a training part: {int(n_base.max())}.",
        "",
    ]
    return "\n".join(lines)


def plot_transfer(result: TransferResult, path: str | Path) -> None:
    """Learning curves: per target, MAE (or ROC-AUC) against the number of added materials, one
    line per model with the fold spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    targets = list(dict.fromkeys(summary["target"]))
    ncol = min(4, len(targets))
    nrow = math.ceil(len(targets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, target in zip(axes.flat, targets, strict=False):
        part = summary[summary["target"] == target]
        regression = part["mae_mean"].notna().any()
        col = "mae" if regression else "roc_auc"
        for model, g in part.groupby("model", sort=False):
            g = g.sort_values("fraction")
            ax.errorbar(g["n_added"], g[f"{col}_mean"], yerr=g[f"{col}_std"], marker="o",
                        capsize=2, label=model)  # fmt: skip
        ax.set_title(target, fontsize=9)
        ax.set_xlabel(f"materials added from {', '.join(result.added)}", fontsize=7)
        ax.set_ylabel("MAE" if regression else "ROC-AUC", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"{result.dataset}: scored on {result.base}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_transfer(result: TransferResult, out_dir: str | Path) -> list[Path]:
    """Write ``transfer.csv`` (rows), ``summary.csv``, ``transfer.md``, ``transfer.png`` and
    ``settings.json`` to ``out_dir`` (atomic writes); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "transfer.csv", out / "summary.csv", out / "transfer.md", out / "settings.json"]
    atomic_write_text(paths[0], result.rows.to_csv(index=False))
    atomic_write_text(paths[1], result.summary().to_csv(index=False))
    atomic_write_text(paths[2], render_transfer(result))
    result.settings.to_json(paths[3])
    plot_transfer(result, out / "transfer.png")
    return [*paths, out / "transfer.png"]


__all__ = [
    "TRANSFER_COLUMNS",
    "TransferResult",
    "TransferSettings",
    "added_part",
    "plot_transfer",
    "render_transfer",
    "run_transfer",
    "transfer_parts",
    "transfer_summary",
    "transfer_tasks",
    "write_transfer",
]
