"""Terminal front ends of the analyses: progress bars and rich summaries for the CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rhoprop.analysis.labels import LabelTable, load_label_table
from rhoprop.analysis.similarity import (
    STATUS_TOO_FEW,
    SimilaritySettings,
    TargetAnalysis,
    analyze_targets,
    read_groups,
)
from rhoprop.analysis.study import (
    CONFIGS,
    StudySettings,
    restrict_groups,
    run_study,
    write_study_report,
)


def progress_bar(console: Console) -> Progress:
    """A rich progress bar with counts and time remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def run_analyze_targets(
    dataset: str,
    out: str | Path,
    *,
    alpha: float = 0.05,
    threshold: float = 0.5,
    min_pairs: int = 10,
    measure: str = "dcor",
    n_permutations: int = 999,
    seed: int = 0,
    targets: list[str] | None = None,
    console: Console | None = None,
) -> TargetAnalysis:
    """Load ``dataset``'s labels, run :func:`analyze_targets` with a progress bar, print a summary."""
    console = console or Console()
    settings = SimilaritySettings(
        alpha=alpha,
        threshold=threshold,
        min_pairs=min_pairs,
        measure=measure,
        n_permutations=n_permutations,
        seed=seed,
    )
    table = load_label_table(dataset).select(targets)
    for note in table.notes[:10]:
        console.print(f"[yellow]labels:[/yellow] {note}")
    if len(table.notes) > 10:
        console.print(f"[yellow]labels:[/yellow] ... and {len(table.notes) - 10} more problems")
    with progress_bar(console) as bar:
        task = bar.add_task("target pairs", total=None)
        result = analyze_targets(
            table, out, settings, lambda done, total: bar.update(task, completed=done, total=total)
        )
    print_analysis(result, console)
    return result


def print_analysis(result: TargetAnalysis, console: Console) -> None:
    """Print the groups, the strongest significant pairs and the untested pairs."""
    pairs = result.pairs
    s = result.settings
    tested = pairs[pairs["status"] == "ok"]
    console.print(
        f"{len(pairs)} pairs of {len(result.grouping.targets)} targets: {len(tested)} tested, "
        f"{int(pairs['significant'].sum())} significant ({s.measure}, BH q < {s.alpha}), "
        f"{int((pairs['status'] == STATUS_TOO_FEW).sum())} with too few pairs (< {s.min_pairs} shared labels)"
    )
    groups = Table(title=f"groups (|{s.measure}| >= {s.threshold})")
    groups.add_column("#", justify="right")
    groups.add_column("targets")
    for k, g in enumerate(result.grouping.groups, 1):
        groups.add_row(str(k), ", ".join(g))
    console.print(groups)
    top = tested[tested["significant"]].assign(abs_sim=lambda f: f["similarity"].abs())
    top = top.sort_values("abs_sim", ascending=False).head(15)
    if len(top):
        table = Table(title="strongest significant pairs")
        for col in ("target a", "target b", "n", "pearson", "spearman", "dcor", "q"):
            table.add_column(
                col, justify="right" if col not in ("target a", "target b") else "left"
            )
        for r in top.itertuples(index=False):
            table.add_row(
                r.target_a,
                r.target_b,
                str(r.n),
                _fmt(r.pearson),
                _fmt(r.spearman),
                _fmt(r.dcor),
                f"{r.q_similarity:.1e}",
            )
        console.print(table)
    few = pairs[pairs["status"] == STATUS_TOO_FEW]
    if len(few):
        listed = ", ".join(
            f"{r.target_a}/{r.target_b} (n={r.n})" for r in few.head(12).itertuples(index=False)
        )
        more = f" and {len(few) - 12} more" if len(few) > 12 else ""
        console.print(f"[yellow]too few pairs, not tested:[/yellow] {listed}{more}")
    console.print(
        f"wrote pairs.csv, groups.json, similarity_heatmap.png, dendrogram.png to {result.out_dir}"
    )


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:+.2f}"


