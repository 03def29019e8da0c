"""Real data: training on the built-in GPAW dataset, and the shipped pretrained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.data import DatasetStore, make_split
from rhoprop.datasets import resolve
from rhoprop.models import load_model
from rhoprop.train.runs import BUILTIN_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def gpaw_store(tmp_path_factory) -> Path:
    """A copy of the built-in gpaw-v1 store (GPAW PBE densities) with its own random split."""
    path = tmp_path_factory.mktemp("gpaw") / "gpaw-v1"
    shutil.copytree(resolve("gpaw-v1"), path)
    make_split(DatasetStore(path), fractions=(0.7, 0.15, 0.15), seed=0, name="tests")
    return path


def test_fresh_clone_trains_on_real_gpaw_densities_and_beats_the_mean_predictor(gpaw_store: Path) -> None:
    out = gpaw_store.parent / "run"
    result = runner.invoke(app, ["train", str(gpaw_store), "--out", str(out), "--split", "tests",
                                 "--targets", "volume_per_atom,total_energy,is_metal", "--model", "small",
                                 "--epochs", "12", "--lr", "3e-3", "--batch-size", "8", "--patience", "0",
                                 "--threads", "1", "--no-progress", "--accelerator", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "eval" / "tests_test" / "metrics.csv").set_index(["model", "target"])
    # Volume per atom is the easy target for a density model (atoms per volume is visible in rho);
    # the mass density is not: the valence pseudo-density hardly shows atomic masses.
    for target in ("volume_per_atom", "total_energy"):
        assert table.loc[("rhoprop", target), "mae"] < table.loc[("mean", target), "mae"], target
    assert table.loc[("rhoprop", "is_metal"), "n"] > 0
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["training"]["valence"]["matches_gpaw_setups"] is True
    assert meta["targets"][0]["unit"] == "Å^3/atom"


@pytest.mark.parametrize("min_labels", [10, 0])
def test_targets_with_few_validation_labels_do_not_steer_early_stopping(gpaw_store: Path, min_labels: int) -> None:
    """gpaw-v1's default split holds 4 phonon labels in its validation part: with the default rule
    their loss is logged but left out of val_loss; with --monitor-min-labels 0 every target counts."""
    out = gpaw_store.parent / f"monitor-{min_labels}"
    result = runner.invoke(app, ["train", str(gpaw_store), "--out", str(out), "--targets",
                                 "volume_per_atom,band_gap,dynamically_stable", "--model", "tiny", "--epochs", "2",
                                 "--batch-size", "16", "--monitor-min-labels", str(min_labels), "--threads", "1",
                                 "--no-progress", "--accelerator", "cpu"])
    assert result.exit_code == 0, result.output
    log = pd.read_csv(out / "logs" / "csv" / "version_0" / "metrics.csv").dropna(subset=["val_loss"])
    assert len(log) == 2
    for _, row in log.iterrows():
        kept = row["val_volume_per_atom_loss"] + row["val_band_gap_loss"]
        assert row["val_dynamically_stable_loss"] > 0
        if min_labels:
            assert row["val_loss"] == pytest.approx(kept, rel=1e-5)
            assert row["val_loss_all"] == pytest.approx(kept + row["val_dynamically_stable_loss"], rel=1e-5)
        else:
            assert row["val_loss"] == pytest.approx(kept + row["val_dynamically_stable_loss"], rel=1e-5)
            assert "val_loss_all" not in log.columns or pd.isna(row["val_loss_all"])


def test_builtin_model_matches_the_builtin_dataset_settings() -> None:
    bundle = load_model(BUILTIN_MODEL)
    bundle.check_standardize(DatasetStore(resolve("gpaw-v1")).settings)
    assert bundle.training["valence"]["per_element"]["Li"] == pytest.approx(1.0, abs=1e-3)
    assert len(bundle.tasks) == 17 and bundle.model.num_parameters < 1_000_000


def test_builtin_predicts_vasp_licoo2_with_values_and_clear_warnings(fixtures_dir: Path, tmp_path: Path) -> None:
    vasp = fixtures_dir / "CHGCAR.LiCoO2_spin.gz"
    result = runner.invoke(app, ["predict", "builtin", str(vasp), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "p.json").read_text())
    rows = {r["target"]: r for r in data["predictions"]}
    assert len(rows) == 17
    assert 0.5 < rows["density"]["value"] < 20 and rows["density"]["unit"] == "g/cm^3"
    assert 2 < rows["volume_per_atom"]["value"] < 50
    assert rows["density"]["lo90"] < rows["density"]["value"] < rows["density"]["hi90"]
    assert rows["is_metal"]["value"] in ("0", "1") and 0.5 <= rows["is_metal"]["probability"] <= 1
    stable = rows["dynamically_stable"]  # phonon label, with the probability of the predicted class
    assert stable["value"] in ("0", "1") and 0.5 <= stable["probability"] <= 1
    low = rows["min_frequency"]  # capped at 0 THz by definition: so are its prediction and interval
    assert low["unit"] == "THz" and low["lo90"] <= low["value"] <= low["hi90"] <= 0.0, low
    for name in ("band_gap", "magnetic_moment", "bulk_modulus"):  # physical minimum 0 in the schema
        assert 0 <= rows[name]["lo90"] <= rows[name]["value"] <= rows[name]["hi90"], rows[name]
    notes = " ".join(data["warnings"][str(vasp)])
    assert "a VASP density, but the model was trained on GPAW densities" in notes
    assert "holds 48.00 electrons" in notes and "gives 44.00" in notes and "Li 3 instead of 1" in notes
    assert "warning" in result.output


def test_builtin_warns_about_elements_never_seen_in_training(fixtures_dir: Path, tmp_path: Path) -> None:
    vasp4 = fixtures_dir / "CHGCAR.vasp4_8atom_nospecies.gz"
    seen = set(load_model(BUILTIN_MODEL).training["elements"])
    assert "Gd" not in seen and "Si" in seen  # a lanthanide: no tier computes one yet
    result = runner.invoke(app, ["predict", "builtin", str(vasp4), "--species", "Gd", "--out", str(tmp_path / "gd")])
    assert result.exit_code == 0, result.output
    notes = " ".join(json.loads((tmp_path / "gd.json").read_text())["warnings"][str(vasp4)])
    assert "Gd never appear" in notes
    result = runner.invoke(app, ["predict", "builtin", str(vasp4), "--species", "Si", "--out", str(tmp_path / "si")])
    assert result.exit_code == 0, result.output
    assert "never appear" not in " ".join(json.loads((tmp_path / "si.json").read_text())["warnings"][str(vasp4)])


def test_predict_with_a_dataset_name_points_to_the_builtin_model(fixtures_dir: Path, tmp_path: Path) -> None:
    vasp = fixtures_dir / "CHGCAR.LiCoO2_spin.gz"
    result = runner.invoke(app, ["predict", "gpaw-v1", str(vasp), "--out", str(tmp_path / "p")])
    assert result.exit_code != 0
    assert "gpaw-v1 is a built-in dataset, its pretrained model is 'builtin'" in " ".join(result.output.split())
    result = runner.invoke(app, ["predict", str(tmp_path / "nothing"), str(vasp), "--out", str(tmp_path / "p")])
    assert result.exit_code != 0 and "no such file or directory" in " ".join(result.output.split())
