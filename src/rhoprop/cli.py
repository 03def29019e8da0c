"""The ``rhoprop`` command line: thin typer commands that call the library.

Each command parses its arguments, calls one library function, and prints the result with rich
(results on stdout; ``error:`` and ``warning:`` lines on stderr). No logic lives here. What every
command shares is in one place: the exit codes, :class:`_Commands` (a refused input or setting, a
usage error: one ``error:`` line and exit code 2; rhoprop's warnings: one ``warning:`` line each),
:func:`_csv_list` for comma-separated options and :func:`_writable` for output paths.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

import rhoprop
from rhoprop.errors import RhopropError
from rhoprop.settings import Settings

try:  # typer >= 0.26 vendors click; its exceptions (usage errors among them) derive from this
    from typer import TyperException as _ClickError
except ImportError:  # pragma: no cover - older typer on top of click
    # The same role under another class: mypy sees the installed typer's TyperException first.
    from click import ClickException as _ClickError  # type: ignore[assignment]

EXIT_OK = 0
"""Exit code of a command that did all it was asked."""
EXIT_REFUSED = 2
"""Exit code of a command that refused its input, settings or usage, and wrote nothing."""
EXIT_SKIPPED = 3
"""Exit code of a command that finished but skipped some inputs (listed in its report or output)."""


def _fail(exc: Exception) -> typer.Exit:
    """Print a RhopropError as one line on stderr; the caller raises the returned
    Exit(EXIT_REFUSED)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=EXIT_REFUSED)


@contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """Show each of rhoprop's own warnings as one ``warning: ...`` line on stderr."""
    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if category.__module__.startswith("rhoprop"):
            typer.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=r"rhoprop(\.|$)")
        warnings.showwarning = show
        yield


class _Commands(TyperGroup):
    """The top-level command group: how every command shows refusals, usage errors and warnings."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a RhopropError becomes one ``error:`` line and exit code 2."""
        with _warnings_on_stderr():
            try:
                return super().invoke(ctx)
            except RhopropError as exc:
                raise _fail(exc) from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Parse and run; a usage error (a missing argument, a bad value) is one ``error:`` line."""
        run = {"standalone_mode": False, "windows_expand_args": windows_expand_args, **extra}
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, **run)
        try:
            code = super().main(args, prog_name, complete_var, **run)
        except _ClickError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as usual
                exc.show()  # type: ignore[attr-defined]  # a ClickException: it has show()
                sys.exit(EXIT_REFUSED)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(EXIT_REFUSED)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


def _csv_list(text: str | None) -> list[str] | None:
    """The items of a comma-separated option, stripped, empty ones dropped (None stays None)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _writable(path: str | Path) -> Path:
    """``path`` as a Path when a command may write there; built-in datasets and the pretrained
    models ship inside rhoprop and are read-only (a DatasetError says how to copy one)."""
    from rhoprop.datasets import check_writable

    return check_writable(path)


app = typer.Typer(
    help="Predict crystal properties from electronic charge densities.",
    no_args_is_help=True,
    cls=_Commands,
)
dataset_app = typer.Typer(help="Build, inspect and split dataset stores.", no_args_is_help=True)
analyze_app = typer.Typer(help="Analyse targets and results.", no_args_is_help=True)
study_app = typer.Typer(help="Training studies.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(analyze_app, name="analyze")
app.add_typer(study_app, name="study")
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rhoprop {rhoprop.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the rhoprop version and exit.",
    ),
) -> None:
    """Predict crystal properties from electronic charge densities."""


@app.command()
def version() -> None:
    """Print the rhoprop version."""
    console.print(f"rhoprop {rhoprop.__version__}")


# --- io / grid commands ---------------------------------------------------------------------


