"""Cross-tier transfer study on the two built-in tiers (real GPAW densities and labels)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rhoprop.analysis.benchmark import composition_folds, formulas_of
from rhoprop.analysis.transfer import (
    TransferSettings,
    added_part,
    run_transfer,
    transfer_parts,
    write_transfer,
)
from rhoprop.cli import app
from rhoprop.errors import SettingsError
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import open_store

runner = CliRunner()
TIERS = "gpaw-v1,gpaw-scf-v1"


@pytest.fixture(scope="module")
def both():
    store = open_store(TIERS)
    yield store
    store.close()


def test_added_materials_are_nested_whole_formulas_from_the_other_tier_never_from_the_test_fold(both) -> None:
    settings = TransferSettings(folds=3)
    folds = composition_folds(both, 3)
    formulas = formulas_of(both)
    tier_of = {i: both.tier(i) for i in both.ids}
    sizes = []
    previous: set[str] = set()
    for fraction in (0.0, 0.25, 0.5, 1.0):
        parts = transfer_parts(folds, formulas, tier_of, "gpaw-v1", 1, fraction, settings)
        # the base tier's test and early-stopping parts do not move with the fraction
        assert {tier_of[i] for i in parts["test"] + parts["val"]} == {"gpaw-v1"}
        assert all(folds[i] == 1 for i in parts["test"]) and all(folds[i] != 1 for i in parts["train"])
        added = {i for i in parts["train"] if tier_of[i] != "gpaw-v1"}
        assert previous <= added  # nested
        test_formulas = {formulas[i] for i in parts["test"]}
        val_formulas = {formulas[i] for i in parts["val"]}
        assert not {formulas[i] for i in added} & (test_formulas | val_formulas)
        # a formula is added whole or not at all
        others = [i for i in both.ids if tier_of[i] != "gpaw-v1" and folds[i] != 1]
        kept = {formulas[i] for i in added}
        assert all(i in added for i in others if formulas[i] in kept)
        sizes.append(len(added))
        previous = added
    assert sizes[0] == 0 and sizes[0] < sizes[1] < sizes[2] < sizes[3]
    assert added_part(["a", "b"], {"a": "X", "b": "Y"}, 0.0, 0) == []


def test_transfer_curve_scores_the_base_tier_only_and_resumes_from_its_cache(tmp_path) -> None:
    settings = TransferSettings(
        folds=2, fractions=(0.0, 1.0), models=("mean", "composition"),
        targets=("bulk_modulus", "formation_energy", "is_metal"),
    )  # fmt: skip
    steps: list[str] = []
    result = run_transfer(TIERS, tmp_path / "work", settings, on_step=steps.append)
    rows = result.rows
    assert result.base == "gpaw-v1" and result.added == ["gpaw-scf-v1"]
    assert len(rows) == 2 * 2 * 2 * 3 and len(steps) == 8
    assert set(rows.loc[rows["fraction"] == 0.0, "n_added"]) == {0}
    assert (rows.loc[rows["fraction"] == 1.0, "n_added"] > 300).all()
    # the bulk modulus exists only in the base tier: adding the other tier adds no label of it
    n = rows.pivot_table(index=["model", "fold", "target"], columns="fraction", values="n_train")
    assert (n.xs("bulk_modulus", level="target")[0.0] == n.xs("bulk_modulus", level="target")[1.0]).all()
    assert (n.xs("formation_energy", level="target")[1.0] > n.xs("formation_energy", level="target")[0.0]).all()
    # a composition model given the other tier's formation energies changes its predictions
    fe = rows[(rows["target"] == "formation_energy") & (rows["model"] == "composition")]
    assert not np.allclose(fe[fe["fraction"] == 0.0]["mae"], fe[fe["fraction"] == 1.0]["mae"])
    summary = result.summary()
    at1 = summary[(summary["fraction"] == 1.0) & (summary["model"] == "composition")]
    assert at1["change"].notna().all() and at1["folds_improved"].between(0, 2).all()
    assert summary.loc[summary["fraction"] == 0.0, "change"].isna().all()
    # a rerun reads every step from the cache: the same rows, no step trained
    again = run_transfer(TIERS, tmp_path / "work", settings)
    pd.testing.assert_frame_equal(again.rows, rows)
    assert again.seconds == result.seconds
    # a report of what is cached: a share and a model never computed are left out, nothing trains
    wider = dataclasses.replace(settings, fractions=(0.0, 0.5, 1.0), models=("mean", "composition", "cgcnn"))
    partial = run_transfer(TIERS, tmp_path / "work", wider, cached_only=True)
    pd.testing.assert_frame_equal(partial.rows.reset_index(drop=True), rows.reset_index(drop=True))
    assert not list((tmp_path / "work" / "cache").glob("cgcnn/*"))
    paths = write_transfer(result, tmp_path / "out")
    assert {p.name for p in paths} >= {"transfer.csv", "summary.csv", "transfer.md", "transfer.png"}
    text = (tmp_path / "out" / "transfer.md").read_text()
    assert "scored on gpaw-v1" in text and "bulk_modulus" in text
    assert TransferSettings.from_json(tmp_path / "out" / "settings.json") == settings
    # pinned to the materials of a list: the folds keep only those, in both tiers
    from rhoprop.train.data import open_store

    store = open_store(TIERS)
    listed = [i for k, i in enumerate(store.ids) if k % 3 != 0]
    (tmp_path / "ids.txt").write_text("\n".join(listed) + "\n")
    pinned = run_transfer(
        TIERS, tmp_path / "work", dataclasses.replace(settings, only=f"ids:{tmp_path / 'ids.txt'}")
    )
    at1 = pinned.rows[(pinned.rows["fraction"] == 1.0) & (pinned.rows["model"] == "mean")]
    full = rows[(rows["fraction"] == 1.0) & (rows["model"] == "mean")]
    assert (at1["n_added"].to_numpy() < full["n_added"].to_numpy()).all()
    assert at1["n_train"].sum() < full["n_train"].sum()


def test_transfer_trains_the_network_through_the_cli_and_refuses_bad_input(tmp_path) -> None:
    config = TransferSettings(
        folds=2, fractions=(0.1,), models=("msa3dcnn-density+structure",),
        targets=("bulk_modulus", "volume_per_atom"),
        train=TrainConfig(model="tiny", epochs=1, patience=0, batch_size=8, mc_samples=1, progress=False,
                          threads=1, accelerator="cpu"),
    )  # fmt: skip
    config.to_json(tmp_path / "transfer.json")
    out = tmp_path / "transfer"
    result = runner.invoke(app, ["study", "transfer", TIERS, "--out", str(out), "--config", str(tmp_path / "transfer.json")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "transfer.csv")
    assert len(table) == 2 * 2 and np.isfinite(table["mae"]).all() and (table["n_added"] > 0).all()
    for args, message in [
        (["gpaw-v1"], "two or more stores"),
        ([TIERS, "--base", "gpaw-v9"], "base tier"),
        ([TIERS, "--fractions", "0,1.5"], "fractions"),
        ([TIERS, "--fractions", "0,a"], "--fractions"),
        ([TIERS, "--models", "mean,xgb"], "unknown"),
        ([TIERS, "--models", "mean", "--cached-only"], "without --cached-only"),
    ]:
        never = tmp_path / "never"
        result = runner.invoke(app, ["study", "transfer", *args, "--out", str(never)])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert not never.exists() or not any(never.iterdir())
    with pytest.raises(SettingsError, match="fractions"):
        TransferSettings(fractions=(0.5, 0.5))
