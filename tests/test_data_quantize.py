"""q16 stores: tensors rounded to a stated quantum, about half of float16's size, read back within it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rhoprop.data import DatasetStore, build_dataset
from rhoprop.data.store import StoreSettings
from rhoprop.data.verify import verify_store
from rhoprop.errors import SettingsError
from rhoprop.grid import StandardizeSettings, standardize
from rhoprop.io import read_density


@pytest.fixture(scope="module")
def densities(fixtures_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dens")
    shutil.copy(fixtures_dir / "CHGCAR.LiCoO2_spin.gz", folder / "LiCoO2.CHGCAR.gz")
    return folder


def _build(densities, out, **options):
    settings = StandardizeSettings(n=24, channels=("total", "spin"))
    report = build_dataset(densities, None, out, settings, progress=False, **options)
    assert report.clean, report.entries
    return DatasetStore(out)


def test_q16_store_reads_back_within_half_a_quantum_and_is_smaller_than_float16(densities, tmp_path) -> None:
    exact = standardize(read_density(densities / "LiCoO2.CHGCAR.gz"), StandardizeSettings(n=24, channels=("total", "spin"))).x
    q = _build(densities, tmp_path / "q16", dtype="q16", quantum=0.03)
    f16 = _build(densities, tmp_path / "f16", dtype="float16")
    assert q.store_settings.dtype == "q16" and q.store_settings.quantum == 0.03
    x = q.read(0).x
    assert x.dtype == np.float32
    assert np.abs(x - exact).max() <= 0.015 + 1e-6
    assert np.abs(x - exact).max() > 1e-4  # it really is rounded
    size = lambda store: sum(p.stat().st_size for p in store.shards)  # noqa: E731
    assert size(q) < 0.8 * size(f16)
    assert all(check.ok for check in verify_store(tmp_path / "q16"))


def test_q16_needs_a_positive_quantum_and_floats_none() -> None:
    with pytest.raises(SettingsError, match="quantum"):
        StoreSettings(dtype="q16", quantum=0.0)
    with pytest.raises(SettingsError, match="quantum"):
        StoreSettings(dtype="float16", quantum=0.03)
    assert StoreSettings.from_dict({"dtype": "float16", "content_hash": "sha256", "format_version": 1,
                                    "standardize": StandardizeSettings().to_dict()}).quantum == 0.0
