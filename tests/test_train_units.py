"""Pieces of training, evaluation and prediction that need no training run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, r2_score, roc_auc_score

from rhoprop.analysis.metrics import classification_metrics, confusion, regression_metrics
from rhoprop.data.labels import consistent_predictions, gated_samples
from rhoprop.errors import SettingsError
from rhoprop.io import read_density
from rhoprop.models.baselines import composition_features, crystal_graph, feature_names
from rhoprop.models.heads import TaskSpec
from rhoprop.train.baselines import BaselineSettings, composition_predictions, mean_predictions
from rhoprop.train.config import TrainConfig, load_train_config
from rhoprop.train.data import (
    dataset_label,
    determined_elements,
    expected_electrons,
    fit_valence,
    gpaw_valence,
)
from rhoprop.train.inference import (
    Z90,
    calibration_scale,
    calibration_scales,
    conformal_quantile,
    interval90,
    interval_coverage,
)
from rhoprop.train.predict import input_warnings


def test_train_config_rejects_unknown_keys_and_bad_values(tmp_path) -> None:
    with pytest.raises(SettingsError, match="unknown key.*'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
    for key, value, match in [("weighting", "gradnorm", "weighting"), ("model", "huge", "model must be one of"),
                              ("devices", "two", "devices"), ("precision", "8", "precision"),
                              ("batch_size", 0, "batch_size"), ("augment", "yes", "augment")]:
        with pytest.raises(SettingsError, match=match):
            TrainConfig.from_dict({key: value})
    path = tmp_path / "cfg.json"
    TrainConfig(model="tiny", epochs=3).to_json(path)
    cfg = load_train_config(path, epochs=7, lr=None)
    assert (cfg.model, cfg.epochs, cfg.lr) == ("tiny", 7, TrainConfig().lr)
    assert TrainConfig(devices="0,1").lightning_devices() == [0, 1]
    assert TrainConfig(devices="2").lightning_devices() == 2


def test_resume_may_change_epochs_and_devices_but_not_the_model() -> None:
    old = TrainConfig(model="tiny", epochs=5)
    TrainConfig(model="tiny", epochs=9, devices="2", strategy="ddp").check_resumable_from(old)
    with pytest.raises(SettingsError, match="lr: run 0.001 vs now 0.01"):
        TrainConfig(model="tiny", lr=0.01).check_resumable_from(old)


def test_regression_metrics_match_sklearn_and_skip_missing_labels() -> None:
    truth = np.array([1.0, 2.0, np.nan, 4.0, 7.0])
    pred = np.array([1.5, 1.0, 100.0, 4.0, 6.0])
    m = regression_metrics(truth, pred)
    keep = np.isfinite(truth)
    assert m["n"] == 4
    assert m["r2"] == pytest.approx(r2_score(truth[keep], pred[keep]))
    assert m["mae"] == pytest.approx(np.mean(np.abs(truth[keep] - pred[keep])))
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean((truth[keep] - pred[keep]) ** 2)))
    assert math.isnan(regression_metrics(np.array([3.0, 3.0]), np.array([3.0, 2.0]))["r2"])
    assert regression_metrics(np.array([np.nan]), np.array([1.0]))["n"] == 0


def test_classification_metrics_binary_and_multiclass() -> None:
    truth = np.array([0, 1, 1, 0, np.nan, 1])
    proba = np.array([0.2, 0.7, 0.4, 0.1, 0.9, 0.8])
    m = classification_metrics(truth, proba)
    y, p = truth[[0, 1, 2, 3, 5]].astype(int), proba[[0, 1, 2, 3, 5]]
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(f1_score(y, p > 0.5))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    multi_truth = np.array([0, 1, 2, 2, 1])
    multi = np.array([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.1, 0.8, 0.1]])
    mm = classification_metrics(multi_truth, multi)
    assert mm["accuracy"] == pytest.approx(0.8)
    assert mm["roc_auc"] == pytest.approx(roc_auc_score(multi_truth, multi, multi_class="ovr"))
    assert confusion(multi_truth, multi, 3).tolist() == [[1, 0, 0], [0, 2, 0], [0, 1, 1]]
    assert math.isnan(classification_metrics(np.array([1, 1]), np.array([0.3, 0.9]))["roc_auc"])
    assert confusion(np.array([np.nan, np.nan]), multi[:2], 3).tolist() == [[0] * 3] * 3


def test_calibrated_interval_covers_ninety_percent_of_the_calibration_data() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    mean = truth + rng.normal(scale=2.0, size=2000)  # errors of scale 2 ...
    std = np.full(2000, 0.5)  # ... but MC dropout claims 0.5: far too narrow
    assert interval_coverage(mean, std, truth) < 0.4
    scale = calibration_scale(mean, std, truth)
    assert scale == pytest.approx(4.0, rel=0.1)
    assert interval_coverage(mean, std, truth, scale) == pytest.approx(0.9, abs=0.002)
    fresh_truth = rng.normal(size=2000)
    fresh_mean = fresh_truth + rng.normal(scale=2.0, size=2000)
    assert interval_coverage(fresh_mean, std, fresh_truth, scale) == pytest.approx(0.9, abs=0.03)
    assert Z90 == pytest.approx(1.6448536)


def test_a_predicted_metal_gets_no_band_gap_and_every_model_is_made_consistent_alike() -> None:
    tasks = [TaskSpec("band_gap"), TaskSpec("is_metal", kind="binary"), TaskSpec("fermi_energy")]
    raw = {
        "band_gap": np.array([0.4, 1.3, -0.2, 0.7]),
        "is_metal": np.array([0.9, 0.2, 0.3, 0.51]),  # probability of class 1 (metal)
        "fermi_energy": np.array([-1.0, 2.0, 3.0, 4.0]),
    }
    out = consistent_predictions(tasks, raw)
    assert out["band_gap"].tolist() == [0.0, 1.3, 0.0, 0.0]  # gated, kept, clipped, gated
    assert out["is_metal"] is raw["is_metal"] and out["fermi_energy"].tolist() == [-1.0, 2.0, 3.0, 4.0]
    assert raw["band_gap"].tolist() == [0.4, 1.3, -0.2, 0.7]  # the raw outputs are not changed
    assert gated_samples(tasks, raw)["band_gap"].tolist() == [True, False, False, True]
    # without the gate among the targets (or its prediction), only the minimum applies
    assert consistent_predictions(tasks[:1], raw)["band_gap"].tolist() == [0.4, 1.3, 0.0, 0.7]
    assert gated_samples(tasks, {"band_gap": raw["band_gap"]}) == {}
    # the interval of a gated value holds that value: its lower bound is the minimum
    lo, hi = interval90(raw["band_gap"], np.full(4, 0.1), minimum=0.0, gated=out["band_gap"] == 0.0)
    assert lo.tolist() == [0.0, pytest.approx(1.3 - Z90 * 0.1), 0.0, 0.0]
    assert hi[0] == pytest.approx(0.4 + Z90 * 0.1)
    truth = np.array([0.0, 1.3, 0.0, 0.0])
    assert interval_coverage(raw["band_gap"], np.full(4, 0.1), truth, 1.0, 0.0) == 0.5
    assert interval_coverage(raw["band_gap"], np.full(4, 0.1), truth, 1.0, 0.0, lo == 0.0) == 1.0


def test_intervals_are_clipped_at_the_physical_minimum_and_coverage_counts_the_clipped_bounds() -> None:
    mean = np.array([0.1, -0.4, 2.0])  # a metal predicted slightly off, one below zero, an insulator
    std = np.array([0.2, 0.1, 0.3])
    lo, hi = interval90(mean, std, minimum=0.0)
    assert lo.tolist() == [0.0, 0.0, pytest.approx(2.0 - Z90 * 0.3)]
    assert hi.tolist() == [pytest.approx(0.1 + Z90 * 0.2), 0.0, pytest.approx(2.0 + Z90 * 0.3)]
    truth = np.array([0.0, 0.0, 2.1])
    assert interval_coverage(mean, std, truth) == pytest.approx(2 / 3)  # -0.4 ± 0.16 misses the metal's 0
    assert interval_coverage(mean, std, truth, minimum=0.0) == 1.0  # clipped to [0, 0]: a hit
    spec = TaskSpec("band_gap", minimum=0)
    assert spec.minimum == 0.0 and spec.clip(mean).tolist() == [0.1, 0.0, 2.0]
    assert TaskSpec("fermi_energy").clip(mean).tolist() == mean.tolist()
    for bad in ({"kind": "binary", "minimum": 0.0}, {"minimum": float("nan")}, {"minimum": "zero"}):
        with pytest.raises(SettingsError, match="minimum"):
            TaskSpec("x", **bad)


def test_conformal_scale_covers_new_values_and_never_undercuts_the_pooled_scale() -> None:
    assert conformal_quantile(np.arange(1.0, 21.0)) == 19.0  # ceil(21 * 0.9) = 19th of 20
    assert conformal_quantile(np.arange(1.0, 5.0)) == 4.0  # too few values: the largest
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(400):  # 20 calibration values, then one new value from the same distribution
        truth = rng.normal(size=21)
        mean = truth + rng.normal(scale=2.0, size=21)
        std = np.full(21, 0.5)
        scale = calibration_scale(mean[:20], std[:20], truth[:20])
        hits.append(interval_coverage(mean[20:], std[20:], truth[20:], scale))
    assert np.mean(hits) >= 0.87  # split-conformal guarantee: >= 0.9 on average (binomial noise over 400)
    truth = rng.normal(size=20)
    hard = (truth + rng.normal(scale=2.0, size=20), np.full(20, 0.5), truth)
    easy = (truth + rng.normal(scale=0.01, size=20), np.full(20, 0.5), truth)
    scales = calibration_scales({"hard": hard, "easy": easy})
    pooled = conformal_quantile(np.concatenate([np.abs(a[0] - a[2]) / (Z90 * a[1]) for a in (hard, easy)]))
    assert scales["easy"] == pytest.approx(pooled) and scales["easy"] > calibration_scale(*easy)
    assert scales["hard"] == pytest.approx(calibration_scale(*hard)) and scales["hard"] >= pooled


def test_valence_fit_recovers_per_element_counts_where_determined() -> None:
    comps = [{"Li": 1, "F": 1}, {"Li": 2}, {"Na": 1, "Cl": 1}, {"F": 2}]
    fit = fit_valence(comps, [8.0, 2.0, 14.0, 14.0])
    assert fit["per_element"]["Li"] == pytest.approx(1.0) and fit["per_element"]["F"] == pytest.approx(7.0)
    assert expected_electrons(fit, {"Li": 3, "F": 1}) == pytest.approx(10.0)
    assert expected_electrons(fit, {"Na": 2, "Cl": 2}) == pytest.approx(28.0)
    assert expected_electrons(fit, {"Na": 1}) is None  # Na and Cl only ever seen together
    assert expected_electrons(fit, {"Li": 1, "O": 1}) is None  # O never seen


def _gpaw_like_profile() -> dict:
    """Training profile of a GPAW dataset with Li (1 e), Co (9 e) and O (6 e) setups."""
    comps = [{"Li": 2}, {"Co": 2}, {"O": 2}, {"Li": 2, "O": 1}, {"Co": 1, "O": 1}]
    electrons = [2.0, 18.0, 12.0, 8.0, 15.0]
    return {"code": "gpaw", "elements": ["Co", "Li", "O"], "valence": fit_valence(comps, electrons),
            "grid_spacing": {"max": 0.2, "median": 0.15}}


def test_vasp_licoo2_against_gpaw_training_warns_code_and_valence(fixtures_dir) -> None:
    density = read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz")
    notes = input_warnings(density, _gpaw_like_profile())
    text = "\n".join(notes)
    assert "VASP density" in text and "GPAW" in text
    assert "48.00 electrons" in text and "gives 44.00" in text
    assert "Li 3 instead of 1" in text
    assert not any("coarse" in n for n in notes)  # 0.088 Å spacing is finer than 0.2 Å


def test_unseen_elements_and_coarse_grids_are_flagged(fixtures_dir) -> None:
    density = read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz")
    profile = {**_gpaw_like_profile(), "code": "vasp", "elements": ["Li", "O"], "grid_spacing": {"max": 0.05}}
    notes = input_warnings(density, profile)
    assert any("Co never appear" in n for n in notes)
    assert any("grid too coarse" in n and "0.088" in n for n in notes)
    assert not any("electrons" in n for n in notes)  # no valence check with an unseen element
    same = {**_gpaw_like_profile(), "code": "vasp", "valence": fit_valence([{"Li": 1}, {"Co": 1}, {"O": 1}],
                                                                          [3.0, 9.0, 6.0])}
    assert input_warnings(density, same) == []


def test_gpaw_setups_give_the_electron_count_when_an_element_was_never_seen(fixtures_dir) -> None:
    """Training densities matching GPAW's setups (Li 1, O 6, Mg 10) vouch for its Co (9) too."""
    comps = [{"Li": 2}, {"O": 2}, {"Li": 1, "O": 1}, {"Mg": 1, "O": 1}]
    valence = fit_valence(comps, [2.0, 12.0, 7.0, 16.0])
    assert determined_elements(valence) == ["Li", "Mg", "O"]
    assert gpaw_valence(["Li", "Mg", "O", "Co"]) == {"Li": 1.0, "Mg": 10.0, "O": 6.0, "Co": 9.0}
    valence["matches_gpaw_setups"] = True
    density = read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz")
    notes = input_warnings(density, {"code": "gpaw", "elements": ["Li", "Mg", "O"], "valence": valence})
    assert any("Co never appear" in n for n in notes)
    valence_note = next(n for n in notes if "electrons per atom" in n)
    assert "GPAW's PAW setups" in valence_note and "gives 44.00" in valence_note
    assert "Li 3 instead of 1" in valence_note
    valence["matches_gpaw_setups"] = False  # e.g. VASP training data: no claim about unseen Co
    notes = input_warnings(density, {"code": "vasp", "elements": ["Li", "Mg", "O"], "valence": valence})
    assert not any("electrons per atom" in n for n in notes)