def run_multitask_study(
    dataset: str,
    out: str | Path,
    *,
    targets: list[str] | None = None,
    seeds: list[int] | None = None,
    preset: str = "quick",
    configs: list[str] | None = None,
    groups_file: str | Path | None = None,
    split: str = "default",
    random_seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
    min_pairs: int = 10,
    max_trainings: int | None = None,
    train_overrides: dict[str, Any] | None = None,
    console: Console | None = None,
) -> tuple[StudySettings, pd.DataFrame, pd.DataFrame]:
    """``rhoprop study multitask``: groups (from ``groups_file`` or a similarity analysis of the
    training split's labels), then every missing training, then the report in ``out``.
    """
    from rhoprop.analysis.study_train import PRESET_SEEDS, RhopropTrainer, preset_config

    console = console or Console()
    out = Path(out)
    table = load_label_table(dataset)
    chosen = list(targets) if targets else table.targets
    table = table.select(chosen)
    config = preset_config(preset, split=split, **(train_overrides or {}))
    trainer = RhopropTrainer(str(dataset), config)
    train_ids = [i for i in trainer.splits["train"] if i in table.labels.index]
    if groups_file is not None:
        groups = restrict_groups(read_groups(groups_file), chosen)
        source = f"groups file {groups_file}"
    elif len(chosen) > 1:
        sub = LabelTable(
            table.labels.loc[train_ids],
            table.kinds,
            table.units,
            table.classes,
            f"{dataset} ({split}/train)",
        )
        settings = SimilaritySettings(alpha=alpha, threshold=threshold, min_pairs=min_pairs)
        with progress_bar(console) as bar:
            task = bar.add_task("similarity of targets (train split)", total=None)
            analysis = analyze_targets(
                sub, out / "analysis", settings, lambda d, t: bar.update(task, completed=d, total=t)
            )
        groups = analysis.grouping.groups
        source = (
            f"similarity analysis of the {len(train_ids)} training materials ({out / 'analysis'})"
        )
    else:
        groups, source = [chosen], "one target"
    study = StudySettings(
        dataset=str(dataset),
        targets=tuple(chosen),
        groups=tuple(map(tuple, groups)),
        seeds=tuple(seeds) if seeds else PRESET_SEEDS[preset],
        configs=tuple(configs) if configs else CONFIGS,
        random_seed=random_seed,
        preset=preset,
        split=split,
        train=trainer.config,
    )
    console.print(f"groups from {source}: " + " | ".join(", ".join(g) for g in groups))
    with progress_bar(console) as bar:
        task = bar.add_task("trainings", total=None)
        run = run_study(
            study,
            trainer,
            out,
            lambda d, t, what: bar.update(task, completed=d, total=t, description=what),
            max_trainings=max_trainings,
        )
    summary, totals = write_study_report(study, out, table.kinds)
    for name, error in run.failures.items():
        console.print(f"[red]training failed[/red] ({name}): {error}")
    console.print(
        f"{run.trained} trained now, {run.reused} reused from earlier runs, {len(run.failures)} failed, "
        f"{run.missing} still missing "
        f"(rerun the same command to continue)"
    )
    print_study(summary, totals, console)
    console.print(
        f"wrote results.csv, summary.csv, summary.md, overall.csv, score_vs_cotrained.png to {out}"
    )
    return study, summary, totals


def print_study(summary: pd.DataFrame, totals: pd.DataFrame, console: Console) -> None:
    """Print the per-target table (mean ± std over seeds) and the per-config overview."""
    if summary.empty:
        console.print("no finished training yet")
        return
    table = Table(title="multi-task study (test split; mean ± std over seeds)")
    for col in ("target", "config", "co-trained", "seeds", "score", "MAE", "Δ vs single"):
        table.add_column(col, justify="left" if col in ("target", "config") else "right")
    for r in summary.itertuples(index=False):
        score = f"{r.score_name} {r.score:.3f}" + (
            f" ± {r.score_std:.3f}" if r.score_std == r.score_std else ""
        )
        mae = "–" if r.mae != r.mae else f"{r.mae:.3g}"
        delta = "–" if r.config == "single" or r.delta != r.delta else f"{r.delta:+.3f}"
        table.add_row(r.target, r.config, f"{r.n_cotrained:g}", str(r.seeds), score, mae, delta)
    console.print(table)
    if not totals.empty:
        console.print(totals.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
