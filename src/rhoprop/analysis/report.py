"""Terminal front ends of the analyses: progress bars and rich summaries for the CLI commands."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rhoprop.analysis.labels import load_label_table
from rhoprop.analysis.similarity import STATUS_TOO_FEW, SimilaritySettings, TargetAnalysis, analyze_targets


def progress_bar(console: Console) -> Progress:
    """A rich progress bar with counts and time remaining."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )  # fmt: skip


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
        alpha=alpha, threshold=threshold, min_pairs=min_pairs, measure=measure,
        n_permutations=n_permutations, seed=seed,
    )  # fmt: skip
    table = load_label_table(dataset).select(targets)
    for note in table.notes[:10]:
        console.print(f"[yellow]labels:[/yellow] {note}")
    if len(table.notes) > 10:
        console.print(f"[yellow]labels:[/yellow] ... and {len(table.notes) - 10} more problems")
    with progress_bar(console) as bar:
        task = bar.add_task("target pairs", total=None)
        result = analyze_targets(table, out, settings, lambda done, total: bar.update(task, completed=done, total=total))
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
            table.add_column(col, justify="right" if col not in ("target a", "target b") else "left")
        for r in top.itertuples(index=False):
            table.add_row(
                r.target_a, r.target_b, str(r.n), _fmt(r.pearson), _fmt(r.spearman), _fmt(r.dcor), f"{r.q_similarity:.1e}"
            )
        console.print(table)
    few = pairs[pairs["status"] == STATUS_TOO_FEW]
    if len(few):
        listed = ", ".join(f"{r.target_a}/{r.target_b} (n={r.n})" for r in few.head(12).itertuples(index=False))
        more = f" and {len(few) - 12} more" if len(few) > 12 else ""
        console.print(f"[yellow]too few pairs, not tested:[/yellow] {listed}{more}")
    console.print(f"wrote pairs.csv, groups.json, similarity_heatmap.png, dendrogram.png to {result.out_dir}")


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:+.2f}"