def test_composition_features_are_finite_statistics_of_element_properties() -> None:
    f_nacl = composition_features(Composition("NaCl"))
    f_licoo2 = composition_features(Composition("LiCoO2"))
    assert f_nacl.shape == f_licoo2.shape == (len(feature_names()),)
    names = feature_names()
    assert f_nacl[names.index("mean_Z")] == pytest.approx((11 + 17) / 2)
    assert f_licoo2[names.index("max_Z")] == 27 and f_licoo2[names.index("n_elements")] == 3
    assert np.isfinite(f_nacl).sum() >= len(names) - 4


def test_crystal_graph_has_the_nearest_neighbours_of_each_atom() -> None:
    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                      [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]])
    graph = crystal_graph(nacl, cutoff=4.5, max_neighbors=6)
    assert graph["atoms"].tolist() == [11] * 4 + [17] * 4
    assert np.bincount(graph["src"]).tolist() == [6] * 8
    assert np.allclose(graph["dist"], 2.82, atol=1e-6)


def test_mean_and_composition_baselines_predict_for_every_kind(monkeypatch) -> None:
    tasks = [TaskSpec("gap"), TaskSpec("metal", "binary"), TaskSpec("system", "multiclass", classes=("a", "b", "c"))]
    train_labels = np.array([[1.0, 0, 0], [3.0, 1, 2], [np.nan, 1, 2], [2.0, np.nan, 1]])
    mean = mean_predictions(tasks, train_labels, 2)
    assert mean["gap"].tolist() == [2.0, 2.0]
    assert mean["metal"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert mean["system"][0].tolist() == pytest.approx([0.25, 0.25, 0.5])
    x = np.array([composition_features(Composition(f)) for f in ("NaCl", "Si", "Cu", "MgO")])
    preds = composition_predictions(tasks, x, train_labels, x[:2], BaselineSettings(gb_max_iter=10))
    assert preds["gap"].shape == (2,) and preds["metal"].shape == (2,) and preds["system"].shape == (2, 3)
    assert np.allclose(preds["system"].sum(axis=1), 1.0)
    # the fits run with the OpenMP threads asked for, and their number does not change a prediction
    from threadpoolctl import threadpool_info

    seen: list[int] = []
    real = HistGradientBoostingClassifier.fit

    def spy(self, *args, **kwargs):
        seen.append(min(p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", spy)
    two = composition_predictions(tasks, x, train_labels, x[:2], BaselineSettings(gb_max_iter=10, threads=2))
    one = composition_predictions(tasks, x, train_labels, x[:2], BaselineSettings(gb_max_iter=10, threads=1))
    assert seen[0] <= 2 and seen[-1] == 1
    assert all(np.array_equal(one[k], two[k]) for k in one)
    with pytest.raises(SettingsError, match="threads"):
        BaselineSettings(threads=0)


def test_a_store_whose_labels_match_none_of_its_ids_is_named_as_such(tmp_path_factory) -> None:
    import shutil

    from rhoprop.data import DatasetStore
    from rhoprop.errors import LabelTableError
    from rhoprop.train.data import select_tasks

    from helpers.densities import built_store

    source, _, ids, _ = built_store(tmp_path_factory)
    store_dir = shutil.copytree(source, tmp_path_factory.mktemp("relabelled") / "ds")
    (store_dir / "labels.csv").write_text("id,band_gap\nnot-a-sample,1.0\n")
    store = DatasetStore(store_dir)
    with pytest.raises(LabelTableError, match=f"none of the {len(ids)} training samples .* 0 labelled ids"):
        select_tasks(store, [], ids)


def test_dataset_label_names_stores_without_machine_paths(tmp_path: Path) -> None:
    """Reports name a store list by the stores' names, never by this machine's absolute paths."""
    a, b = tmp_path / "tier-a.rho", tmp_path / "tier-b"
    a.mkdir()
    b.mkdir()
    assert dataset_label(str(a)) == "tier-a.rho"
    assert dataset_label("gpaw-v1") == "gpaw-v1"
    assert dataset_label(f"{a},{b}") == "tier-a.rho,tier-b"
    assert dataset_label(f"gpaw-v1,{b}") == "gpaw-v1,tier-b"
