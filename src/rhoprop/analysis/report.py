"""Output of the target analysis and the multi-task study: files, figures and terminal summaries.

The computations live in :mod:`rhoprop.analysis.similarity` and :mod:`rhoprop.analysis.multitask`
and return their results; this module writes them (``write_*``), prints them (``print_*``), and
runs the two CLI commands with progress shown (``report_*``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from rhoprop.analysis.figures import plot_dendrogram, plot_similarity_heatmap, plot_study
from rhoprop.analysis.labels import load_label_table
from rhoprop.analysis.markdown import markdown_table
from rhoprop.analysis.multitask import (
    MultitaskStudy,
    fold_groups_document,
    prepare_multitask_study,
    run_multitask_study,
)
from rhoprop.analysis.similarity import (
    STATUS_TOO_FEW,
    SimilaritySettings,
    TargetAnalysis,
    analyze_targets,
    write_groups,
)
from rhoprop.analysis.study import StudyResults
from rhoprop.progress import progress
from rhoprop.settings import atomic_write_text

#: Files written by :func:`write_target_analysis`.
ANALYSIS_FILES = (
    "pairs.csv",
    "groups.json",
    "settings.json",
    "similarity_heatmap.png",
    "dendrogram.png",
)
#: Files written by :func:`write_study_report`.
STUDY_FILES = (
    "results.csv",
    "summary.csv",
    "summary.md",
    "overall.csv",
    "score_vs_cotrained.png",
    "tests.csv",
    "gain.csv",
)


# --- target analysis --------------------------------------------------------------------------


def write_target_analysis(
    analysis: TargetAnalysis, out_dir: str | Path, groups_document: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``pairs.csv`` (every pair), ``groups.json`` (accepted by ``rhoprop train --groups``;
    ``groups_document`` when given, else the analysis's own), ``settings.json``,
    ``similarity_heatmap.png`` and ``dendrogram.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / name for name in ANALYSIS_FILES]
    atomic_write_text(files[0], analysis.pairs.to_csv(index=False, float_format="%.6g"))
    write_groups(files[1], groups_document or analysis.groups_document())
    settings_doc = {
        "settings": analysis.settings.to_dict(),
        "source": analysis.source,
        "kinds": analysis.kinds,
        "labels_per_target": analysis.counts,
    }
    atomic_write_text(files[2], json.dumps(settings_doc, indent=2) + "\n")
    plot_similarity_heatmap(
        analysis.grouping, analysis.pairs, analysis.counts, analysis.settings, files[3]
    )
    plot_dendrogram(analysis.grouping, analysis.settings, files[4])
    return files


def report_target_analysis(
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
    """``rhoprop analyze targets``: load ``dataset``'s labels, analyse them with progress shown,
    write the files into ``out`` and print a summary."""
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
    with progress("target pairs", log_interval=5.0) as steps:
        analysis = analyze_targets(table, settings, lambda d, t: steps.update(d, t))
    write_target_analysis(analysis, out)
    print_analysis(analysis, console)
    console.print(f"wrote {', '.join(ANALYSIS_FILES)} to {out}", soft_wrap=True)
    return analysis


def print_analysis(result: TargetAnalysis, console: Console) -> None:
    """Print the groups, the strongest significant pairs and the untested pairs."""
    pairs = result.pairs
    s = result.settings
    tested = pairs[pairs["status"] == "ok"]
    console.print(
        f"{len(pairs)} pairs of {len(result.grouping.targets)} targets: {len(tested)} tested, "
        f"{int(pairs['significant'].sum())} significant ({s.measure}, BH q < {s.alpha}), "
        f"{int((pairs['status'] == STATUS_TOO_FEW).sum())} with too few pairs "
        f"(< {s.min_pairs} shared labels)"
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


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:+.2f}"


# --- multi-task study -------------------------------------------------------------------------


def study_markdown(
    summary: pd.DataFrame, tests: pd.DataFrame | None = None, gain: pd.DataFrame | None = None
) -> str:
    """The study summary as markdown tables: mean ± std over replicates (seeds, or folds) with the
    change vs single-task;
    the paired tests per target with Benjamini-Hochberg q; the paper's mean R² gain."""
    text = _summary_table(summary)
    if tests is not None and not tests.empty:
        rows = [
            [
                r.target, f"{r.config} − {r.against}", r.seeds, f"{r.mean_difference:+.3f}",
                f"{r.wins}/{r.seeds}", _p(r.p), _p(r.q),
            ]
            for r in tests.itertuples(index=False)
        ]  # fmt: skip
        text += (
            "\nPaired over replicates (the seeds, or the folds of a `--folds` study; score "
            "difference, R² or ROC-AUC; t-test; q: Benjamini-Hochberg over the targets of each "
            "comparison):\n\n"
            + markdown_table(
                ["target", "comparison", "replicates", "mean Δ", "wins", "p", "q"], rows, "llrrrrr"
            )
            + "\n"
        )
    if gain is not None and not gain.empty:
        rows = [
            [
                r.config,
                r.targets,
                f"{r.mean_single:.3f}",
                f"{r.mean_score:.3f}",
                f"{r.gain_pct:+.1f}%",
            ]
            for r in gain.itertuples(index=False)
        ]
        text += (
            "\nThe paper's measure: mean R² over the targets whose single-task R² is below 0.8:\n\n"
            + markdown_table(["config", "targets", "single-task", "config", "gain"], rows, "lrrrr")
            + "\n"
        )
    return text