@app.command("inspect")
def inspect_density(
    file: Path = typer.Argument(
        ..., help="Density file: CHGCAR/CHG/AECCAR/PARCHG, cube or XSF (.gz/.bz2/.xz ok)."
    ),
    species: str | None = typer.Option(
        None,
        "--species",
        help="Species of a VASP 4 file in the order of its atom counts, e.g. Li,Co,O.",
    ),
    fmt: str | None = typer.Option(None, "--format", help="Force the format: chgcar, cube or xsf."),
) -> None:
    """Show what a density file holds: structure, grid, electrons, magnetization, density range."""
    from rich.markup import escape
    from rich.table import Table

    from rhoprop.io import read_density

    density = read_density(file, species=_csv_list(species), fmt=fmt)
    table = Table(title=escape(file.name), show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for key, value in density.summary().items():
        table.add_row(key, escape(value))
    console.print(table)


@app.command("standardize")
def standardize_command(
    file: Path = typer.Argument(
        ..., help="Density file: CHGCAR/CHG/AECCAR/PARCHG, cube or XSF (.gz/.bz2/.xz ok)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output tensor (C, n, n, n) as .npy; settings go to the same name .json."
    ),
    mode: str = typer.Option(
        "cube", "--mode", help="cube (fixed physical cube) or cell (unit cell, Fourier)."
    ),
    n: int = typer.Option(32, "--n", help="Points per tensor edge."),
    edge: float = typer.Option(10.0, "--edge", help="Cube edge in Å (mode cube)."),
    channels: str = typer.Option(
        "total", "--channels", help="Comma-separated: total,spin,deformation."
    ),
    transform: str = typer.Option("asinh", "--transform", help="none, scale or asinh."),
    scale: float = typer.Option(0.05, "--scale", help="Scale of the transform, e/Å³."),
    interpolation: str = typer.Option(
        "cubic", "--interpolation", help="cubic (B-spline) or linear (mode cube)."
    ),
    origin: str = typer.Option(
        "site", "--origin", help="site (anchored on a canonical atom) or corner (file origin)."
    ),
    species: str | None = typer.Option(
        None, "--species", help="Species of a VASP 4 file, e.g. Li,Co,O."
    ),
    fmt: str | None = typer.Option(None, "--format", help="Force the format: chgcar, cube or xsf."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also save central slices of every channel (png/svg/pdf)."
    ),
) -> None:
    """Standardize one density file into the tensor a model reads, with its settings beside it."""
    from rhoprop.grid import StandardizeSettings
    from rhoprop.grid.export import standardize_file

    settings = StandardizeSettings(
        mode=mode,
        n=n,
        edge=edge,
        channels=tuple(_csv_list(channels) or ()),
        transform=transform,
        scale=scale,
        interpolation=interpolation,
        origin=origin,
    )
    _writable(out)
    if plot is not None:
        _writable(plot)
    result, written = standardize_file(
        file, out, settings, species=_csv_list(species), fmt=fmt, picture=plot
    )
    side = ", ".join(f"{v:.4g}" for v in result.side) or "none"
    console.print(
        f"tensor {tuple(result.x.shape)} float32; side features: {side}; has_spin={result.has_spin}"
    )
    for path in written:
        console.print(f"wrote {path}", soft_wrap=True)


# --- dataset commands -----------------------------------------------------------------------


@dataset_app.command("build")
def dataset_build_command(
    input_dir: Path = typer.Argument(..., help="Folder of density files (searched recursively)."),
    labels: Path | None = typer.Option(
        None, "--labels", help="labels.csv: id column + property columns; blanks = missing."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Dataset store directory (created, resumed or extended)."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        help="1: read in this process; more: a local Dask cluster of that many worker processes.",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Read on the workers of this running Dask scheduler (tcp://HOST:PORT) instead.",
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="cube or cell (default cube, or the store's)."
    ),
    n: int | None = typer.Option(
        None, "--n", help="Points per tensor edge (default 32, or the store's)."
    ),
    edge: float | None = typer.Option(
        None, "--edge", help="Cube edge in Å (default 10, or the store's)."
    ),
    channels: str | None = typer.Option(
        None, "--channels", help="Comma-separated: total,spin,deformation."
    ),
    transform: str | None = typer.Option(None, "--transform", help="none, scale or asinh."),
    scale: float | None = typer.Option(None, "--scale", help="Scale of the transform, e/Å³."),
    interpolation: str | None = typer.Option(
        None, "--interpolation", help="Mode cube: cubic (default) or linear (pyrho's, faster)."
    ),
    origin: str | None = typer.Option(
        None, "--origin", help="site (default: anchored on a canonical atom) or corner."
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Storage dtype: float32 (default), float16, or q16 "
        "(values rounded to multiples of --quantum, int16 codes: smallest).",
    ),
    quantum: float | None = typer.Option(
        None, "--quantum", help="Step of q16 (default 0.03 transform units)."
    ),
    content_hash: str | None = typer.Option(
        None,
        "--content-hash",
        help="Hash of each file recorded as provenance: xxh3_128 (default, fast) or sha256.",
    ),
    species: str | None = typer.Option(
        None, "--species", help="Species of VASP 4 files, e.g. Li,Co,O."
    ),
    id_column: str = typer.Option("id", "--id-column", help="Name of the id column of labels.csv."),
    schema: Path | None = typer.Option(
        None, "--schema", help="targets.json fixing kinds, units and classes."
    ),
    shard_size: int = typer.Option(
        128, "--shard-size", help="Samples per shard (the unit of resumption)."
    ),
    glob: str | None = typer.Option(
        None, "--glob", help="Take files matching this pattern instead of density names."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Build (or resume, or extend) a dataset store; exit code 0 when clean, 3 when something was skipped."""  # noqa: E501
    from rhoprop.data.build import build_dataset, settings_with_options

    settings = settings_with_options(
        _writable(out),
        mode=mode,
        n=n,
        edge=edge,
        channels=_csv_list(channels),
        transform=transform,
        scale=scale,
        interpolation=interpolation,
        origin=origin,
    )
    report = build_dataset(
        input_dir,
        labels,
        out,
        settings,
        workers,
        _csv_list(species),
        id_column=id_column,
        schema=schema,
        dtype=dtype,
        quantum=quantum,
        content_hash=content_hash,
        shard_size=shard_size,
        glob=glob,
        progress=progress,
        scheduler=scheduler,
    )
    console.print(report.summary(), soft_wrap=True)
    raise typer.Exit(EXIT_OK if report.clean else EXIT_SKIPPED)


@dataset_app.command("info")
def dataset_info_command(
    dataset: str = typer.Argument(..., help="Dataset store or built-in name (e.g. gpaw-v1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Counts, label coverage per property, kinds and units, settings, shards, size on disk."""
    from rhoprop.data.info import dataset_info, print_info
    from rhoprop.datasets import load

    info = dataset_info(load(dataset))
    print_info(info, console, as_json=as_json)


@dataset_app.command("ids")
def dataset_ids_command(
    dataset: str = typer.Argument(
        ..., help="Dataset store, built-in name, or several joined by commas."
    ),
    only: str = typer.Option(
        "",
        "--only",
        help="Only the samples this selects (has_spin, NAME, not NAME, labelled:TARGET, ids:FILE).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the ids to this file (one per line) instead of printing them."
    ),
) -> None:
    """List sample ids in store order; a saved list pins a study to its materials (--only ids:FILE)."""  # noqa: E501
    from rhoprop.settings import atomic_write_text
    from rhoprop.train.data import open_store, subset_ids

    ids = subset_ids(open_store(dataset), only)
    if out is None:
        for i in ids:
            console.print(i, highlight=False, soft_wrap=True)
        return
    header = f"# {len(ids)} sample ids of {dataset}" + (f" ({only})" if only else "")
    atomic_write_text(out, "\n".join([header, *ids]) + "\n")
    err_console.print(f"wrote {len(ids)} ids to {out}")


@dataset_app.command("verify")
def dataset_verify_command(
    dataset: str = typer.Argument(..., help="Dataset store or built-in name (e.g. gpaw-v1)."),
    record_missing: bool = typer.Option(
        False,
        "--record-missing",
        help="Record the sha256 of shards "
        "that have none (written by older versions) once they read back whole.",
    ),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Check each shard against its recorded sha256 and read every sample back; exit 3 if anything is damaged."""  # noqa: E501
    from rhoprop.data.verify import print_checks, verify_store
    from rhoprop.datasets import resolve
    from rhoprop.progress import progress

    path = _writable(resolve(dataset)) if record_missing else resolve(dataset)
    with progress("verify", console=err_console, log_interval=10.0) as steps:
        checks = verify_store(path, record_missing, on_sample=steps.advance)
    print_checks(checks, console)
    if not all(c.ok for c in checks):
        raise typer.Exit(code=EXIT_SKIPPED)


@dataset_app.command("split")
def dataset_split_command(
    dataset: str = typer.Argument(..., help="Dataset store (a built-in dataset is read-only)."),
    method: str = typer.Option(
        "random", "--method", help="random, or composition (a formula never in two splits)."
    ),
    fractions: str = typer.Option("0.8,0.1,0.1", "--fractions", help="train,val,test fractions."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    name: str = typer.Option("default", "--name", help="Saved as splits/<name>.json in the store."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing split of that name."
    ),
    allow_empty: bool = typer.Option(
        False,
        "--allow-empty",
        help="Keep a split with an empty part (refused otherwise: too few samples or formulas).",
    ),
) -> None:
    """Make a reproducible train/val/test split and save it in the store (rerun to extend it)."""
    from rhoprop.data.split import make_split, parse_fractions
    from rhoprop.datasets import load, resolve

    store = load(_writable(resolve(dataset)))
    parts = make_split(
        store, method, parse_fractions(fractions), seed, name, overwrite, allow_empty
    )
    sizes = ", ".join(f"{part} {len(ids)}" for part, ids in parts.items())
    console.print(f"split {name!r} ({method}, seed {seed}) of {store.path}: {sizes}")


@dataset_app.command("copy")
def dataset_copy_command(
    dataset: str = typer.Argument(..., help="Dataset store or built-in name (e.g. gpaw-v1)."),
    dest: Path = typer.Argument(..., help="New store directory (must not exist yet)."),
) -> None:
    """Copy a dataset store, e.g. a read-only built-in one, to a folder of your own."""
    from rhoprop.datasets import copy_dataset

    path = copy_dataset(dataset, _writable(dest))
    console.print(f"copied {dataset} to {path}", soft_wrap=True)


# --- dft commands -----------------------------------------------------------------------------


def _generate_phonons(
    out: Path,
    only: str | None,
    workers: int,
    retry_failed: bool,
    max_minutes: float,
    max_atoms: int | None,
    plots: bool,
) -> None:
    """``rhoprop generate --phonons``: phonons of the crystals computed in ``out``, then the
    labels."""
    from rhoprop import dft
    from rhoprop.dft.phonons import PhononProtocol, generate_phonons
    from rhoprop.errors import RhopropError

    try:
        protocol = PhononProtocol() if max_atoms is None else PhononProtocol(max_atoms=max_atoms)
        ids = [i.strip() for i in only.split(",") if i.strip()] if only else None
        report = generate_phonons(
            out,
            ids,
            workers=workers,
            protocol=protocol,
            retry_failed=retry_failed,
            max_minutes=max_minutes,
            plots=plots,
        )
        console.print(
            f"phonons: computed {len(report.computed)}, skipped {len(report.skipped)} (done or "
            f"failed before), failed {len(report.failed)}; failures in "
            f"{out / 'phonons' / 'failures.json'}"
        )
        frame = dft.assemble_labels(out)
    except RhopropError as exc:
        raise _fail(exc) from exc
    stable = (
        frame["dynamically_stable"].dropna()
        if "dynamically_stable" in frame
        else frame.iloc[:0, :0]
    )
    console.print(
        f"phonon labels of {len(stable)} materials ({int((stable == 0).sum())} dynamically "
        f"unstable) -> {out / 'labels.csv'}"
    )


@app.command()
def generate(
    structures: list[Path] = typer.Argument(None, help="CIF/POSCAR files or folders of them."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (resumable: finished materials are skipped)."
    ),
    prototypes: bool = typer.Option(
        False, "--prototypes", help="Compute the built-in prototype enumeration."
    ),
    limit: int = typer.Option(
        0, "--limit", help="Only the first N prototypes of the enumeration (0 = all)."
    ),
    protocol_name: str = typer.Option(
        "gpaw-v1",
        "--protocol",
        help="gpaw-v1 (EOS, elastic constants) or gpaw-scf-v1 (fast tier: CHGNet relaxation, "
        "one SCF).",
    ),
    max_chgnet_ef: float = typer.Option(
        1.0,
        "--max-chgnet-ef",
        help="gpaw-scf-v1 enumeration: skip compounds whose CHGNet formation energy exceeds this "
        "(eV/atom; a fixed 10 % of them kept; inf = no screening).",
    ),
    only: str = typer.Option(
        None,
        "--only",
        help="Comma-separated material ids: compute only these, in "
        "this order (e.g. Fe-hcp,FeC-rocksalt).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        help="Parallel GPAW processes (one serial GPAW each): "
        "a local Dask cluster of that many worker processes.",
    ),
    scheduler: str = typer.Option(
        None,
        "--scheduler",
        help="Compute on the workers of this running Dask "
        "scheduler (tcp://HOST:PORT) instead; --out must be on a filesystem they share.",
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Retry materials recorded as failed."
    ),
    max_minutes: float = typer.Option(
        90.0,
        "--max-minutes",
        help=(
            "CPU-time limit per material (a failure beyond); time while the batch is suspended "
            "does not count."
        ),
    ),
    labels_only: bool = typer.Option(
        False, "--labels", help="Only (re)assemble DIR/labels.csv from results."
    ),
    densities_in: str = typer.Option(
        None,
        "--densities-in",
        help="Dataset (path or built-in name) whose "
        "materials count as done without their CHGCAR in DIR.",
    ),
    phonons: bool = typer.Option(
        False,
        "--phonons",
        help="Phonons (protocol gpaw-phonon-v1) of the crystals "
        "already computed in --out, then labels (dynamically_stable, min_frequency).",
    ),
    max_atoms: int = typer.Option(
        None,
        "--max-atoms",
        help="With --phonons: largest supercell in atoms "
        "(default 64; part of the phonon protocol). With --prototypes "
        "--protocol gpaw-scf-v1: largest primitive cell (default 8).",
    ),
    plots: bool = typer.Option(
        False,
        "--plots",
        help="With --phonons: a band structure + DOS picture per material in DIR/phonons/plots.",
    ),
) -> None:
    """Compute charge densities (CHGCAR) and property labels with GPAW, then assemble labels.csv."""
    from rhoprop import dft
    from rhoprop.errors import RhopropError

    if phonons:
        if structures or prototypes or labels_only:
            raise _fail(
                RhopropError(
                    "--phonons works on the results already in --out: give no structures, "
                    "--prototypes or --labels with it"
                )
            )
        _generate_phonons(out, only, workers, retry_failed, max_minutes, max_atoms, plots)
        return
    try:
        _writable(out)
        if not labels_only:
            plan = dft.plan_generation(
                out,
                structures,
                prototypes,
                limit=limit,
                protocol_name=protocol_name,
                max_chgnet_ef=max_chgnet_ef,
                max_atoms=max_atoms,
                only=_csv_list(only),
                densities_in=densities_in,
            )
            report = dft.generate(
                plan.candidates,
                out,
                workers=workers,
                protocol=plan.protocol,
                retry_failed=retry_failed,
                max_minutes=max_minutes,
                stored=plan.stored,
                screen=plan.screen,
                scheduler=scheduler,
            )
            failures = (
                f"; failures in {out / 'failures.json'}"
                if (out / "failures.json").is_file()
                else ""
            )
            screened = (
                f", screened out {len(report.screened)} (skipped.json)" if plan.screen else ""
            )
            console.print(
                f"computed {len(report.computed)}, skipped {len(report.skipped)} (done or failed "
                f"before), failed {len(report.failed)}{screened}{failures}"
            )
        frame = dft.assemble_labels(out)
    except RhopropError as exc:
        raise _fail(exc) from exc
    info = dft.summary(frame)
    console.print(
        f"labels of {info['materials']} materials ({info['spin_polarized']} spin-polarized, "
        f"{info['metals']} metals) -> {out / 'labels.csv'}"
    )


# --- train / evaluate / predict commands ----------------------------------------------------


@app.command("models")
def models_command() -> None:
    """List the MSA-3DCNN sizes (for --model) with their parameter counts."""
    from rhoprop.train.report import print_sizes

    print_sizes(console)


@app.command("train")
def train_command(
    dataset: str = typer.Argument(
        ..., help="Dataset store folder or built-in name (e.g. gpaw-v1)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Run directory (rerun the same command to resume a killed run)."
    ),
    targets: str | None = typer.Option(
        None, "--targets", help="Comma-separated targets; default: every labelled one."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TrainConfig JSON (options given here override it)."
    ),
    groups: Path | None = typer.Option(
        None, "--groups", help='Groups file {"groups": [[targets...], ...]}: one model per group.'
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model size: tiny, small, default, large (see `rhoprop models`)."
    ),
    inputs: str | None = typer.Option(
        None,
        "--inputs",
        help="density+structure (default), density (the paper's), density+structure+tier (also "
        "the data tier, for joined stores), or image.",
    ),
    ensemble: int | None = typer.Option(
        None, "--ensemble", help="Networks trained from successive seeds and averaged."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Samples per batch and device."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
    weighting: str | None = typer.Option(
        None, "--weighting", help="Task weighting: equal or uncertainty."
    ),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment", help="Random rotations (cube) / rolls (cell)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    patience: int | None = typer.Option(
        None, "--patience", help="Early-stopping patience in epochs (0: off)."
    ),
    monitor_min_labels: int | None = typer.Option(
        None,
        "--monitor-min-labels",
        help="Least validation labels a target needs to count in val_loss, which early stopping "
        "and checkpoints watch (default 10; 0: every target).",
    ),
    split: str | None = typer.Option(
        None, "--split", help="Dataset split name (default: 'default')."
    ),
    accelerator: str | None = typer.Option(None, "--accelerator", help="auto, cpu or gpu."),
    devices: str | None = typer.Option(None, "--devices", help="auto, a count (2) or ids (0,1)."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Lightning strategy: auto, ddp, ..."
    ),
    num_nodes: int | None = typer.Option(None, "--num-nodes", help="Nodes (multi-node DDP)."),
    precision: str | None = typer.Option(
        None, "--precision", help="32-true, 16-mixed (GPU), bf16-mixed."
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="DataLoader workers per device."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Show a progress bar."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads per process (default: torch's)."
    ),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Train the MSA-3DCNN on a dataset; writes checkpoints, logs and the exported model to --out."""  # noqa: E501
    from rhoprop.analysis.similarity import read_groups
    from rhoprop.train.config import load_train_config
    from rhoprop.train.fit import train, train_groups
    from rhoprop.train.report import print_train_result

    cfg = load_train_config(
        config,
        targets=_csv_list(targets),
        model=model,
        inputs=inputs,
        ensemble=ensemble,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weighting=weighting,
        augment=augment,
        seed=seed,
        patience=patience,
        monitor_min_labels=monitor_min_labels,
        split=split,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        num_workers=num_workers,
        progress=progress,
        threads=threads,
    )
    _writable(out)
    results = (
        train_groups(dataset, out, read_groups(groups), cfg)
        if groups
        else [train(dataset, out, cfg)]
    )
    for result in results:
        if result is not None:
            print_train_result(result, console)


@app.command("evaluate")
def evaluate_command(
    run: Path = typer.Argument(
        ..., help="Run directory from `rhoprop train` (or a model directory)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset to evaluate on (default: the run's)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split name (default: the run's)."),
    part: str = typer.Option("test", "--part", help="Part of the split: train, val or test."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Output folder (default RUN_DIR/eval/<split>_<part>; builtin: ./eval-builtin/...).",
    ),
    baselines: bool = typer.Option(
        False, "--baselines", help="Also train the composition and CGCNN baselines."
    ),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Metrics per target (R², MAE, RMSE; accuracy, F1, ROC-AUC), baselines, 90% coverage, figures."""  # noqa: E501
    from rhoprop.train.evaluate import evaluate_run
    from rhoprop.train.report import print_evaluation

    if out is not None:
        _writable(out)
    elif str(run) != "builtin":
        _writable(run)  # the default output folder is inside the run
    report = evaluate_run(
        run, dataset=dataset, split=split, part=part, out=out, baselines=baselines
    )
    print_evaluation(report, console)


@app.command("baselines")
def baselines_command(
    run: Path = typer.Argument(..., help="Run directory from `rhoprop train`."),
    part: str = typer.Option(
        "test", "--part", help="Part of the run's split to predict: train, val or test."
    ),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Train the mean, composition (gradient boosting) and CGCNN baselines on the run's split, then evaluate."""  # noqa: E501
    from rhoprop.train.evaluate import evaluate_run
    from rhoprop.train.report import print_evaluation

    report = evaluate_run(_writable(run), part=part, baselines=True)
    print_evaluation(report, console)


@app.command("hybrid")
def hybrid_command(
    model: str = typer.Argument(
        ..., help="Run or model directory of a network with global features, or 'builtin'."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the hybrid model (must not hold a model yet)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset whose train part fits the trees (default: the model's)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split name (default: the model's)."),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Add gradient boosting on the network's global features to a trained model; predicts their mean."""  # noqa: E501
    from rhoprop.train.hybrid import build_hybrid

    result = build_hybrid(model, _writable(out), dataset=dataset, split=split)
    console.print(
        f"wrote {result.model_dir}: trees fitted on {result.n_fit} materials of {result.dataset} "
        f"{result.split}/train in {result.fit_seconds:.1f} s, intervals calibrated on "
        f"{result.n_calibration} of {result.split}/val"
    )
    alone = [name for name, w in result.weights.items() if w == 1.0]
    console.print(
        "the network alone (better on val) for: " + ", ".join(alone)
        if alone
        else "every target: the mean of the network and the trees"
    )


SettingsT = TypeVar("SettingsT", bound=Settings)


def _study_settings(
    cls: type[SettingsT],
    config: Path | None,
    given: dict[str, Any],
    epochs: int | None,
    model_size: str | None,
) -> SettingsT:
    """Settings of a benchmark-like command: ``--config`` (or the defaults), the options given
    (None: not given) on top, and ``--epochs`` / ``--model`` on its network's ``train`` field."""
    values = (cls.from_json(config) if config else cls()).to_dict()
    values.update({k: v for k, v in given.items() if v is not None})
    train = {k: v for k, v in {"epochs": epochs, "model": model_size}.items() if v is not None}
    if train:
        values["train"] = {**values["train"], **train}
    return cls.from_dict(values)


@app.command("benchmark")
def benchmark_command(
    dataset: str = typer.Argument(
        ..., help="Dataset store folder or built-in name (e.g. gpaw-v1)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: tables, figures, and the cache a rerun resumes from."
    ),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds, grouped by formula."),
    models: str | None = typer.Option(
        None,
        "--models",
        help="Comma-separated models (default: every baseline, the MSA-3DCNN with inputs "
        "density and density+structure, and hybrid-density+structure).",
    ),
    targets: str | None = typer.Option(
        None, "--targets", help="Comma-separated targets (default: those with 30+ labels)."
    ),
    curves: str | None = typer.Option(
        None, "--curve-models", help="Models that get learning curves."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="BenchmarkSettings JSON (options given here override it)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the folds and of every model."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs of the MSA-3DCNN."),
    model_size: str | None = typer.Option(
        None, "--model", help="MSA-3DCNN size (see `rhoprop models`)."
    ),
    reference: str = typer.Option(
        "msa3dcnn-density+structure",
        "--reference",
        help="Model compared with every other, paired over folds.",
    ),
    only: str | None = typer.Option(
        None,
        "--only",
        help=(
            "Benchmark the samples this selects: has_spin, 'not is_metal', "
            "labelled:dynamically_stable, ids:FILE..."
        ),
    ),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Cross-validate rhoprop's model and the baselines (mean, composition, density invariants, CGCNN)."""  # noqa: E501
    from rhoprop.analysis.benchmark import BenchmarkSettings, run_benchmark, write_benchmark

    given = {
        "folds": folds,
        "models": _csv_list(models),
        "targets": _csv_list(targets),
        "curve_models": _csv_list(curves),
        "seed": seed,
        "only": only,
    }
    settings = _study_settings(BenchmarkSettings, config, given, epochs, model_size)
    _writable(out)
    result = run_benchmark(
        dataset, out, settings, on_step=lambda line: err_console.print(line, highlight=False)
    )
    paths = write_benchmark(
        result, out, reference=reference if reference in settings.models else None
    )
    console.print(
        result.summary()[["target", "model", "mae_mean", "mae_std", "roc_auc_mean"]].to_string(
            index=False
        )
    )
    console.print(f"wrote {', '.join(p.name for p in paths)} to {out}")


@app.command("predict")
def predict_command(
    model: str = typer.Argument(
        ..., help="Run or model directory, or 'builtin' (the pretrained gpaw-v1 model)."
    ),
    paths: list[Path] = typer.Argument(
        ..., exists=True, help="Density files (CHGCAR, cube, xsf; .gz ok) or folders of them."
    ),
    out: Path = typer.Option(
        Path("rhoprop-predictions"), "--out", help="Writes OUT.csv and OUT.json."
    ),
    species: str | None = typer.Option(
        None, "--species", help="Species of VASP 4 files, e.g. Li,Co,O."
    ),
    mc_samples: int | None = typer.Option(
        None, "--mc-samples", min=1, help="MC-dropout passes (default: the model's)."
    ),
    as_tier: str | None = typer.Option(
        None,
        "--as-tier",
        help="For a model with inputs density+structure+tier: predict the labels of this data "
        "tier (default: its first, the reference tier).",
    ),
) -> None:
    """Predict every target of a model for density files, with uncertainties and warnings."""
    from rhoprop.train.predict import predict_paths
    from rhoprop.train.report import print_predictions, write_predictions

    _writable(out)
    result = predict_paths(
        model, paths, species=_csv_list(species), mc_samples=mc_samples, progress=True,
        as_tier=as_tier,
    )  # fmt: skip
    print_predictions(result, console, err_console)
    written = write_predictions(result, out)
    if written is None:
        err_console.print(
            f"no prediction: nothing written (earlier results at {out}, if any, are unchanged)",
            markup=False,
            soft_wrap=True,
        )
    else:
        console.print(f"written {written[0]} and {written[1]}", soft_wrap=True)
    if result.errors:
        raise typer.Exit(code=EXIT_SKIPPED)


# --- analysis / study commands --------------------------------------------------------------


@analyze_app.command("targets")
def analyze_targets_command(
    dataset: str = typer.Argument(
        ..., help="Dataset store, built-in name (e.g. gpaw-v1) or labels CSV."
    ),
    out: Path = typer.Option(Path("targets-analysis"), "--out", help="Output directory."),
    alpha: float = typer.Option(
        0.05, help="False discovery rate (Benjamini-Hochberg) for a significant pair."
    ),
    threshold: float = typer.Option(
        0.5, help="Minimum average-linkage |similarity| to share a group."
    ),
    min_pairs: int = typer.Option(
        10, "--min-pairs", help="Fewest shared labels for a pair to be tested."
    ),
    measure: str = typer.Option("dcor", help="Grouping similarity: dcor, spearman or pearson."),
    permutations: int = typer.Option(999, help="Permutations of the distance-correlation test."),
    seed: int = typer.Option(0, help="Seed of the permutation tests."),
    targets: str = typer.Option("", help="Comma-separated targets (default: all)."),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Similarity of every two targets, significance, groups for `rhoprop train --groups`, figures."""  # noqa: E501
    from rhoprop.analysis.report import report_target_analysis

    report_target_analysis(
        dataset,
        _writable(out),
        alpha=alpha,
        threshold=threshold,
        min_pairs=min_pairs,
        measure=measure,
        n_permutations=permutations,
        seed=seed,
        targets=_csv_list(targets) or [],
        console=console,
    )


@analyze_app.command("datasheet")
def analyze_datasheet_command(
    dataset: str = typer.Argument(..., help="Dataset store or built-in name (e.g. gpaw-v1)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    materials: Path | None = typer.Option(
        None,
        "--materials",
        help=(
            "materials.csv (id, prototype) of `rhoprop generate`: prototypes from it, not from "
            "the ids."
        ),
    ),
) -> None:
    # On one line: typer's command list (rich mode) prints the summary's line breaks.
    """Datasheet of a dataset: counts (markdown + JSON) per prototype, space group, element and class, label coverage, figures."""  # noqa: E501
    from rhoprop.analysis.datasheet_report import print_datasheet, write_datasheet
    from rhoprop.datasets import load

    summary = write_datasheet(load(dataset), _writable(out), materials_csv=materials)
    print_datasheet(summary, console)


@study_app.command("multitask")
def study_multitask_command(
    dataset: str = typer.Argument(
        ..., help="Dataset store or built-in name (e.g. gpaw-v1), with a split."
    ),
    out: Path = typer.Option(
        Path("multitask-study"), "--out", help="Study directory (rerun to resume)."
    ),
    targets: str = typer.Option("", help="Comma-separated targets (default: all)."),
    seeds: str = typer.Option("", help="Comma-separated seeds (default: 0,1 quick; 0,1,2 full)."),
    quick: bool = typer.Option(
        True,
        "--quick/--full",
        help=(
            "quick: small model, 10 epochs, seeds 0,1 (CPU); full: default model, 50 epochs, "
            "seeds 0,1,2 (GPU)."
        ),
    ),
    configs: str = typer.Option(
        "single,group,all,random", help="Which of single,group,all,random to run."
    ),
    groups: Path | None = typer.Option(
        None,
        "--groups",
        help="groups.json from `rhoprop analyze targets` (default: analyse the train split).",
    ),
    split: str = typer.Option("default", help="Dataset split used by every training."),
    random_seed: int = typer.Option(0, "--random-seed", help="Seed of the random groups."),
    epochs: int | None = typer.Option(None, help="Override the preset's epochs."),
    model: str | None = typer.Option(None, help="Override the preset's model size."),
    accelerator: str | None = typer.Option(None, help="cpu, gpu or auto."),
    max_trainings: int | None = typer.Option(
        None, "--max-trainings", help="Stop after this many new trainings."
    ),
    only: str = typer.Option(
        "",
        "--only",
        help=(
            "Study the samples a flag or binary target selects (has_spin: spin-polarized; "
            "ids:FILE: the ids listed in FILE; join terms with ' and ')."
        ),
    ),
    folds: int = typer.Option(
        0,
        "--folds",
        help=(
            "k-fold cross-validation grouped by formula (the benchmark's folds) instead of one "
            "split; the replicates are the folds, groups chosen on each fold's training part."
        ),
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="quick, full or benchmark (the network recipe of `rhoprop benchmark`); "
        "overrides --quick/--full.",
    ),
) -> None:
    """Single-task vs similarity group vs all vs random group, per target; resumable."""
    from rhoprop.analysis.report import report_multitask_study
    from rhoprop.analysis.study import parse_seeds

    report_multitask_study(
        dataset,
        _writable(out),
        targets=_csv_list(targets) or [],
        seeds=parse_seeds(seeds),
        preset=preset or ("quick" if quick else "full"),
        folds=folds,
        configs=_csv_list(configs) or [],
        groups_file=groups,
        split=split,
        random_seed=random_seed,
        max_trainings=max_trainings,
        only=only,
        train_overrides={"epochs": epochs, "model": model, "accelerator": accelerator},
        console=console,
    )


@study_app.command("transfer")
def study_transfer_command(
    dataset: str = typer.Argument(
        ..., help="Two or more stores, comma-separated (e.g. gpaw-v1,gpaw-scf-v1)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: tables, figure, and the cache a rerun resumes from."
    ),
    base: str | None = typer.Option(
        None, "--base", help="The tier scored (default: the first store named)."
    ),
    fractions: str | None = typer.Option(
        None, "--fractions", help="Shares of the other tiers added (default 0,0.25,0.5,1)."
    ),
    models: str | None = typer.Option(
        None,
        "--models",
        help="Comma-separated models (default: mean, composition, msa3dcnn-density+structure).",
    ),
    targets: str | None = typer.Option(
        None, "--targets", help="Comma-separated targets (default: 30+ labels in the base tier)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TransferSettings JSON (options given here override it)."
    ),
    folds: int | None = typer.Option(None, "--folds", help="Cross-validation folds."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs of the MSA-3DCNN."),
    model_size: str | None = typer.Option(
        None, "--model", help="MSA-3DCNN size (see `rhoprop models`)."
    ),
    only: str | None = typer.Option(
        None,
        "--only",
        help="Only the samples this selects (ids:FILE pins the materials; has_spin, NAME, ...).",
    ),
    cached_only: bool = typer.Option(
        False,
        "--cached-only",
        help="Train nothing: report the (model, share) steps whose every fold is cached (a run "
        "still going, or stopped part-way).",
    ),
) -> None:
    """Does adding another tier's materials lower the error on one tier's? Learning curve; resumable."""  # noqa: E501
    from rhoprop.analysis.transfer import TransferSettings, run_transfer, write_transfer
    from rhoprop.errors import SettingsError

    try:
        shares = [float(f) for f in _csv_list(fractions) or []] if fractions else None
    except ValueError as exc:
        raise SettingsError(f"--fractions must be numbers such as 0,0.25,0.5,1 ({exc})") from exc
    given: dict[str, Any] = {
        "base": base,
        "fractions": shares,
        "models": _csv_list(models),
        "targets": _csv_list(targets),
        "folds": folds,
        "only": only,
    }
    settings = _study_settings(TransferSettings, config, given, epochs, model_size)
    _writable(out)
    result = run_transfer(
        dataset, out, settings, on_step=lambda line: err_console.print(line, highlight=False),
        cached_only=cached_only,
    )  # fmt: skip
    if result.rows.empty:
        raise SettingsError(
            f"no (model, share) of this transfer study has every fold cached in {out} yet; run it "
            "without --cached-only to compute them"
        )
    paths = write_transfer(result, out)
    summary = result.summary()
    console.print(
        summary[
            ["target", "model", "fraction", "n_added", "mae_mean", "mae_std", "change", "p"]
        ].to_string(index=False)
    )
    console.print(f"wrote {', '.join(p.name for p in paths)} to {out}")


def main() -> None:  # pragma: no cover - entry point
    """Run the CLI."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
