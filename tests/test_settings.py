"""Typed settings: strict round trips and atomic writes."""

from __future__ import annotations

import os
import stat

import pytest

from rhoprop.errors import SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.settings import atomic_write_text


def test_settings_round_trip_through_json(tmp_path):
    settings = StandardizeSettings(mode="cell", n=16, channels=("total", "spin"))
    settings.to_json(tmp_path / "s.json")
    assert StandardizeSettings.from_json(tmp_path / "s.json") == settings


def test_unknown_settings_key_is_rejected_with_the_valid_keys():
    with pytest.raises(SettingsError, match="unknown key.*'nn'.*valid keys"):
        StandardizeSettings.from_dict({"nn": 32})


def test_invalid_settings_value_names_the_field_and_the_value():
    with pytest.raises(SettingsError, match="mode must be one of.*'sphere'"):
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