def _p(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2g}"


def _summary_table(summary: pd.DataFrame) -> str:
    rows = []
    for r in summary.itertuples(index=False):
        single = r.config == "single"
        mae = _pm(r.mae, r.mae_std) if np.isfinite(r.mae) else "–"
        delta = "–" if single or not np.isfinite(r.delta) else f"{r.delta:+.3f}"
        rel = "–" if single or not np.isfinite(r.rel_mae_pct) else f"{r.rel_mae_pct:+.1f}%"
        score = f"{r.score_name} {_pm(r.score, r.score_std)}"
        rows.append([r.target, r.config, f"{r.n_cotrained:g}", r.seeds, score, mae, delta, rel])
    header = [
        "target",
        "config",
        "co-trained",
        "replicates",
        "score",
        "MAE",
        "Δ score vs single",
        "MAE change",
    ]
    return markdown_table(header, rows, "llrrllrr") + "\n"


def _pm(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"


def write_study_report(results: StudyResults, study_dir: str | Path) -> list[Path]:
    """Write ``results.csv``, ``summary.csv``, ``summary.md``, ``overall.csv`` and (once a
    training finished) ``score_vs_cotrained.png`` into ``study_dir``; returns the files written."""
    out = Path(study_dir)
    files = [out / name for name in STUDY_FILES]
    for path, frame in zip(
        (files[0], files[1], files[3]),
        (results.results, results.summary, results.overall),
        strict=True,
    ):
        atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(files[2], study_markdown(results.summary, results.tests, results.gain))
    atomic_write_text(files[5], results.tests.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(files[6], results.gain.to_csv(index=False, float_format="%.6g"))
    if results.summary.empty:
        return [*files[:4], *files[5:]]
    plot_study(results.summary, files[4])
    return files


def report_multitask_study(
    dataset: str,
    out: str | Path,
    *,
    max_trainings: int | None = None,
    console: Console | None = None,
    **options: Any,
) -> MultitaskStudy:
    """``rhoprop study multitask``: prepare the study (``options``: the keyword arguments of
    :func:`~rhoprop.analysis.multitask.prepare_multitask_study`), write the similarity analysis of
    the training split into ``out/analysis`` when the groups came from one, run the missing
    trainings with progress shown, write the report into ``out`` and print it."""
    console = console or Console()
    out = Path(out)
    with progress("preparing the study", log_interval=5.0) as steps:
        plan = prepare_multitask_study(
            dataset, progress=lambda d, t, what: steps.update(d, t, what), study_dir=out,
            **options,
        )  # fmt: skip
    source = plan.groups_source
    if plan.analysis is not None:
        write_target_analysis(plan.analysis, out / "analysis")
        source += f" ({out / 'analysis'})"
    for k, analysis in enumerate(plan.fold_analyses):
        if analysis is not None:
            folder = out / "analysis" / f"fold-{k}"
            document = fold_groups_document(analysis, plan.fold_keys[k])
            write_target_analysis(analysis, folder, document)
    if plan.settings.folds:
        source += f" ({out / 'analysis'}/fold-K)"
    groups = " | ".join(", ".join(g) for g in plan.settings.groups)
    console.print(f"groups from {source}: {groups}")
    for k, grouping in enumerate(plan.settings.fold_groups):
        console.print(f"  fold {k}: " + " | ".join(", ".join(g) for g in grouping))
    with progress("trainings") as steps:
        study = run_multitask_study(
            plan, out, lambda d, t, what: steps.update(d, t, what), max_trainings
        )
    files = write_study_report(study.results, out)
    run = study.run
    for name, error in run.failures.items():
        console.print(f"[red]training failed[/red] ({name}): {error}")
    console.print(
        f"{run.trained} trained now, {run.reused} reused from earlier runs, {len(run.failures)} "
        f"failed, {run.missing} still missing (rerun the same command to continue)"
    )
    print_study(study.results, console)
    console.print(f"wrote {', '.join(p.name for p in files)} to {out}", soft_wrap=True)
    return study


def print_study(results: StudyResults, console: Console) -> None:
    """Print the per-target table (mean ± std over replicates) and the per-config overview."""
    summary, totals = results.summary, results.overall
    if summary.empty:
        console.print("no finished training yet")
        return
    table = Table(title="multi-task study (test parts; mean ± std over seeds or folds)")
    for col in ("target", "config", "co-trained", "reps", "score", "MAE", "Δ vs single"):
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
