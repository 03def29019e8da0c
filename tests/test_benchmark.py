"""``rhoprop benchmark``: grouped cross-validation of the baselines and the MSA-3DCNN on real GPAW data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rhoprop.datasets
from rhoprop.analysis.benchmark import (
    BenchmarkSettings,
    best_models,
    composition_folds,
    fold_of,
    fold_parts,
    formulas_of,
    paired_comparison,
    run_benchmark,
    write_benchmark,
)
from rhoprop.cli import app
from rhoprop.errors import SettingsError
from rhoprop.train.config import TrainConfig

runner = CliRunner()
GB = ("mean", "composition", "density-invariants")


@pytest.fixture(scope="module")
def gpaw():
    return rhoprop.datasets.load("gpaw-v1")


def test_folds_keep_every_formula_in_one_fold_and_do_not_move_when_samples_are_added(gpaw) -> None:
    folds = composition_folds(gpaw, 5, seed=0)
    formulas = formulas_of(gpaw)
    by_formula: dict[str, set[int]] = {}
    for sid, fold in folds.items():
        by_formula.setdefault(formulas[sid], set()).add(fold)
    assert all(len(f) == 1 for f in by_formula.values())
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    assert composition_folds(gpaw, 5, seed=0) == folds  # deterministic
    assert composition_folds(gpaw, 5, seed=1) != folds
    # the rule depends on the formula alone: a new material cannot move the others
    assert fold_of("NaCl", 5, 0) == folds["NaCl-rocksalt"]
    settings = BenchmarkSettings()
    parts = fold_parts(folds, formulas, 2, settings)
    assert not set(parts["test"]) & set(parts["train"] + parts["val"])
    assert {formulas[i] for i in parts["val"]}.isdisjoint({formulas[i] for i in parts["train"]})
    half = fold_parts(folds, formulas, 2, settings, fraction=0.5)
    assert set(half["train"]) < set(parts["train"]) and half["test"] == parts["test"]


def test_benchmark_scores_baselines_on_every_fold_resumes_from_its_cache_and_writes_tables(gpaw, tmp_path) -> None:
    settings = BenchmarkSettings(folds=3, models=GB, targets=("volume_per_atom", "fermi_energy", "is_metal"),
                                 curve_models=("composition",), train_fractions=(0.5, 1.0))
    result = run_benchmark("gpaw-v1", tmp_path / "work", settings)
    rows = result.rows
    assert set(rows["model"]) == set(GB) and set(rows["fold"]) == {0, 1, 2}
    full = rows[rows["fraction"] == 1.0]
    assert len(full) == 3 * 3 * 3
    assert len(rows[(rows["model"] == "composition") & (rows["fraction"] == 0.5)]) == 3 * 3
    summary = result.summary().set_index(["target", "model"])
    # real signal: both gradient-boosting models beat the mean predictor on volume and Fermi level
    for target in ("volume_per_atom", "fermi_energy"):
        mean_mae = summary.loc[(target, "mean"), "mae_mean"]
        assert summary.loc[(target, "composition"), "mae_mean"] < 0.7 * mean_mae
        assert summary.loc[(target, "density-invariants"), "mae_mean"] < 0.7 * mean_mae
    assert summary.loc[("is_metal", "density-invariants"), "roc_auc_mean"] > 0.8
    assert 0.5 < summary.loc[("is_metal", "composition"), "f1_mean"] <= 1.0  # F1 of the metals
    cached = sorted((tmp_path / "work" / "cache").rglob("*.json"))
    assert len(cached) == 3 * 3 + 3
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = run_benchmark("gpaw-v1", tmp_path / "work", settings)
    pd.testing.assert_frame_equal(again.rows, rows)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    paths = write_benchmark(result, tmp_path / "out", reference="density-invariants")
    table = pd.read_csv(tmp_path / "out" / "benchmark.csv")
    assert list(table.columns[:7]) == ["dataset", "model", "target", "fold", "n_train", "mae", "r2"]
    assert (tmp_path / "out" / "benchmark.png").stat().st_size > 10_000
    assert "density-invariants" in (tmp_path / "out" / "benchmark.md").read_text()
    assert json.loads((tmp_path / "out" / "folds.json").read_text())["assignment"] == result.folds
    assert {p.name for p in paths} >= {"paired.csv", "learning_curves.png", "settings.json"}
    paired = paired_comparison(rows, "density-invariants")
    assert set(paired["model"]) == {"mean", "composition"}
    assert set(best_models(rows)["target"]) == {"volume_per_atom", "fermi_energy", "is_metal"}


def test_two_tiers_are_also_scored_on_each_tiers_part_of_every_test_fold(tmp_path) -> None:
    settings = BenchmarkSettings(folds=3, models=("mean",), curve_models=(),
                                 targets=("volume_per_atom", "bulk_modulus", "is_metal"))  # fmt: skip
    result = run_benchmark("gpaw-v1,gpaw-scf-v1", tmp_path / "work", settings)
    assert result.dataset == "gpaw-v1,gpaw-scf-v1"
    by_tier = result.tier_rows
    assert by_tier is not None and set(by_tier["tier"]) == {"gpaw-v1", "gpaw-scf-v1"}
    # the fast tier has no bulk moduli: its part of a fold has no row for them
    bulk = by_tier[by_tier["target"] == "bulk_modulus"]
    assert set(bulk["tier"]) == {"gpaw-v1"} and len(bulk) == 3  # one per fold
    # the same predictions: the tiers' MAEs, weighted by their test materials, give the whole fold's
    tier_of = {i: i.split("/", 1)[0] for i in result.folds}
    for (model, fold), rows in result.rows.groupby(["model", "fold"]):
        whole = float(rows.loc[rows["target"] == "volume_per_atom", "mae"].iloc[0])
        parts = by_tier[(by_tier["model"] == model) & (by_tier["fold"] == fold)
                        & (by_tier["target"] == "volume_per_atom")]  # fmt: skip
        counts = [sum(1 for i, f in result.folds.items() if f == fold and tier_of[i] == tier)
                  for tier in parts["tier"]]  # fmt: skip
        assert np.isclose(np.average(parts["mae"], weights=counts), whole)
    summary = result.tier_summary()
    assert summary is not None and list(summary.columns[:3]) == ["tier", "target", "model"]
    v = summary[summary["target"] == "volume_per_atom"].set_index("tier")["mae_mean"]
    assert v["gpaw-v1"] != v["gpaw-scf-v1"]  # the tiers' volume distributions differ
    write_benchmark(result, tmp_path / "out")
    assert len(pd.read_csv(tmp_path / "out" / "by_tier.csv")) == len(by_tier)
    assert "scored on the `gpaw-scf-v1` materials" in (tmp_path / "out" / "benchmark.md").read_text()
    # one store: nothing per tier
    single = run_benchmark("gpaw-v1", tmp_path / "work1", BenchmarkSettings(folds=2, models=("mean",),
                           curve_models=(), targets=("volume_per_atom",)))  # fmt: skip
    assert single.tier_rows is None and single.tier_summary() is None


def test_benchmark_trains_the_msa3dcnn_on_the_same_folds_through_the_cli(tmp_path) -> None:
    config = BenchmarkSettings(
        folds=2, models=("mean", "msa3dcnn-density", "hybrid-density"), targets=("volume_per_atom", "is_metal"),
        curve_models=(), train_fractions=(0.25,),
        train=TrainConfig(model="tiny", epochs=2, patience=0, batch_size=8, mc_samples=1, progress=False,
                          threads=1, accelerator="cpu"),
    )  # fmt: skip
    config.to_json(tmp_path / "bench.json")
    out = tmp_path / "bench"
    result = runner.invoke(app, ["benchmark", "gpaw-v1", "--out", str(out), "--config", str(tmp_path / "bench.json"),
                                 "--folds", "2", "--reference", "msa3dcnn-density"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "benchmark.csv")
    cnn = table[table["model"] == "msa3dcnn-density"]
    assert len(cnn) == 2 * 2 and np.isfinite(cnn[cnn["target"] == "volume_per_atom"]["mae"]).all()
    assert (out / "paired.csv").is_file()
    # the hybrid comes from its members' cached predictions (the network's, and the gradient
    # boosting's on the same global features, trained on the same folds): per target their mean,
    # or the network alone where it scored better on the other fold's test part
    cache = {m: {json.loads(p.read_text())["fold"]: json.loads(p.read_text())
                 for p in (out / "cache" / m.replace("+", "_")).glob("fold*-f1-*.json")}
             for m in ("msa3dcnn-density", "density-invariants")}  # fmt: skip
    assert not (out / "cache" / "hybrid-density").exists()
    hybrid = table[table["model"] == "hybrid-density"].set_index(["target", "fold"])
    store = rhoprop.datasets.load("gpaw-v1")
    truth = dict(zip(store.ids, store.labels["volume_per_atom"], strict=True))
    for fold, other in ((0, 1), (1, 0)):
        net, gb = cache["msa3dcnn-density"][fold], cache["density-invariants"][fold]
        assert net["test_ids"] == gb["test_ids"]
        y_other = np.array([truth[i] for i in cache["msa3dcnn-density"][other]["test_ids"]])
        net_other = np.asarray(cache["msa3dcnn-density"][other]["predictions"]["volume_per_atom"])
        gb_other = np.asarray(cache["density-invariants"][other]["predictions"]["volume_per_atom"])
        network_alone = np.mean(np.abs(net_other - y_other)) < np.mean(np.abs((net_other + gb_other) / 2 - y_other))
        w = 1.0 if network_alone else 0.5
        pred = w * np.asarray(net["predictions"]["volume_per_atom"]) + (1 - w) * np.asarray(gb["predictions"]["volume_per_atom"])
        y = np.array([truth[i] for i in net["test_ids"]])
        assert np.isclose(hybrid.loc[("volume_per_atom", fold), "mae"], np.mean(np.abs(np.clip(pred, 0, None) - y)))


def test_unknown_models_and_too_few_folds_are_refused(tmp_path) -> None:
    with pytest.raises(SettingsError, match="unknown model"):
        BenchmarkSettings(models=("mean", "random-forest"))
    with pytest.raises(SettingsError, match="folds"):
        BenchmarkSettings(folds=1)
    result = runner.invoke(app, ["benchmark", "gpaw-v1", "--out", str(tmp_path / "never"), "--models", "mean,xgb"])
    assert result.exit_code == 2 and "unknown model" in result.output
    assert not (tmp_path / "never").exists()


def test_only_benchmarks_the_samples_a_flag_or_binary_target_selects(gpaw, tmp_path) -> None:
    from rhoprop.analysis.study_train import RhopropTrainer
    from rhoprop.train.data import subset_ids

    spin = subset_ids(gpaw, "has_spin")
    flags = dict(zip(gpaw.ids, gpaw.column("has_spin"), strict=True))
    assert 0 < len(spin) < len(gpaw) and all(flags[i] for i in spin)
    assert sorted(subset_ids(gpaw, "not has_spin") + spin) == sorted(gpaw.ids)
    metals = gpaw.labels["is_metal"]
    assert subset_ids(gpaw, "not is_metal") == [i for i in gpaw.ids if metals.get(i) == 0]
    # labelled:TARGET: every sample with a label of TARGET, whatever its kind
    phonons = subset_ids(gpaw, "labelled:min_frequency")
    assert phonons == [i for i in gpaw.ids if np.isfinite(gpaw.labels["min_frequency"].get(i, np.nan))]
    assert 30 <= len(phonons) < len(gpaw)
    assert sorted(subset_ids(gpaw, "dynamically_stable") + subset_ids(gpaw, "not dynamically_stable")) == sorted(
        subset_ids(gpaw, "labelled:dynamically_stable"))  # fmt: skip
    assert set(subset_ids(gpaw, "labelled:bulk_modulus and has_spin")) <= set(spin)
    with pytest.raises(SettingsError, match="'c99' is not a target"):
        subset_ids(gpaw, "labelled:c99")
    settings = BenchmarkSettings(folds=2, models=("mean",), curve_models=(), only="has_spin",
                                 targets=("magnetic_moment",))  # fmt: skip
    result = run_benchmark("gpaw-v1", tmp_path / "work", settings)
    assert sorted(result.folds) == sorted(spin) and result.dataset == "gpaw-v1 (has_spin)"
    assert result.rows["n_train"].max() <= len(spin)
    # the multi-task study's trainer keeps its split within the selection too
    trainer = RhopropTrainer("gpaw-v1", TrainConfig(model="tiny"), only="has_spin")
    assert set(sum(trainer.splits.values(), [])) <= set(spin) and trainer.config["only"] == "has_spin"
    for only, message in [("volume_per_atom", "not binary"), ("spin", "neither a per-sample flag")]:
        with pytest.raises(SettingsError, match=message):
            subset_ids(gpaw, only)
        out = tmp_path / "never"
        cli = runner.invoke(app, ["benchmark", "gpaw-v1", "--out", str(out), "--models", "mean", "--only", only])
        assert cli.exit_code == 2 and message in cli.output
        assert not out.exists() or not any(out.iterdir())


def test_a_changed_training_label_retrains_the_models_it_touches_and_nothing_else(tmp_path) -> None:
    """A cached prediction is reused only while the labels its model was fitted to are unchanged: a
    corrected label retrains the folds that train on it (not the fold that tests it)."""
    import shutil

    from rhoprop.analysis.benchmark import fit_labels_digest, fold_parts, is_cached
    from rhoprop.analysis.study_train import RhopropTrainer
    from rhoprop.data import DatasetStore
    from rhoprop.datasets import BUILTIN_ROOT
    from rhoprop.train.data import select_tasks

    copy = shutil.copytree(BUILTIN_ROOT / "gpaw-v1", tmp_path / "gpaw.rho")
    settings = BenchmarkSettings(folds=3, models=("mean",), targets=("volume_per_atom",), curve_models=())
    first = run_benchmark(str(copy), tmp_path / "work", settings)
    records = {json.loads(p.read_text())["fold"]: p for p in (tmp_path / "work" / "cache").rglob("*.json")}
    assert sorted(records) == [0, 1, 2] and all("fit_labels" in json.loads(p.read_text()) for p in records.values())
    stamps = {k: p.stat().st_mtime_ns for k, p in records.items()}
    # the multi-task study's trainer digests every part (its results are test metrics)
    def study_digests() -> list[tuple[str, str]]:
        trainer = RhopropTrainer(str(copy), TrainConfig(model="tiny"), folds=3)
        return [(trainer.labels_digest(["volume_per_atom"], k), trainer.labels_digest(["fermi_energy"], k))
                for k in range(3)]  # fmt: skip

    digests = study_digests()

    target = "NaCl-rocksalt"
    tested_in = first.folds[target]
    labels = (copy / "labels.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(labels) if line.startswith(f"{target},"))
    cells = labels[row].split(",")
    cells[1] = str(float(cells[1]) + 100.0)  # volume_per_atom, the first label column
    labels[row] = ",".join(cells)
    (copy / "labels.csv").write_text("\n".join(labels) + "\n")

    store = DatasetStore(copy)
    tasks = select_tasks(store, ["volume_per_atom"], store.ids)
    formulas = formulas_of(store)
    parts = {k: fold_parts(first.folds, formulas, k, settings) for k in range(3)}
    assert [is_cached("mean", store, tasks, parts[k], settings, tmp_path / "work", f"fold{k}-f1")
            for k in range(3)] == [k == tested_in for k in range(3)]  # fmt: skip
    assert fit_labels_digest(store, tasks, parts[tested_in]) == json.loads(records[tested_in].read_text())["fit_labels"]

    assert all(new[0] != old[0] and new[1] == old[1] for new, old in zip(study_digests(), digests))

    second = run_benchmark(str(copy), tmp_path / "work", settings)
    for k, path in records.items():
        assert (path.stat().st_mtime_ns == stamps[k]) == (k == tested_in), k
    before = first.rows.set_index("fold")["mae"]
    after = second.rows.set_index("fold")["mae"]
    for k in range(3):
        if k != tested_in:  # the mean moved by 100 / n_fit, so every test error moved
            assert after[k] != pytest.approx(before[k], abs=1e-6)


def test_default_network_recipe_is_the_published_one() -> None:
    """`rhoprop benchmark` without --config trains the networks the published tables were made with
    (docs/benchmarks/gpaw-v1-17/settings.json; only the accelerator was pinned to the CPU there)."""
    import dataclasses
    import json
    from pathlib import Path

    published = json.loads((Path(__file__).parents[1] / "docs/benchmarks/gpaw-v1-17/settings.json").read_text())
    default = json.loads(json.dumps(dataclasses.asdict(BenchmarkSettings().train), default=list))
    assert {k: v for k, v in default.items() if k != "accelerator"} == {
        k: v for k, v in published["train"].items() if k != "accelerator"
    }
