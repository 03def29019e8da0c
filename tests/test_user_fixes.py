"""What a new user hit (issue 20) and the CLI's shared plumbing (issue 18), command by command.

Read-only built-ins, nothing written on refusal, results never replaced by empty ones, idempotent
training reruns, splits that grow with the store, messages on the right stream, physical minimums
of known targets, and the smaller checks (species, MC samples, report wording, cube short lines).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.io.vasp import Chgcar, Poscar
from typer.testing import CliRunner

import rhoprop
from rhoprop.cli import _csv_list, app
from rhoprop.data import DatasetStore, build_dataset, make_split
from rhoprop.data.split import SplitWarning
from rhoprop.datasets import BUILTIN_ROOT
from rhoprop.errors import DensityFormatError, SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.io import Density, read_density, write_cube
from rhoprop.train.runs import BUILTIN_MODEL

from helpers.densities import (
    density_on_grid,
    grid_shape,
    structure_for,
    write_chgcar,
    write_dataset_folder,
    write_labels_csv,
)

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PACKAGE_DATA = (BUILTIN_ROOT, BUILTIN_MODEL.parents[1])
SPIN = "CHGCAR.LiCoO2_spin.gz"
FAST = ["--model", "tiny", "--batch-size", "4", "--no-progress", "--accelerator", "cpu", "--threads", "1"]


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def _hashes(*roots: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    """A 12-sample store (n = 16, total density) with a random default split; tests copy it to write."""
    root = tmp_path_factory.mktemp("fixes_store")
    _, rows = write_dataset_folder(root / "in", 12, layout="flat")
    write_labels_csv(root / "labels.csv", rows)
    report = build_dataset(root / "in", root / "labels.csv", root / "ds",
                           StandardizeSettings(n=16, channels=("total",)), progress=False)
    assert report.clean, report.entries
    make_split(DatasetStore(root / "ds"), fractions=(0.5, 0.25, 0.25))
    return root / "ds"


def _copy_store(store: Path, dest: Path) -> Path:
    shutil.copytree(store, dest)
    return dest


@pytest.fixture(scope="module")
def licoo2(fixtures_dir: Path) -> Path:
    return fixtures_dir / SPIN


# --- 1. built-ins are read-only ---------------------------------------------------------------


def test_writing_commands_refuse_builtins_and_change_no_byte_of_the_package(
    tmp_path: Path, small_store: Path, licoo2: Path
) -> None:
    before = _hashes(*PACKAGE_DATA)
    builtin = BUILTIN_ROOT / "gpaw-v1"
    inputs = tmp_path / "in"
    write_dataset_folder(inputs, 2, layout="flat")
    refused = [
        ("dataset", "split", "gpaw-v1"),
        ("dataset", "split", builtin, "--name", "mine"),
        ("dataset", "verify", "gpaw-v1", "--record-missing"),
        ("dataset", "build", inputs, "--out", builtin),
        ("dataset", "build", inputs, "--out", builtin / "sub"),
        ("train", "gpaw-v1", "--out", BUILTIN_MODEL.parent / "run", *FAST),
        ("predict", "builtin", licoo2, "--out", BUILTIN_MODEL / "predictions"),
        ("analyze", "datasheet", "gpaw-v1", "--out", builtin / "sheet"),
        ("dataset", "copy", small_store, builtin.parent / "copy"),
    ]
    for args in refused:
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        errors = _error_lines(result.stderr)
        assert len(errors) == 1 and "read-only" in errors[0], (args, result.stderr)
        if args[0] == "dataset" and args[1] != "copy":
            assert "`rhoprop dataset copy gpaw-v1 " in errors[0], errors
    copy = tmp_path / "my-gpaw.rho"
    result = _invoke("dataset", "copy", "gpaw-v1", copy)
    assert result.exit_code == 0, result.output
    assert DatasetStore(copy).ids == DatasetStore(builtin).ids
    result = _invoke("dataset", "split", copy, "--name", "mine")
    assert result.exit_code == 0, result.output
    assert (copy / "splits" / "mine.json").is_file()
    assert _hashes(*PACKAGE_DATA) == before


def test_builtin_default_split_is_read_without_writing(tmp_path: Path) -> None:
    from rhoprop.train.data import open_store, split_ids

    before = _hashes(BUILTIN_ROOT)
    store = open_store("gpaw-v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)  # the shipped split covers every sample
        parts = split_ids(store, "default")
    assert sorted(i for p in parts.values() for i in p) == sorted(store.ids)
    assert all(parts[p] for p in ("train", "val", "test"))
    assert _hashes(BUILTIN_ROOT) == before


# --- 2. a refused build writes nothing ----------------------------------------------------------


def test_refused_build_leaves_no_store_behind(tmp_path: Path) -> None:
    _, rows = write_dataset_folder(tmp_path / "in", 3, layout="flat")
    labels = write_labels_csv(tmp_path / "labels.csv", rows)
    out = tmp_path / "s1"
    result = _invoke("dataset", "build", tmp_path / "in", "--labels", tmp_path / "missing.csv", "--out", out)
    assert result.exit_code == 2 and "missing.csv" in result.stderr
    assert not out.exists()
    schema = tmp_path / "targets.json"
    schema.write_text(json.dumps({"format_version": 1, "targets": [{"name": "nope", "kind": "regression"}]}))
    result = _invoke("dataset", "build", tmp_path / "in", "--labels", labels, "--schema", schema, "--out", out)
    assert result.exit_code == 2 and "nope" in result.stderr
    assert not out.exists()
    result = _invoke("dataset", "build", tmp_path / "in", "--labels", labels, "--out", out, "--n", "16",
                     "--no-progress")
    assert result.exit_code == 0, result.output
    assert DatasetStore(out).settings.n == 16


# --- 3. a failed predict keeps earlier results -------------------------------------------------


def test_predict_with_no_readable_input_keeps_the_earlier_results(tmp_path: Path, licoo2: Path) -> None:
    out = tmp_path / "results"
    result = _invoke("predict", "builtin", licoo2, "--out", out, "--mc-samples", "2")
    assert result.exit_code == 0, result.output
    before = {p: p.read_bytes() for p in (tmp_path / "results.csv", tmp_path / "results.json")}
    (tmp_path / "bad").mkdir()
    empty = tmp_path / "bad" / "empty.CHGCAR"
    empty.write_text("")
    result = _invoke("predict", "builtin", empty, "--out", out, "--mc-samples", "2")
    assert result.exit_code == 3, result.output
    assert "nothing written" in result.stderr
    assert {p: p.read_bytes() for p in before} == before


# --- 4. rerunning a finished training does nothing --------------------------------------------


def test_rerunning_a_finished_run_changes_nothing_and_more_epochs_extend_it(
    small_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "idem"
    args = ("train", small_store, "--out", out, "--targets", "band_gap", "--epochs", "2", *FAST)
    assert _invoke(*args).exit_code == 0
    weights = (out / "model" / "model.safetensors").read_bytes()
    run = json.loads((out / "run.json").read_text())
    logs = sorted((out / "logs" / "csv").iterdir())
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "already finished" in " ".join(result.stdout.split())
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    assert json.loads((out / "run.json").read_text()) == run
    assert sorted((out / "logs" / "csv").iterdir()) == logs
    more = [a if a != "2" else "3" for a in args]
    result = _invoke(*more)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["epochs"] == 3


# --- 5. appended samples extend the split ------------------------------------------------------


@pytest.mark.parametrize("method", ["random", "composition"])
def test_appended_samples_extend_the_split_keeping_old_assignments(tmp_path: Path, method: str) -> None:
    _, rows = write_dataset_folder(tmp_path / "more", 20, layout="flat")
    first = tmp_path / "first"
    first.mkdir()
    for row in rows[:12]:
        shutil.copy(tmp_path / "more" / f"{row['id']}.CHGCAR", first)
    settings = StandardizeSettings(n=8, channels=("total",))
    build_dataset(first, write_labels_csv(tmp_path / "a.csv", rows[:12]), tmp_path / "ds", settings,
                  progress=False)
    store = DatasetStore(tmp_path / "ds")
    old = make_split(store, method, (0.5, 0.25, 0.25), seed=3)
    report = build_dataset(tmp_path / "more", write_labels_csv(tmp_path / "b.csv", rows), tmp_path / "ds",
                           progress=False)
    assert report.n_added == 8
    store = DatasetStore(tmp_path / "ds")
    with pytest.warns(SplitWarning, match="8 new sample"):
        parts = store.splits("default")
    assert sorted(i for p in parts.values() for i in p) == sorted(store.ids)
    for part, ids in old.items():
        assert set(ids) <= set(parts[part])
    if method == "composition":
        formulas = dict(zip(store.ids, store.column("formula"), strict=True))
        seen = [{formulas[i] for i in parts[p]} for p in ("train", "val", "test")]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    with pytest.warns(SplitWarning):
        assert store.splits("default") == parts  # deterministic
    result = _invoke("dataset", "split", tmp_path / "ds", "--method", method, "--fractions", "0.5,0.25,0.25",
                     "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "8 new" in result.stdout + result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)
        assert DatasetStore(tmp_path / "ds").splits("default") == parts  # saved: nothing left to add


# --- 6. a split with an empty part --------------------------------------------------------------


def test_split_with_an_empty_part_is_refused_unless_asked_and_warned_about(tmp_path: Path) -> None:
    for i in (0, 13, 1, 27):  # Si, Si, C, C: two formulas for three parts
        _, structure = structure_for(i)
        write_chgcar(tmp_path / "in" / f"m{i}.CHGCAR", structure, 0.5)
    build_dataset(tmp_path / "in", None, tmp_path / "ds", StandardizeSettings(n=8, channels=("total",)),
                  progress=False)
    result = _invoke("dataset", "split", tmp_path / "ds", "--method", "composition")
    assert result.exit_code == 2
    assert "empty" in _error_lines(result.stderr)[0] and "--allow-empty" in result.stderr
    assert not (tmp_path / "ds" / "splits").exists()
    result = _invoke("dataset", "split", tmp_path / "ds", "--method", "composition", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("warning:") and "empty" in line for line in result.stderr.splitlines())
    with pytest.warns(SplitWarning, match="empty"):
        DatasetStore(tmp_path / "ds").splits("default")


# --- 7. streams, usage errors, --version -------------------------------------------------------


def test_predict_prints_results_on_stdout_and_warnings_and_errors_on_stderr(
    tmp_path: Path, licoo2: Path
) -> None:
    bad = tmp_path / "broken.CHGCAR"
    bad.write_text("not a density\n")
    result = _invoke("predict", "builtin", licoo2, bad, "--out", tmp_path / "p", "--mc-samples", "2")
    assert result.exit_code == 3
    assert "band_gap" in result.stdout
    assert "warning:" not in result.stdout and "error:" not in result.stdout
    assert any(line.startswith("warning:") for line in result.stderr.splitlines())
    assert any(line.startswith("error:") and "broken.CHGCAR" in line for line in result.stderr.splitlines())


def test_usage_errors_are_one_error_line_and_version_is_an_option() -> None:
    for args in (["dataset", "build"], ["train", "x", "--epochs", "many"], ["dataset", "nope"]):
        result = _invoke(*args)
        assert result.exit_code == 2, args
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.stderr)
        assert "--help" in lines[0]
    result = _invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"rhoprop {rhoprop.__version__}"


# --- 8. the spin warning only where it can matter ---------------------------------------------


def _non_spin_chgcar(path: Path, index: int) -> Path:
    _, structure = structure_for(index)
    total, _ = density_on_grid(structure, grid_shape(structure, 0.3))
    Chgcar(Poscar(structure), {"total": total * structure.volume}).write_file(path)
    return path


def test_spin_warning_only_for_elements_the_training_data_treated_as_magnetic(tmp_path: Path) -> None:
    from rhoprop.train.predict import predict_paths

    silicon = _non_spin_chgcar(tmp_path / "Si.CHGCAR", 0)
    iron = _non_spin_chgcar(tmp_path / "Fe.CHGCAR", 8)
    result = predict_paths("builtin", [silicon, iron], mc_samples=2)
    assert not [w for w in result.warnings[str(silicon)] if "spin" in w]
    assert [w for w in result.warnings[str(iron)] if "spin" in w and "Fe" in w]


def test_generate_names_failures_json_only_when_something_failed(tmp_path: Path) -> None:
    gen = REPO / "data-gen" / "gpaw-v1"
    (tmp_path / "out" / "results").mkdir(parents=True)
    shutil.copy(gen / "results" / "Al-fcc.json", tmp_path / "out" / "results")
    result = _invoke("generate", gen / "structures" / "Al-fcc.cif", "--out", tmp_path / "out",
                     "--densities-in", "gpaw-v1")
    assert result.exit_code == 0, result.output
    assert "computed 0" in result.stdout
    assert "failures.json" not in result.stdout and not (tmp_path / "out" / "failures.json").exists()


# --- 10. known targets carry their unit and minimum ---------------------------------------------


def test_known_targets_get_unit_and_minimum_without_a_schema(tmp_path: Path) -> None:
    ids, rows = write_dataset_folder(tmp_path / "in", 4, layout="flat")
    for i, row in enumerate(rows):
        row.update(magnetic_moment=0, c11=100 + i, c12=-5 + i, band_gap=row["band_gap"])
    write_labels_csv(tmp_path / "labels.csv", rows)
    build_dataset(tmp_path / "in", tmp_path / "labels.csv", tmp_path / "ds",
                  StandardizeSettings(n=8, channels=("total",)), progress=False)
    targets = DatasetStore(tmp_path / "ds").targets
    assert (targets["band_gap"].unit, targets["band_gap"].minimum) == ("eV", 0.0)
    assert (targets["magnetic_moment"].kind, targets["magnetic_moment"].minimum) == ("regression", 0.0)
    assert (targets["c11"].unit, targets["c11"].minimum) == ("GPa", 0.0)
    assert (targets["c12"].unit, targets["c12"].minimum) == ("GPa", None)


def test_pretrained_c11_interval_stops_at_zero_and_readme_names_the_bounded_targets(licoo2: Path) -> None:
    from rhoprop.data.labels import KNOWN_TARGETS
    from rhoprop.models import load_model
    from rhoprop.train.predict import predict_paths

    tasks = {t.name: t for t in load_model(BUILTIN_MODEL).tasks}
    assert tasks["c11"].minimum == 0.0 and tasks["bulk_modulus"].minimum == 0.0
    assert tasks["c12"].minimum is None and tasks["c44"].minimum is None
    rows = {r["target"]: r for r in predict_paths("builtin", [licoo2], mc_samples=4).rows}
    assert rows["c11"]["lo90"] >= 0.0 and rows["c11"]["value"] >= 0.0
    readme = (REPO / "README.md").read_text()
    match = re.search(r"bounded below by 0: ([^.]*)\.", readme)
    assert match, "README must list the targets with a physical minimum"
    named = set(re.findall(r"`(\w+)`", match.group(1)))
    assert named == {name for name, (_, minimum) in KNOWN_TARGETS.items() if minimum == 0.0}


# --- 11. smaller ones -----------------------------------------------------------------------------


def test_species_contradicting_a_vasp5_file_are_refused(licoo2: Path) -> None:
    with pytest.raises(DensityFormatError, match=r"Li.*Na|Na.*Li"):
        read_density(licoo2, species=["Na", "Co", "O"])
    assert read_density(licoo2, species=["Li", "Co", "O"]).structure.composition.reduced_formula == "LiCoO2"
    result = _invoke("inspect", licoo2, "--species", "Na, Co, O")
    assert result.exit_code == 2 and len(_error_lines(result.stderr)) == 1


def test_mc_samples_below_one_and_missing_files_are_refused_before_loading_a_model(
    tmp_path: Path, licoo2: Path
) -> None:
    result = _invoke("predict", "builtin", licoo2, "--mc-samples", "0", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "--mc-samples" in result.stderr
    assert not (tmp_path / "p.csv").exists()
    result = _invoke("predict", tmp_path / "no-model", tmp_path / "missing.CHGCAR")
    assert result.exit_code == 2 and "missing.CHGCAR" in result.stderr


def test_one_duplicated_id_is_counted_once_and_docs_name_the_report_columns(tmp_path: Path) -> None:
    _, rows = write_dataset_folder(tmp_path / "in", 3, layout="flat")
    write_labels_csv(tmp_path / "labels.csv", rows + [rows[0]])
    report = build_dataset(tmp_path / "in", tmp_path / "labels.csv", tmp_path / "ds",
                           StandardizeSettings(n=8, channels=("total",)), progress=False)
    assert "1 duplicate id" in report.summary()
    columns = list(pd.read_csv(tmp_path / "ds" / "report.csv").columns)
    docs = (REPO / "docs" / "datasets.md").read_text()
    match = re.search(r"listed in `DATASET/report.csv`.*?\(([^)]*)\)", docs, re.S)
    assert match and [c.strip() for c in match.group(1).split(",")] == columns


def test_a_cube_missing_one_value_points_at_the_short_line(tmp_path: Path, licoo2: Path) -> None:
    density = read_density(licoo2)
    small = Density(total=np.ascontiguousarray(density.total[::4, ::4, ::4]), structure=density.structure)
    path = write_cube(small, tmp_path / "a.cube")
    lines = path.read_text().splitlines(keepends=True)
    target = len(lines) // 2
    tokens = lines[target].split()
    lines[target] = " " + " ".join(tokens[:-1]) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(DensityFormatError, match=rf"line {target + 1}\b") as info:
        read_density(path)
    assert "truncated" not in str(info.value)


# --- issue 18: comma-separated options ----------------------------------------------------------


def test_comma_separated_options_strip_spaces_and_drop_empties(tmp_path: Path, small_store: Path) -> None:
    assert _csv_list(" a, b ,,c ,") == ["a", "b", "c"]
    assert _csv_list(None) is None
    labels = tmp_path / "labels.csv"
    frame = DatasetStore(small_store).labels[["band_gap", "bulk_modulus"]].reset_index()
    frame.to_csv(labels, index=False)
    result = _invoke("analyze", "targets", labels, "--out", tmp_path / "a", "--targets", "band_gap, bulk_modulus",
                     "--permutations", "19", "--min-pairs", "4")
    assert result.exit_code == 0, result.output
    groups = json.loads((tmp_path / "a" / "groups.json").read_text())
    assert sorted(t for g in groups["groups"] for t in g) == ["band_gap", "bulk_modulus"]


def test_settings_error_is_one_error_line_with_exit_2(small_store: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        make_split(DatasetStore(small_store), fractions=(0.5, 0.5))
    result = _invoke("dataset", "split", _copy_store(small_store, tmp_path / "s"), "--fractions", "0.5,0.5")
    assert result.exit_code == 2 and len(_error_lines(result.stderr)) == 1 and not result.stdout
