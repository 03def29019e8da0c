"""Inputs ``density+structure+tier``: the data tier a sample comes from as a one-hot input, trained
on the two built-in tiers, saved with the model, and chosen by the user when predicting a file."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.errors import SettingsError
from rhoprop.models.features import extra_feature_names
from rhoprop.models.io import load_model
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import open_store, store_extra_features
from rhoprop.train.fit import train
from rhoprop.train.predict import predict_paths

pytestmark = pytest.mark.usefixtures("one_thread")
TIERS = "gpaw-v1,gpaw-scf-v1"


@pytest.fixture(scope="module")
def tier_model(tmp_path_factory):
    store = open_store(TIERS)
    gold = [i for i in store.ids if store.tier(i) == "gpaw-v1"][:24]
    fast = [i for i in store.ids if store.tier(i) == "gpaw-scf-v1"][:24]
    parts = {"train": gold[:16] + fast[:16], "val": gold[16:20] + fast[16:20],
             "test": gold[20:] + fast[20:]}  # fmt: skip
    config = TrainConfig(model="tiny", inputs="density+structure+tier", epochs=2, patience=0,
                         targets=("volume_per_atom", "fermi_energy"), progress=False, threads=1,
                         mc_samples=2)  # fmt: skip
    run = tmp_path_factory.mktemp("tier") / "run"
    result = train(TIERS, run, config, parts=parts)
    assert result is not None
    return store, parts, load_model(result.model_dir), result


def test_each_sample_reads_its_own_tier_beside_the_density_and_structure_features(tier_model) -> None:
    store, parts, bundle, _ = tier_model
    assert bundle.extra["inputs"] == "density+structure+tier"
    assert bundle.extra["tiers"] == ["gpaw-v1", "gpaw-scf-v1"]
    test = parts["test"]
    base = store_extra_features(store, test, "density+structure")
    tiered = store_extra_features(store, test, "density+structure+tier")
    assert tiered.shape == (len(test), base.shape[1] + 2)
    np.testing.assert_array_equal(tiered[:, :-2], base)
    np.testing.assert_array_equal(tiered[:4, -2:], [[1, 0]] * 4)  # gold-tier samples
    np.testing.assert_array_equal(tiered[4:, -2:], [[0, 1]] * 4)  # fast-tier samples
    names = extra_feature_names("density+structure+tier", store.settings, bundle.extra["tiers"])
    assert len(names) == tiered.shape[1] and names[-2:] == ["tier=gpaw-v1", "tier=gpaw-scf-v1"]
    assert bundle.model.extra_norm is not None  # the model's global branch reads them
    # one store alone, read with the model's tiers: its column is the store's own
    alone = open_store("gpaw-scf-v1")
    ids = [i.split("/", 1)[1] for i in test[4:6]]
    cols = store_extra_features(alone, ids, "density+structure+tier", tiers=bundle.extra["tiers"])
    np.testing.assert_array_equal(cols[:, -2:], [[0, 1], [0, 1]])
    with pytest.raises(SettingsError, match="not among the tiers"):
        store_extra_features(alone, ids, "density+structure+tier", tiers=["gpaw-v1"])


def test_a_file_is_predicted_as_the_chosen_tier_and_an_unknown_tier_is_refused(
    tier_model, fixtures_dir, tmp_path
) -> None:
    _, _, bundle, result = tier_model
    chgcar = fixtures_dir / "CHGCAR.LiCoO2_spin.gz"
    default = predict_paths(result.model_dir, [chgcar], mc_samples=1)
    gold = predict_paths(result.model_dir, [chgcar], mc_samples=1, as_tier="gpaw-v1")
    fast = predict_paths(result.model_dir, [chgcar], mc_samples=1, as_tier="gpaw-scf-v1")

    def values(res) -> dict[str, float]:
        return {r["target"]: r["value"] for r in res.rows}

    assert values(default) == values(gold)  # the first tier is the reference
    assert values(fast) != values(gold)  # the tier moves the prediction
    with pytest.raises(SettingsError, match="trained on the tiers"):
        predict_paths(result.model_dir, [chgcar], as_tier="gpaw-v9")
    out = tmp_path / "pred"
    cli = CliRunner().invoke(app, ["predict", str(result.model_dir), str(chgcar), "--out", str(out),
                                   "--as-tier", "gpaw-v9"])  # fmt: skip
    assert cli.exit_code == 2 and "gpaw-v9" in cli.output and not out.with_suffix(".csv").exists()
    # a model without the tier input (the pretrained one) ignores the option
    plain = predict_paths("builtin", [chgcar], mc_samples=1, as_tier="gpaw-v9")
    assert plain.rows and not plain.errors


def test_evaluation_and_the_benchmark_model_name_read_the_tier(tier_model, tmp_path) -> None:
    from rhoprop.analysis.benchmark import MODELS
    from rhoprop.analysis.study_train import metrics_on

    store, parts, _, result = tier_model
    assert "msa3dcnn-density+structure+tier" in MODELS
    metrics = metrics_on(TIERS, result.model_dir, parts["test"])
    assert set(metrics) == {"volume_per_atom", "fermi_energy"}
    assert all(np.isfinite(m["mae"]) for m in metrics.values())
