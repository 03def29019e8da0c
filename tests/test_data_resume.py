"""A build over 200+ files killed with SIGKILL resumes: no duplicate, missing or corrupt sample."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.data import DatasetStore
from rhoprop.data.store import shard_paths
from rhoprop.grid import standardize
from rhoprop.io import read_density

from helpers.densities import write_dataset_folder, write_labels_csv

N_FILES = 220


def _wait_until_the_killed_workers_release_the_lock(out: Path) -> None:
    """The forked pool workers hold the store lock's inherited descriptor until the kernel has torn
    them down, which under load can outlast the parent's exit; a rerun in that moment is refused
    ("being written by pid ..."), as it should be. Wait for the lock, as a user rerunning would."""
    deadline = time.monotonic() + 30
    while True:
        fd = os.open(out / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            assert time.monotonic() < deadline, "the killed build's processes still hold the lock"
            time.sleep(0.05)
        finally:
            os.close(fd)


def test_build_killed_with_sigkill_resumes_exactly(tmp_path: Path) -> None:
    ids, rows = write_dataset_folder(tmp_path / "in", N_FILES, spacing=0.5, layout="flat")
    labels = write_labels_csv(tmp_path / "labels.csv", rows)
    out = tmp_path / "ds"
    args = ["dataset", "build", str(tmp_path / "in"), "--labels", str(labels), "--out", str(out),
            "--workers", "2", "--n", "16", "--shard-size", "10", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhoprop.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill reaches the pool workers too
    )
    try:
        deadline = time.monotonic() + 120
        while len(shard_paths(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        still_running = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert still_running, f"the build ended before it could be killed: {proc.stdout.read()!r}"
    assert proc.returncode == -signal.SIGKILL
    _wait_until_the_killed_workers_release_the_lock(out)
    done_before = len(DatasetStore(out))
    assert 0 < done_before < N_FILES

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{N_FILES - done_before} added, {done_before} already there" in " ".join(
        result.output.split()
    )
    assert not [p for p in (out / "shards").iterdir() if p.name.endswith(".tmp")]
    store = DatasetStore(out)  # raises on duplicate ids
    assert len(store) == N_FILES and sorted(store.ids) == ids
    for sid in ids:
        fresh = standardize(read_density(tmp_path / "in" / f"{sid}.CHGCAR"), store.settings)
        np.testing.assert_array_equal(store.read(sid).x, fresh.x)
    assert store.labels["band_gap"].notna().all()
