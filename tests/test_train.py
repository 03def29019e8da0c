"""End to end: train, resume, DDP, evaluate (with baselines), predict, on a store of crystal densities.

The store is built once per session from CHGCAR files of 32 real crystal structures (13 prototypes,
strained, with displaced atoms; densities from valence-electron shells, see helpers/densities.py),
labelled with their mass density, volume per atom, band gap and metallicity.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.data import DatasetStore, build_dataset, make_split
from rhoprop.data.build import EXIT_SKIPPED
from rhoprop.errors import IncompatibleModelError, SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.models import load_model
from rhoprop.train.config import TrainConfig
from rhoprop.train.evaluate import evaluate_run
from rhoprop.train.fit import train

from helpers.densities import structure_for, write_dataset_folder, write_labels_csv

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
TARGETS = "density,volume_per_atom,band_gap,is_metal"
FAST = ["--model", "tiny", "--batch-size", "4", "--no-progress", "--accelerator", "cpu", "--threads", "1"]


@pytest.fixture(scope="session")
def store_path(tmp_path_factory) -> Path:
    """A 32-sample store (n = 16, total density, cube mode) with a 20/6/6 default split; the band gap's
    schema gives it its physical minimum 0."""
    root = tmp_path_factory.mktemp("train_store")
    ids, rows = write_dataset_folder(root / "in", 32, layout="flat")
    for i, row in enumerate(rows):
        _, structure = structure_for(i, 0)
        row["density"] = round(float(structure.density), 4)
        row["volume_per_atom"] = round(structure.volume / len(structure), 3)
    write_labels_csv(root / "labels.csv", rows)
    schema = {"format_version": 1, "targets": [{"name": "band_gap", "kind": "regression", "unit": "eV", "minimum": 0}]}
    (root / "targets.json").write_text(json.dumps(schema))
    report = build_dataset(root / "in", root / "labels.csv", root / "ds", StandardizeSettings(n=16, channels=("total",)),
                           progress=False, schema=root / "targets.json")
    assert report.clean, report.entries
    make_split(DatasetStore(root / "ds"), fractions=(0.625, 0.1875, 0.1875))
    return root / "ds"


@pytest.fixture(scope="session")
def trained_run(store_path: Path, tmp_path_factory) -> Path:
    """A run trained through the CLI for 12 epochs on four targets (shared by the tests below)."""
    out = tmp_path_factory.mktemp("run") / "run"
    result = runner.invoke(app, ["train", str(store_path), "--out", str(out), "--targets", TARGETS, "--epochs", "12",
                                 "--lr", "3e-3", "--patience", "0", *FAST])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and "new run" in result.output
    return out


def test_training_writes_config_checkpoints_logs_and_model(trained_run: Path) -> None:
    config = TrainConfig.from_json(trained_run / "train_config.json")
    assert config.targets == tuple(TARGETS.split(",")) and config.model == "tiny"
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "checkpoints").glob("best-epoch=*.ckpt"))
    assert list((trained_run / "logs" / "tb").glob("version_0/events.out.tfevents.*"))
    curves = pd.read_csv(trained_run / "logs" / "csv" / "version_0" / "metrics.csv")
    assert {"val_density_mae", "val_is_metal_acc", "train_loss", "val_loss"} <= set(curves.columns)
    losses = curves.dropna(subset=["train_loss"])["train_loss"].to_numpy()
    assert len(losses) == 12 and losses[-3:].mean() < losses[:3].mean()
    meta = json.loads((trained_run / "model" / "model.json").read_text())
    assert meta["training"]["code"] == "vasp" and "Si" in meta["training"]["elements"]
    assert meta["uncertainty"]["method"] == "mc_dropout" and meta["uncertainty"]["scale"]["density"] > 0
    assert meta["standardize"]["n"] == 16
    # Lightning checkpoints hold only tensors and plain values: loadable with weights_only=True.
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 11


def test_model_beats_mean_predictor_on_density_and_coverage_is_reported(trained_run: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(trained_run)])
    assert result.exit_code == 0, result.output
    out = trained_run / "eval" / "default_test"
    table = pd.read_csv(out / "metrics.csv")
    row = table.set_index(["model", "target"])
    assert row.loc[("rhoprop", "density"), "mae"] < 0.8 * row.loc[("mean", "density"), "mae"]
    assert row.loc[("rhoprop", "density"), "r2"] > 0.0
    assert 0.0 <= row.loc[("rhoprop", "density"), "coverage90"] <= 1.0
    assert 0.0 <= row.loc[("rhoprop", "is_metal"), "accuracy"] <= 1.0
    for name in ("parity_density.png", "roc_is_metal.png", "confusion_is_metal.png", "learning_curves.png",
                 "metrics.json", "predictions.csv"):
        assert (out / name).stat().st_size > 0, name
    preds = pd.read_csv(out / "predictions.csv")
    dens = preds[preds.target == "density"]
    assert len(dens) == 6 and (dens.lo90 <= dens.pred).all() and (dens.pred <= dens.hi90).all()
    gap = preds[preds.target == "band_gap"]
    assert (gap.pred >= 0).all() and (gap.lo90 >= 0).all() and (gap.lo90 <= gap.pred).all()
    assert "rhoprop" in result.output and "mean" in result.output


def test_baselines_are_trained_on_the_same_split_and_reported(trained_run: Path, tmp_path: Path) -> None:
    from rhoprop.train.baselines import BaselineSettings, CGCNNConfig

    settings = BaselineSettings(cgcnn=CGCNNConfig(atom_dim=16, n_conv=2, embed_dim=16, head_hidden=8),
                                cgcnn_epochs=3, gb_max_iter=50)
    report = evaluate_run(trained_run, out=tmp_path / "eval", baselines=True, baseline_settings=settings)
    table = report.table().set_index(["model", "target"])
    for model in ("rhoprop", "mean", "composition", "cgcnn"):
        assert np.isfinite(table.loc[(model, "density"), "mae"]), model
    cached = json.loads((trained_run / "baselines" / "default_test.json").read_text())
    test_ids = DatasetStore(json.loads((trained_run / "run.json").read_text())["dataset_path"]).splits()["test"]
    assert cached["ids"] == test_ids
    # A later evaluation without --baselines reuses the cached predictions.
    again = evaluate_run(trained_run, out=tmp_path / "eval2").table()
    assert set(again.model) == {"rhoprop", "mean", "composition", "cgcnn"}


def test_predict_prints_every_target_with_uncertainty_and_writes_csv_json(
    trained_run: Path, store_path: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    inputs = store_path.parent / "in"
    files = sorted(inputs.glob("*.CHGCAR"))[:2]
    vasp = fixtures_dir / "CHGCAR.LiCoO2_spin.gz"
    result = runner.invoke(app, ["predict", str(trained_run), *map(str, files), str(vasp), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "p.json").read_text())
    rows = pd.read_csv(tmp_path / "p.csv")
    assert len(rows) == 3 * 4 and set(rows.target) == set(TARGETS.split(","))
    dens = rows[rows.target == "density"]
    assert (dens.value > 0).all() and (dens.uncertainty > 0).all() and (dens.lo90 < dens.hi90).all()
    assert rows[rows.target == "is_metal"].probability.between(0.5, 1.0).all()
    gap = rows[rows.target == "band_gap"]
    assert (gap.lo90 >= 0).all() and (gap.value >= gap.lo90).all() and (gap.hi90 >= gap.value).all()
    assert any("Co never appear" in w for w in data["warnings"][str(vasp)])
    assert data["warnings"][str(files[0])] == []
    assert "warning" in result.output and "Co" in result.output


def test_unreadable_file_is_reported_and_others_still_predicted(trained_run: Path, store_path: Path,
                                                                  tmp_path: Path) -> None:
    bad = tmp_path / "CHGCAR"
    bad.write_text("not a density\n")
    good = sorted((store_path.parent / "in").glob("*.CHGCAR"))[0]
    result = runner.invoke(app, ["predict", str(trained_run), str(good), str(bad), "--out", str(tmp_path / "p")])
    assert result.exit_code == EXIT_SKIPPED
    data = json.loads((tmp_path / "p.json").read_text())
    assert str(bad) in data["errors"] and len(data["predictions"]) == 4


def test_evaluating_on_differently_standardized_data_is_refused(trained_run: Path, store_path: Path,
                                                                 tmp_path: Path) -> None:
    other = tmp_path / "ds16cell"
    build_dataset(store_path.parent / "in", store_path.parent / "labels.csv", other,
                  StandardizeSettings(mode="cell", n=16), progress=False)
    make_split(DatasetStore(other))
    with pytest.raises(IncompatibleModelError, match="mode: model 'cube' vs data 'cell'"):
        evaluate_run(trained_run, dataset=other)
    result = runner.invoke(app, ["evaluate", str(trained_run), "--dataset", str(other)])
    assert result.exit_code == 2 and "standardized differently" in result.output


def test_same_seed_repeats_a_cpu_run_exactly(store_path: Path, tmp_path: Path) -> None:
    config = TrainConfig(model="tiny", targets=("density", "is_metal"), epochs=2, batch_size=4, progress=False,
                         accelerator="cpu", augment=True, mc_samples=4, threads=1)
    a = train(store_path, tmp_path / "a", config)
    b = train(store_path, tmp_path / "b", config)
    assert a is not None and b is not None
    wa = load_model(a.model_dir).model.state_dict()
    wb = load_model(b.model_dir).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(store_path, tmp_path / "c", TrainConfig.from_dict({**config.to_dict(), "seed": 1}))
    wc = load_model(c.model_dir).model.state_dict()
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resuming_with_other_settings_is_refused(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out).mkdir()
    TrainConfig(model="tiny", targets=("density",)).to_json(out / "train_config.json")
    with pytest.raises(SettingsError, match="cannot resume.*model: run 'tiny' vs now 'small'"):
        train(store_path, out, TrainConfig(model="small", targets=("density",)))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    result = runner.invoke(app, ["train", str(store_path), "--out", str(tmp_path / "other"), *FAST])
    assert result.exit_code == 2 and "is not a rhoprop run" in result.output


def test_unknown_target_lists_the_dataset_targets(store_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(store_path), "--out", str(tmp_path / "r"), "--targets", "bandgap", *FAST])
    assert result.exit_code == 2
    assert "bandgap" in result.output and "band_gap" in result.output


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rhoprop.cli", *args]


def test_killed_run_resumes_from_its_last_checkpoint(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", str(store_path), "--out", str(out), "--targets", "density", "--epochs", "4", *FAST]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), proc.stderr.read().decode()[-2000:]
    assert not (out / "model").exists(), "the run finished before it could be killed"
    done = torch.load(last, weights_only=True)["epoch"]
    assert done < 3
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "resumed from checkpoints/last.ckpt" in " ".join(result.output.split())
    # The SIGKILL may land while the first run's CSV logger has its file open but empty.
    logs = sorted((out / "logs" / "csv").glob("version_*/metrics.csv"))
    resumed = pd.read_csv(logs[-1]).dropna(subset=["val_loss"])
    assert sorted(set(resumed.epoch.astype(int))) == list(range(done + 1, 4))
    assert torch.load(last, weights_only=True)["epoch"] == 3
    assert (out / "model" / "model.json").is_file()


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_and_exports_once(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = subprocess.run(
        _cli("train", str(store_path), "--out", str(out), "--targets", "density,is_metal", "--epochs", "2",
             "--devices", "2", "--strategy", "ddp", *FAST),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    assert proc.stdout.count("trained 2 target(s)") == 1  # only rank 0 exports and reports
    run = json.loads((out / "run.json").read_text())
    assert run["epochs"] == 2
    assert load_model(out / "model").tasks[0].name == "density"


def test_one_model_per_target_group(store_path: Path, tmp_path: Path) -> None:
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"groups": [["density", "volume_per_atom"], ["is_metal"]]}))
    out = tmp_path / "grouped"
    result = runner.invoke(app, ["train", str(store_path), "--out", str(out), "--groups", str(groups),
                                 "--epochs", "1", *FAST])
    assert result.exit_code == 0, result.output
    assert load_model(out / "group_0" / "model").tasks[1].name == "volume_per_atom"
    assert [t.name for t in load_model(out / "group_1" / "model").tasks] == ["is_metal"]
    report = evaluate_run(out)
    assert set(report.table().query("model == 'rhoprop'").target) == {"density", "volume_per_atom", "is_metal"}
    (tmp_path / "bad.json").write_text(json.dumps({"groups": [["density"], ["density"]]}))
    result = runner.invoke(app, ["train", str(store_path), "--out", str(tmp_path / "x"), "--groups",
                                 str(tmp_path / "bad.json"), *FAST])
    assert result.exit_code == 2 and "more than one group" in result.output


def test_predictions_do_not_move_when_a_real_density_is_seen_from_another_origin(
    trained_run: Path, store_path: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    """VASP LiCoO2 moved by random fractional vectors (exact band-limited shifts, atoms with it):
    every prediction stays within 2 % of that target's spread over the test split."""
    from rhoprop.grid import shift_origin
    from rhoprop.io import read_density, write_chgcar
    from rhoprop.train.predict import predict_paths

    density = read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz")
    files = [tmp_path / "orig.CHGCAR"]
    write_chgcar(density, files[0])
    for k, shift in enumerate(np.random.default_rng(3).random((3, 3))):
        files.append(tmp_path / f"moved{k}.CHGCAR")
        write_chgcar(shift_origin(density, shift), files[-1])
    rows = pd.DataFrame(predict_paths(trained_run, files, mc_samples=1).rows)
    store = DatasetStore(store_path)
    test_labels = store.labels.loc[store.splits("default")["test"]]
    for target, group in rows.groupby("target"):
        values = group.set_index("file")
        if group["kind"].iloc[0] == "regression":
            spread = float(test_labels[target].std())
            moved = values["value"].astype(float)
        else:
            spread = 1.0  # the probability of the class predicted for the original file
            same = values["value"] == values["value"].iloc[0]
            prob = values["probability"].astype(float)
            moved = prob.where(same, 1.0 - prob)
        change = (moved - moved[str(files[0])]).abs().max()
        assert change <= 0.02 * spread, (target, change, spread)


def test_evaluate_reports_a_line_per_stage_when_not_on_a_terminal(trained_run: Path, tmp_path: Path) -> None:
    proc = subprocess.run(_cli("evaluate", str(trained_run), "--out", str(tmp_path / "ev")),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "evaluate" in proc.stderr and "1/2" in proc.stderr and "2/2" in proc.stderr
