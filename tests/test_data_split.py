"""Reproducible train/val/test splits, random and grouped by composition."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.data import DatasetStore, make_split
from rhoprop.data.split import group_split, random_split
from rhoprop.errors import SettingsError

from helpers.densities import built_store

runner = CliRunner()


def _ids_and_formulas(n: int, n_formulas: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_formulas) + 1  # uneven group sizes, like real datasets
    formulas = rng.choice([f"F{k}" for k in range(n_formulas)], size=n, p=weights / weights.sum())
    return [f"id-{i:05d}" for i in range(n)], list(formulas)


def test_random_split_is_reproducible_complete_and_sized() -> None:
    ids = [f"m-{i}" for i in range(1001)]
    a = random_split(ids, (0.8, 0.1, 0.1), seed=3)
    assert a == random_split(list(reversed(ids)), (0.8, 0.1, 0.1), seed=3)  # order-independent
    assert a != random_split(ids, (0.8, 0.1, 0.1), seed=4)
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(ids)
    assert [len(a[p]) for p in ("train", "val", "test")] == [801, 100, 100]


def test_composition_split_never_puts_a_formula_in_two_parts() -> None:
    ids, formulas = _ids_and_formulas(2000, 300, seed=1)
    parts = group_split(ids, formulas, (0.8, 0.1, 0.1), seed=0)
    of = dict(zip(ids, formulas, strict=True))
    seen = [{of[i] for i in parts[p]} for p in ("train", "val", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(ids)
    largest = max(formulas.count(f) for f in set(formulas))
    for part, frac in zip(("train", "val", "test"), (0.8, 0.1, 0.1), strict=True):
        assert abs(len(parts[part]) - frac * len(ids)) <= largest
    assert parts == group_split(ids, formulas, (0.8, 0.1, 0.1), seed=0)


def test_split_command_saves_a_reproducible_split_in_the_store(
    tmp_path_factory, tmp_path: Path
) -> None:
    store_path, _, ids, _ = built_store(tmp_path_factory)
    out = tmp_path / "ds"
    shutil.copytree(store_path, out)
    args = ["dataset", "split", str(out), "--method", "composition", "--fractions", "0.6,0.2,0.2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    store = DatasetStore(out)
    parts = store.splits()
    assert (out / "splits" / "default.json").is_file()
    formulas = dict(zip(store.ids, store.column("formula"), strict=True))
    groups = [{formulas[i] for i in parts[p]} for p in ("train", "val", "test")]
    assert not (groups[0] & groups[1] | groups[0] & groups[2] | groups[1] & groups[2])
    assert sorted(sum(parts.values(), [])) == sorted(ids)
    assert runner.invoke(app, args).exit_code == 0  # same arguments: same split, accepted
    other = runner.invoke(app, [*args, "--seed", "5"])
    assert other.exit_code == 2 and "--overwrite" in other.output
    assert runner.invoke(app, [*args, "--seed", "5", "--overwrite"]).exit_code == 0
    rnd = make_split(store, "random", (0.5, 0.25, 0.25), seed=1, name="rnd")
    assert store.splits("rnd") == rnd
    with pytest.raises(SettingsError, match="no split 'missing'.*default"):
        store.splits("missing")


def test_bad_fractions_and_methods_are_rejected(tmp_path_factory) -> None:
    store = DatasetStore(built_store(tmp_path_factory)[0])
    with pytest.raises(SettingsError, match="summing to 1"):
        make_split(store, "random", (0.8, 0.3, 0.1))
    with pytest.raises(SettingsError, match="method must be one of"):
        make_split(store, "alphabetical")
    bad = runner.invoke(app, ["dataset", "split", str(store.path), "--fractions", "0.8;0.2"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
