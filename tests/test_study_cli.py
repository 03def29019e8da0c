"""`rhoprop study multitask` end to end on a dataset store, with the real rhoprop trainer.

The store holds densities of real crystal prototypes (strained, displaced) and labels that are
exact properties of each structure: mass density, volume per atom, valence electron density.
"""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from rhoprop.cli import app

from helpers.densities import build_store, write_dataset_folder


def test_study_cli_trains_evaluates_and_resumes_without_retraining(tmp_path) -> None:
    store = build_store(tmp_path)
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"groups": [["density", "valence_density"]]}))
    out = tmp_path / "study"
    args = [
        "study",
        "multitask",
        str(store),
        "--out",
        str(out),
        "--targets",
        "density,valence_density",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--configs",
        "single,group",
        "--groups",
        str(groups),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "3 trained now, 0 reused" in first.output
    results = pd.read_csv(out / "results.csv")
    assert set(results.config) == {"single", "group"} and len(results) == 4
    assert (results.score <= 1.0).all() and (results.mae > 0).all()
    assert (results[results.config == "group"].n_cotrained == 2).all()
    study = json.loads((out / "study.json").read_text())
    assert study["train"]["train"]["epochs"] == 1 and study["train"]["split_ids"]
    assert len(list((out / "runs").glob("*/run/model/model.json"))) == 3

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "0 trained now, 3 reused" in second.output
    assert pd.read_csv(out / "results.csv").equals(results)


def test_study_cli_reports_a_missing_split_and_bad_seeds(tmp_path) -> None:
    from rhoprop.data import build_dataset
    from rhoprop.grid.settings import StandardizeSettings

    ids, _ = write_dataset_folder(tmp_path / "in", 4, layout="flat")
    (tmp_path / "labels.csv").write_text(
        "id,x\n" + "".join(f"{sid},{k}\n" for k, sid in enumerate(ids))
    )
    build_dataset(
        tmp_path / "in",
        tmp_path / "labels.csv",
        tmp_path / "ds",
        StandardizeSettings(n=8),
        progress=False,
    )
    runner = CliRunner()
    result = runner.invoke(
        app, ["study", "multitask", str(tmp_path / "ds"), "--out", str(tmp_path / "s")]
    )
    assert (
        result.exit_code == 2
        and "split" in result.output
        and "rhoprop dataset split" in result.output
    )
    result = runner.invoke(
        app,
        [
            "study",
            "multitask",
            str(tmp_path / "ds"),
            "--out",
            str(tmp_path / "s"),
            "--seeds",
            "0,one",
        ],
    )
    assert result.exit_code == 2 and "--seeds" in result.output


def test_a_study_runs_from_python_and_writes_only_its_cache(tmp_path, capsys) -> None:
    from rhoprop.analysis.multitask import prepare_multitask_study, run_multitask_study

    store = build_store(tmp_path, count=12)
    seen: list[tuple[int, int, str]] = []
    plan = prepare_multitask_study(
        str(store),
        targets=["density", "valence_density"],
        seeds=[0],
        configs=["single", "group"],
        min_pairs=4,
        train_overrides={"epochs": 1},
        progress=lambda done, total, what: seen.append((done, total, what)),
    )
    assert plan.analysis is not None
    assert tuple(plan.analysis.grouping.targets) == plan.settings.targets
    assert seen and seen[-1][:2] == (1, 1)  # the similarity of the one pair, on the train split
    study = run_multitask_study(plan, tmp_path / "study", max_trainings=1)
    assert study.run.trained == 1 and study.run.missing >= 1
    assert len(study.results.results) >= 1 and not study.results.summary.empty
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["runs", "study.json"]
    assert capsys.readouterr().out == ""


def test_study_over_folds_pins_its_materials_and_chooses_groups_per_fold(tmp_path) -> None:
    """--folds: the replicates are the benchmark's composition folds, each fold's groups come from
    its own training materials (kept, not recomputed, on a rerun), and --only ids:FILE pins the
    materials so that the study's trainings stay valid while the store grows."""
    from rhoprop.analysis.benchmark import composition_folds, formulas_of
    from rhoprop.data import DatasetStore

    store_path = build_store(tmp_path, count=16)
    store = DatasetStore(store_path)
    pinned = tmp_path / "ids.txt"
    pinned.write_text("# the study's materials\n" + "\n".join(store.ids[:14]) + "\n")
    out = tmp_path / "study"
    args = ["study", "multitask", str(store_path), "--out", str(out), "--folds", "2",
            "--targets", "density,volume_per_atom,valence_density", "--epochs", "1",
            "--configs", "single,all", "--only", f"ids:{pinned}"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "fold 0:" in first.output and "fold 1:" in first.output
    assert "8 trained now, 0 reused" in first.output  # 2 folds x (3 single + 1 all)
    results = pd.read_csv(out / "results.csv")
    assert sorted(set(results.seed)) == [0, 1] and len(results) == 12
    study = json.loads((out / "study.json").read_text())
    assert study["folds"] == 2 and len(study["fold_groups"]) == 2
    assert study["train"]["folds"] == 2 and "split_ids" not in study["train"]
    for k in (0, 1):
        groups = json.loads((out / "analysis" / f"fold-{k}" / "groups.json").read_text())
        assert groups["key"] and (out / "analysis" / f"fold-{k}" / "pairs.csv").is_file()
    # each fold tested on its own formulas: the test parts are the benchmark's folds
    folds = composition_folds(store, 2)
    formulas = formulas_of(store)
    from rhoprop.analysis.study_train import RhopropTrainer
    from rhoprop.train.config import TrainConfig

    trainer = RhopropTrainer(str(store_path), TrainConfig(), only=f"ids:{pinned}", folds=2)
    for k, parts in enumerate(trainer.fold_splits):
        assert parts["test"] and all(folds[i] == k for i in parts["test"])
        train_formulas = {formulas[i] for i in parts["train"] + parts["val"]}
        assert not train_formulas & {formulas[i] for i in parts["test"]}
        assert set(sum(parts.values(), [])) <= set(store.ids[:14])
    # a rerun reads the fold analyses back and trains nothing
    (out / "analysis" / "fold-0" / "pairs.csv").unlink()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "0 trained now, 8 reused" in second.output
    assert not (out / "analysis" / "fold-0" / "pairs.csv").exists()  # not recomputed
    assert pd.read_csv(out / "results.csv").equals(results)
    # an id list naming a material the store lacks is refused before anything runs
    pinned.write_text("\n".join([*store.ids[:3], "no-such-material"]) + "\n")
    bad = CliRunner().invoke(app, [*args[:-2], "--only", f"ids:{pinned}", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no-such-material" in bad.output
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
