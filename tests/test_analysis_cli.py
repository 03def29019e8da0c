"""`rhoprop analyze targets` in-process on a labels CSV of real element properties."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from rhoprop.analysis.similarity import read_groups
from rhoprop.cli import app

from helpers.elements import element_labels


def write_elements_csv(path) -> list[str]:
    """The element table as a user would have it: text classes, true/false, blanks."""
    table = element_labels()
    frame = table.labels.copy()
    names = np.array(table.classes["structure"], dtype=object)
    codes = frame["structure"]
    frame["structure"] = pd.Series(
        np.where(codes.notna(), names[codes.fillna(0).astype(int)], None), index=frame.index
    )
    frame["is_metal"] = frame["is_metal"].map({1.0: "true", 0.0: "false"})
    frame.to_csv(path, index_label="id")
    return list(frame.columns)


def test_analyze_targets_on_labels_csv_writes_groups_pairs_and_figures(tmp_path) -> None:
    csv = tmp_path / "labels.csv"
    targets = write_elements_csv(csv)
    out = tmp_path / "analysis"
    result = CliRunner().invoke(
        app,
        [
            "analyze",
            "targets",
            str(csv),
            "--out",
            str(out),
            "--permutations",
            "99",
            "--min-pairs",
            "55",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "too few pairs" in result.output and "groups" in result.output
    groups = read_groups(out / "groups.json", known_targets=targets)
    assert sorted(t for g in groups for t in g) == sorted(targets)
    pairs = pd.read_csv(out / "pairs.csv")
    few = pairs[pairs.status == "too few pairs"]
    assert (
        len(few) > 0
        and (few.n < 55).all()
        and few.pearson.isna().all()
        and not few.significant.any()
    )
    assert (pairs[pairs.status == "ok"].n >= 55).all()
    structure = pairs[(pairs.target_a == "structure") | (pairs.target_b == "structure")]
    assert structure.pearson.isna().all() and structure.dcor.notna().any()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["settings"]["min_pairs"] == 55 and settings["kinds"]["is_metal"] == "binary"
    assert settings["kinds"]["structure"] == "multiclass"
    assert (out / "similarity_heatmap.png").stat().st_size > 10_000


def test_analyze_targets_reports_bad_input_clearly(tmp_path) -> None:
    csv = tmp_path / "labels.csv"
    write_elements_csv(csv)
    runner = CliRunner()
    bad_alpha = runner.invoke(
        app, ["analyze", "targets", str(csv), "--out", str(tmp_path / "a"), "--alpha", "2"]
    )
    assert bad_alpha.exit_code == 2 and "alpha must be in (0, 1)" in bad_alpha.output
    unknown = runner.invoke(
        app,
        [
            "analyze",
            "targets",
            str(csv),
            "--out",
            str(tmp_path / "b"),
            "--targets",
            "density,bandgap",
        ],
    )
    assert unknown.exit_code == 2 and "bandgap" in unknown.output and "available" in unknown.output


def test_analyze_targets_on_a_dataset_store_uses_its_kinds_and_labels(tmp_path) -> None:
    from helpers.densities import build_store

    store = build_store(tmp_path, count=16)
    out = tmp_path / "analysis"
    result = CliRunner().invoke(
        app, ["analyze", "targets", str(store), "--out", str(out), "--permutations", "99"]
    )
    assert result.exit_code == 0, result.output
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == 3 and (pairs.n == 16).all() and (pairs.status == "ok").all()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["source"] == str(store)
    assert settings["kinds"] == dict.fromkeys(("density", "volume_per_atom", "valence_density"), "regression")
    assert read_groups(out / "groups.json", known_targets=settings["kinds"])
