"""The ``rhoprop`` command line: thin typer commands that call the library.

Each command parses its arguments, calls one library function, and prints the result with rich.
No logic lives here.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

import rhoprop

app = typer.Typer(help="Predict crystal properties from electronic charge densities.", no_args_is_help=True)
dataset_app = typer.Typer(help="Build, inspect and split dataset stores.", no_args_is_help=True)
analyze_app = typer.Typer(help="Analyse targets and results.", no_args_is_help=True)
study_app = typer.Typer(help="Training studies.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(analyze_app, name="analyze")
app.add_typer(study_app, name="study")
console = Console()


@app.command()
def version() -> None:
    """Print the rhoprop version."""
    console.print(f"rhoprop {rhoprop.__version__}")


# --- io / grid commands ---------------------------------------------------------------------


# --- dataset commands -----------------------------------------------------------------------


# --- dft commands -----------------------------------------------------------------------------


# --- train / evaluate / predict commands ----------------------------------------------------


# --- analysis / study commands --------------------------------------------------------------


@analyze_app.command("targets")
def analyze_targets_command(
    dataset: str = typer.Argument(..., help="Dataset store, built-in name (e.g. gpaw-v1) or labels CSV."),
    out: Path = typer.Option(Path("targets-analysis"), "--out", help="Output directory."),
    alpha: float = typer.Option(0.05, help="False discovery rate (Benjamini-Hochberg) for a significant pair."),
    threshold: float = typer.Option(0.5, help="Minimum average-linkage |similarity| to share a group."),
    min_pairs: int = typer.Option(10, "--min-pairs", help="Fewest shared labels for a pair to be tested."),
    measure: str = typer.Option("dcor", help="Grouping similarity: dcor, spearman or pearson."),
    permutations: int = typer.Option(999, help="Permutations of the distance-correlation test."),
    seed: int = typer.Option(0, help="Seed of the permutation tests."),
    targets: str = typer.Option("", help="Comma-separated targets (default: all)."),
) -> None:
    """Similarity of every two targets, significance, groups for `rhoprop train --groups`, figures."""
    from rhoprop.analysis.report import run_analyze_targets
    from rhoprop.errors import RhopropError

    try:
        run_analyze_targets(
            dataset, out, alpha=alpha, threshold=threshold, min_pairs=min_pairs, measure=measure,
            n_permutations=permutations, seed=seed, targets=[t for t in targets.split(",") if t],
            console=console,
        )  # fmt: skip
    except RhopropError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def main() -> None:  # pragma: no cover - entry point
    """Run the CLI."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
