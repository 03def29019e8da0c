"""Typed settings: strict round trips and atomic writes."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rhoprop.analysis.benchmark import BenchmarkSettings, _cache_key
from rhoprop.errors import SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.models.baselines import CGCNNConfig
from rhoprop.models.ensemble import EnsembleConfig
from rhoprop.models.msa3dcnn import MSA3DCNNConfig
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, atomic_write_text, check_fields, is_int, is_number
from rhoprop.train.baselines import BaselineSettings
from rhoprop.train.config import TrainConfig


def test_settings_round_trip_through_json(tmp_path):
    settings = StandardizeSettings(mode="cell", n=16, channels=("total", "spin"))
    settings.to_json(tmp_path / "s.json")
    assert StandardizeSettings.from_json(tmp_path / "s.json") == settings


def test_unknown_settings_key_is_rejected_with_the_valid_keys():
    with pytest.raises(SettingsError, match=r"unknown key.*'nn'.*valid keys"):
        StandardizeSettings.from_dict({"nn": 32})


def test_invalid_settings_value_names_the_field_and_the_value():
    with pytest.raises(SettingsError, match=r"mode must be one of.*'sphere'"):
        StandardizeSettings(mode="sphere")


def test_atomic_write_gives_the_file_umask_permissions_and_leaves_no_temporary(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CGCNNConfig(n_conv=0), r"CGCNNConfig\.n_conv must be an int >= 1, got 0"),
        (lambda: CGCNNConfig(cutoff=-1.0), r"CGCNNConfig\.cutoff must be > 0 \(Å\), got -1\.0"),
        (
            lambda: CGCNNConfig(atom_dim=True),
            r"CGCNNConfig\.atom_dim must be an int >= 1, got True",
        ),
        (lambda: BaselineSettings(cgcnn_lr=0), r"BaselineSettings\.cgcnn_lr must be > 0, got 0"),
        (
            lambda: BaselineSettings(models=("mean", "rf")),
            r"BaselineSettings\.models must be among",
        ),
        (lambda: EnsembleConfig(members=1), r"EnsembleConfig\.members must be an int >= 2, got 1"),
        (lambda: TrainConfig(epochs=0), r"TrainConfig\.epochs must be an int >= 1, got 0"),
        (
            lambda: MSA3DCNNConfig(dropout=1.5),
            r"MSA3DCNNConfig\.dropout must be in \[0, 1\), got 1\.5",
        ),
        (
            lambda: BenchmarkSettings(folds=1),
            r"BenchmarkSettings\.folds must be an int >= 2, got 1",
        ),
    ],
)
def test_settings_classes_share_one_wording_for_a_bad_value(build, message):
    with pytest.raises(SettingsError, match=message):
        build()


def test_check_fields_reports_the_first_failed_check_with_class_field_and_value():
    check_fields("Demo", [(True, "a must be > 0", 1), (is_int(2), "b must be an int", 2)])
    with pytest.raises(SettingsError, match=r"^Demo\.b must be an int, got 2\.0$"):
        check_fields("Demo", [(True, "a must be > 0", 1), (is_int(2.0), "b must be an int", 2.0)])
    assert not is_int(True) and is_number(1) and is_number(0.5) and not is_number("1")



def test_a_late_field_at_its_earlier_value_leaves_every_earlier_cache_key_as_it_was():
    @dataclasses.dataclass(frozen=True)
    class Inner(Settings):
        LATE_FIELDS: ClassVar[dict[str, Any]] = {"new": 0}
        old: int = 1
        new: int = 5  # its default changed after it was added: the earlier value still counts

    @dataclasses.dataclass(frozen=True)
    class Outer(Settings):
        LATE_FIELDS: ClassVar[dict[str, Any]] = {"extra": False}
        inner: Inner = dataclasses.field(default_factory=Inner)
        extra: bool = False

    assert Outer().key_dict() == {"inner": {"old": 1, "new": 5}}
    assert Outer(Inner(new=0), extra=True).key_dict() == {"inner": {"old": 1}, "extra": True}
    assert Outer().to_dict() == {"inner": {"old": 1, "new": 5}, "extra": False}
    # recorded 2026-12-07: a change here orphans every cached benchmark, transfer and study
    # result (hours of training); change the key's inputs only on purpose, then update this value
    tasks = [TaskSpec("band_gap", minimum=0.0), TaskSpec("is_metal", kind="binary")]
    parts = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    # 2026-12-08, on purpose: the default network became the published recipe (compact, was small)
    assert _cache_key(BenchmarkSettings(), "msa3dcnn-density+structure", parts, tasks) == "a02cb767657d0b2e"
    # ... so the default's key is the published runs' (their settings pinned the accelerator to cpu)
    published = BenchmarkSettings.from_json(Path(__file__).parents[1] / "docs/benchmarks/gpaw-v1-17/settings.json")
    published = dataclasses.replace(published, train=dataclasses.replace(published.train, accelerator="auto"))
    assert _cache_key(published, "msa3dcnn-density+structure", parts, tasks) == "a02cb767657d0b2e"
