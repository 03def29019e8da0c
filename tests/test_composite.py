"""Several stores as one (``gpaw-v1,my-store``): ids by tier, union of targets, masked training, refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rhoprop.datasets
from rhoprop.cli import app
from rhoprop.data import build_dataset, make_split
from rhoprop.data.composite import CompositeStore, open_dataset
from rhoprop.data.store import DatasetStore
from rhoprop.errors import DatasetError
from rhoprop.grid import StandardizeSettings

runner = CliRunner()


@pytest.fixture(scope="module")
def second(fixtures_dir, tmp_path_factory):
    """A one-material store of a real VASP density, standardized like gpaw-v1, with a band gap and a
    target gpaw-v1 lacks."""
    root = tmp_path_factory.mktemp("second")
    (root / "in").mkdir()
    shutil.copy(fixtures_dir / "CHGCAR.LiCoO2_spin.gz", root / "in" / "LiCoO2.CHGCAR.gz")
    pd.DataFrame({"id": ["LiCoO2"], "band_gap": [2.1], "my_score": [0.7]}).to_csv(root / "labels.csv", index=False)
    settings = rhoprop.datasets.load("gpaw-v1").settings
    report = build_dataset(root / "in", root / "labels.csv", root / "store", settings, progress=False)
    assert report.clean, report.entries
    make_split(DatasetStore(root / "store"), fractions=(1.0, 0.0, 0.0), allow_empty=True)
    return root / "store"


def test_a_comma_list_opens_one_store_with_ids_by_tier_and_the_union_of_targets(second) -> None:
    store = open_dataset(f"gpaw-v1,{second}")
    assert isinstance(store, CompositeStore) and store.tiers == ["gpaw-v1", "store"]
    gold = len(rhoprop.datasets.load("gpaw-v1"))
    assert len(store) == gold + 1 and store.ids[-1] == "store/LiCoO2" and "gpaw-v1/Si-diamond" in store
    assert store.tier("store/LiCoO2") == "store" and store.read("store/LiCoO2").id == "store/LiCoO2"
    labels = store.labels
    assert set(store.targets) == set(rhoprop.datasets.load("gpaw-v1").targets) | {"my_score"}
    assert labels.loc["store/LiCoO2", "band_gap"] == pytest.approx(2.1)
    assert np.isnan(labels.loc["store/LiCoO2", "bulk_modulus"])  # the tier lacks it: masked
    assert labels["my_score"].notna().sum() == 1
    assert store.structure("store/LiCoO2").composition.reduced_formula == "LiCoO2"
    parts = store.splits("default")
    gold_train = rhoprop.datasets.load("gpaw-v1").splits("default")["train"]
    assert "store/LiCoO2" in parts["train"] and len(parts["train"]) == len(gold_train) + 1
    assert open_dataset(str(second)).ids == ["LiCoO2"]  # one path: a plain store


def test_stores_standardized_differently_are_refused(second, fixtures_dir, tmp_path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(fixtures_dir / "CHGCAR.LiCoO2_spin.gz", tmp_path / "in" / "LiCoO2.CHGCAR.gz")
    build_dataset(tmp_path / "in", None, tmp_path / "n16", StandardizeSettings(n=16), progress=False)
    with pytest.raises(DatasetError, match="standardized differently.*n: "):
        open_dataset(f"{second},{tmp_path / 'n16'}")


def test_training_on_two_tiers_learns_every_target_from_the_samples_that_have_it(second, tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", f"gpaw-v1,{second}", "--out", str(out), "--targets",
                                 "band_gap,bulk_modulus,my_score", "--model", "compact", "--epochs", "1",
                                 "--no-progress", "--accelerator", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1 val_loss" in result.output  # without a bar, a line per epoch
    again = runner.invoke(app, ["train", f"gpaw-v1,{second}", "--out", str(out), "--targets",
                                "band_gap,bulk_modulus,my_score", "--model", "compact", "--epochs", "1",
                                "--no-progress", "--accelerator", "cpu", "--threads", "1"])
    assert again.exit_code == 0 and "already finished" in " ".join(again.output.split())  # recognized
