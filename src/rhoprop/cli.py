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


def main() -> None:  # pragma: no cover - entry point
    """Run the CLI."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
