"""Hybrid models: gradient-boosted trees kept as tensors (equal to scikit-learn's predictions), and
``rhoprop hybrid``, which adds them to a trained network and writes a model that predict and
evaluate read like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.errors import SettingsError
from rhoprop.models.hybrid import Hybrid, blend_predictions
from rhoprop.models.io import load_model
from rhoprop.models.trees import TreeEnsemble
from rhoprop.train.baselines import (
    BaselineSettings,
    fit_gradient_boosting,
    gradient_boosting_predict,
)
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import label_matrix, open_store, select_tasks, store_extra_features
from rhoprop.train.fit import loader, train
from rhoprop.train.inference import predict_batches
from rhoprop.train.predict import predict_paths

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def test_trees_as_tensors_predict_what_scikit_learn_predicts_on_real_features() -> None:
    store = open_store("gpaw-v1")
    tasks = select_tasks(store, list(store.targets), store.ids)
    kinds = {t.kind for t in tasks}
    assert kinds == {"regression", "binary", "multiclass"}
    x = store_extra_features(store, store.ids, "density+structure")
    y = label_matrix(store, store.ids, tasks)
    # a property pymatgen lacks is NaN (none in gpaw-v1's elements): blank some, so the trees
    # learn and use the missing-value branch
    x[::4, :6] = np.nan
    # and one column that is missing exactly for the metals: scikit-learn splits it "every value
    # vs missing" at +inf
    x[:, 6] = np.where(y[:, [t.name for t in tasks].index("is_metal")] == 1, np.nan, 1.0)
    fit, held = slice(0, 160), slice(160, None)
    labels = y[fit].copy()
    names = [t.name for t in tasks]
    # a regression target with 3 labels (a constant) and a binary one with one class seen
    c44 = names.index("c44")
    labels[np.flatnonzero(np.isfinite(labels[:, c44]))[3:], c44] = np.nan
    one_class = names.index("mechanically_stable")
    labels[:, one_class] = np.where(np.isfinite(labels[:, one_class]), 1.0, np.nan)
    fitted = fit_gradient_boosting(tasks, x[fit], labels, BaselineSettings(gb_max_iter=40))
    assert fitted[c44].model is None and np.isfinite(fitted[c44].constant)
    assert fitted[one_class].model is None
    expected = gradient_boosting_predict(fitted, x[held])
    trees = TreeEnsemble.from_fitted(fitted, x.shape[1])
    got = trees.decode(trees(torch.from_numpy(x[held])))
    assert trees.layout.n_trees > 40 * 10
    # kept finite (a saved model with inf is refused as damaged), with the same effect
    assert torch.isfinite(trees.threshold).all()
    assert (trees.threshold == np.finfo(np.float64).max).any()
    for name in names:
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=0, atol=1e-9)
    assert np.allclose(got["mechanically_stable"].numpy(), 1.0, atol=1e-12)
    with pytest.raises(SettingsError, match="features per sample"):
        trees(torch.from_numpy(x[held, :-1]))


def test_blend_keeps_probability_rows_and_refuses_halves_of_different_samples() -> None:
    a = {"v": np.array([1.0, 2.0]), "p": np.array([[0.2, 0.8], [0.6, 0.4]])}
    b = {"v": np.array([3.0, 4.0]), "p": np.array([[0.4, 0.6], [0.0, 1.0]])}
    mean = blend_predictions({"v": 0.5, "p": 0.5}, a, b)
    np.testing.assert_allclose(mean["v"], [2.0, 3.0])
    np.testing.assert_allclose(mean["p"].sum(axis=1), 1.0)  # probability rows stay rows
    np.testing.assert_allclose(blend_predictions({"v": 1.0}, a, b)["v"], a["v"])  # the network alone
    with pytest.raises(SettingsError, match="differ in shape"):
        blend_predictions({"v": 0.5}, a, {"v": np.array([1.0])})


def test_weights_keep_the_mean_unless_the_network_alone_scores_better_on_enough_labels() -> None:
    from rhoprop.models.heads import TaskSpec
    from rhoprop.models.hybrid import choose_weights

    tasks = [TaskSpec("a"), TaskSpec("b"), TaskSpec("c"), TaskSpec("m", kind="binary")]
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(40, 4))
    truth[:, 3] = rng.integers(0, 2, 40)
    truth[10:, 2] = np.nan  # 10 labels: too few to choose from
    network = {"a": truth[:, 0] + 0.01, "b": truth[:, 1] + 1.0, "c": np.nan_to_num(truth[:, 2]) + 0.01,
               "m": np.where(truth[:, 3] == 1, 0.9, 0.1)}  # fmt: skip
    trees = {"a": truth[:, 0] - 2.0, "b": truth[:, 1] - 1.0, "c": np.nan_to_num(truth[:, 2]) + 3.0,
             "m": np.full(40, 0.5)}  # fmt: skip
    weights, scores = choose_weights(tasks, truth, network, trees)
    # a: the trees are far off, the network alone wins; b: the errors cancel in the mean;
    # c: the network is better but 10 labels are too few; m: log-loss, the network is sharper
    assert weights == {"a": 1.0, "b": 0.5, "c": 0.5, "m": 1.0}
    assert scores["b"]["mean"] < 1e-12 and scores["c"]["labels"] == 10


@pytest.fixture(scope="module")
def network_run(tmp_path_factory):
    store = open_store("gpaw-v1")
    split = store.splits("default")
    parts = {"train": split["train"][:48], "val": split["val"][:12], "test": split["test"][:12]}
    config = TrainConfig(model="tiny", inputs="density+structure", epochs=2, patience=0,
                         targets=("volume_per_atom", "band_gap", "is_metal", "crystal_system"),
                         progress=False, threads=1, mc_samples=3)  # fmt: skip
    run = tmp_path_factory.mktemp("hybrid") / "run"
    result = train("gpaw-v1", run, config, parts=parts)
    assert result is not None
    return store, split, run


def test_rhoprop_hybrid_writes_a_model_that_predicts_the_mean_of_network_and_trees(
    network_run, tmp_path, fixtures_dir
) -> None:
    store, split, run = network_run
    out = tmp_path / "hybrid"
    cli = runner.invoke(app, ["hybrid", str(run), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    assert f"{len(split['train'])} materials" in " ".join(cli.output.split())
    meta = json.loads((out / "model.json").read_text())
    assert meta["class"] == "Hybrid" and meta["hybrid"]["n_fit"] == len(split["train"])
    assert meta["inputs"] == "density+structure" and meta["uncertainty"]["calibrated_on"] == "default/val"
    hybrid, network = load_model(out), load_model(run / "model")
    assert isinstance(hybrid.model, Hybrid)
    tasks = list(network.tasks)
    ids = split["test"]
    config = TrainConfig(inputs="density+structure", targets=tuple(t.name for t in tasks),
                         batch_size=8, num_workers=0)  # fmt: skip
    both = predict_batches(hybrid.model, loader(store, ids, tasks, config, shuffle=False), mc_samples=1)
    net = predict_batches(network.model, loader(store, ids, tasks, config, shuffle=False), mc_samples=1)
    # the trees alone, refitted the same way, through scikit-learn
    x_train = store_extra_features(store, split["train"], "density+structure")
    fitted = fit_gradient_boosting(tasks, x_train, label_matrix(store, split["train"], tasks), BaselineSettings())
    gb = gradient_boosting_predict(fitted, store_extra_features(store, ids, "density+structure"))
    order_h, order_n = np.argsort(both.indices), np.argsort(net.indices)
    # per target the mean, or the network alone where it scored better on the val part
    weights = meta["hybrid"]["network_weight"]
    assert weights == hybrid.model.weights() and set(weights.values()) <= {0.5, 1.0}
    alone = [n for n, w in weights.items() if w == 1.0]
    said = " ".join(cli.output.split())
    assert (f"network alone (better on val) for: {', '.join(alone)}" in said) if alone else ("the mean of" in said)
    scores = meta["hybrid"]["val_scores"]
    for name, w in weights.items():
        chosen_network = scores[name]["labels"] >= 30 and scores[name]["network"] < scores[name]["mean"]
        assert w == (1.0 if chosen_network else 0.5)
    for t in tasks:
        w = weights[t.name]
        expected = w * net.mean[t.name][order_n] + (1 - w) * gb[t.name]
        np.testing.assert_allclose(both.mean[t.name][order_h], expected, rtol=1e-4, atol=1e-4)
    # a density file: every target predicted, with the hybrid's calibrated interval
    result = predict_paths(out, [fixtures_dir / "CHGCAR.LiCoO2_spin.gz"], mc_samples=3)
    rows = {r["target"]: r for r in result.rows}
    assert set(rows) == {t.name for t in tasks} and np.isfinite(rows["volume_per_atom"]["value"])
    assert rows["volume_per_atom"]["lo90"] <= rows["volume_per_atom"]["value"] <= rows["volume_per_atom"]["hi90"]
    # evaluate reads it like any model
    ev = runner.invoke(app, ["evaluate", str(out), "--out", str(tmp_path / "eval")])
    assert ev.exit_code == 0, ev.output
    # refused, nothing written: a second hybrid into the same folder, a hybrid of a hybrid
    again = runner.invoke(app, ["hybrid", str(run), "--out", str(out)])
    assert again.exit_code == 2 and "already holds a model" in again.output
    twice = runner.invoke(app, ["hybrid", str(out), "--out", str(tmp_path / "twice")])
    assert twice.exit_code == 2 and "hybrid already" in twice.output
    assert not (tmp_path / "twice" / "model.json").exists()
