"""Damaged stores: shard checksums, truncated shards, corrupt chunks, `rhoprop dataset verify`, rebuilding."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.data import DatasetError, DatasetStore, build_dataset
from rhoprop.data.store import checksum_path, shard_paths
from rhoprop.data.verify import verify_store
from rhoprop.grid.settings import StandardizeSettings

from helpers.densities import write_dataset_folder, write_labels_csv

runner = CliRunner()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Inputs, labels and a clean store of 9 samples in shards of 4 (4 + 4 + 1), built once."""
    root = tmp_path_factory.mktemp("verify")
    _, rows = write_dataset_folder(root / "in", 9, layout="flat")
    labels = write_labels_csv(root / "labels.csv", rows)
    report = build_dataset(root / "in", labels, root / "ds", StandardizeSettings(n=12, channels=("total",)),
                           shard_size=4, progress=False)
    assert report.clean, report.entries
    return root / "in", labels, root / "ds"


@pytest.fixture
def store(source, tmp_path: Path) -> Path:
    """A private copy of the clean store."""
    return Path(shutil.copytree(source[2], tmp_path / "ds"))


def test_every_shard_is_written_with_its_sha256_and_verifies_clean(store: Path) -> None:
    shards = shard_paths(store)
    assert len(shards) == 3
    for shard in shards:
        recorded = checksum_path(shard).read_text().split()
        assert recorded == [hashlib.sha256(shard.read_bytes()).hexdigest(), shard.name]
    checks = verify_store(store)
    assert [(c.samples, c.checksum, c.ok) for c in checks] == [(4, "ok", True), (4, "ok", True), (1, "ok", True)]
    result = runner.invoke(app, ["dataset", "verify", str(store)])
    assert result.exit_code == 0 and "all 3 shards and 9 samples read back whole" in result.output


def test_a_truncated_shard_is_named_when_the_store_opens_and_by_verify(store: Path) -> None:
    shard = shard_paths(store)[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"shard-00001.h5 \(\d+ bytes\) cannot be opened as HDF5.*partial copy"):
        DatasetStore(store)
    checks = verify_store(store)
    assert [c.ok for c in checks] == [True, False, True]
    assert checks[1].checksum == "mismatch" and "truncated" in checks[1].error
    result = runner.invoke(app, ["dataset", "verify", str(store)])
    assert result.exit_code == 3 and "damaged: shard-00001.h5 (of 3 shards)" in result.output


def test_a_corrupt_tensor_chunk_is_named_with_its_sample(store: Path) -> None:
    shard = shard_paths(store)[0]
    with h5py.File(shard, "r") as f:
        sample_id = f["ids"][2].decode()
        chunk = f["x"].id.get_chunk_info(2)
    data = bytearray(shard.read_bytes())
    middle = chunk.byte_offset + chunk.size // 2
    data[middle : middle + 16] = bytes(16)
    shard.write_bytes(bytes(data))
    ds = DatasetStore(store)
    ds.read(1)  # the other samples of the shard still read
    with pytest.raises(DatasetError, match=f"the tensor of sample '{sample_id}' \\(row 2 of shard .*shard-00000.h5\\)"):
        ds.read(sample_id)
    checks = verify_store(store)
    assert checks[0].checksum == "mismatch"
    assert [sid for sid, _ in checks[0].damaged] == [sample_id]
    assert "cannot be decompressed" in checks[0].damaged[0][1]


def test_moving_a_damaged_shard_away_and_rebuilding_restores_its_samples(source, store: Path) -> None:
    inputs, labels, _ = source
    before = DatasetStore(store).ids
    damaged = shard_paths(store)[1]
    damaged.rename(store / "shard-00001.h5.damaged")
    checksum_path(damaged).unlink()
    report = build_dataset(inputs, labels, store, shard_size=4, progress=False)
    assert report.clean and report.n_added == 4
    assert sorted(DatasetStore(store).ids) == sorted(before)
    assert all(c.ok and c.checksum == "ok" for c in verify_store(store))


def test_record_missing_adds_checksums_to_shards_written_without_them(store: Path) -> None:
    for shard in shard_paths(store):
        checksum_path(shard).unlink()
    assert {c.checksum for c in verify_store(store)} == {"none recorded"}
    result = runner.invoke(app, ["dataset", "verify", str(store), "--record-missing"])
    assert result.exit_code == 0 and "recorded now" in result.output
    assert {c.checksum for c in verify_store(store)} == {"ok"}
