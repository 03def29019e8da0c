"""`rhoprop dataset build` and `rhoprop generate` on Dask: a running scheduler gives the local
default's results, a killed worker's tasks are rescheduled, a task that kills its worker twice is a
recorded failure, the CPU-time limit holds inside a worker, and `kill -9` of a command leaves no
process behind. Real Dask processes on 127.0.0.1 (``dask scheduler``, ``dask worker``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.cluster import dask_client
from rhoprop.data import DatasetStore, build_dataset
from rhoprop.data.store import shard_paths
from rhoprop.errors import RhopropError
from rhoprop.grid.settings import StandardizeSettings

from helpers.dask_faults import KillOnSample, alive, descendants, start_scheduler
from helpers.densities import write_dataset_folder

runner = CliRunner()
SETTINGS = StandardizeSettings(n=8)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> str:
    """A running scheduler with 2 single-threaded workers, for the whole module."""
    with start_scheduler(tmp_path_factory.mktemp("dask")) as address:
        yield address


def _tensors(path: Path) -> dict[str, np.ndarray]:
    store = DatasetStore(path)
    try:
        return {i: store.read(i).x for i in store.ids}
    finally:
        store.close()


def _worker_pids(client: Client) -> dict[str, int]:
    return client.run(os.getpid)


def test_build_on_a_running_scheduler_equals_the_local_default(
    tmp_path: Path, scheduler: str
) -> None:
    ids, _ = write_dataset_folder(tmp_path / "in", 12)
    local = build_dataset(tmp_path / "in", None, tmp_path / "local", SETTINGS, workers=2,
                          progress=False)  # fmt: skip
    remote = build_dataset(tmp_path / "in", None, tmp_path / "remote", SETTINGS,
                           progress=False, scheduler=scheduler)  # fmt: skip
    assert local.clean and remote.clean and local.n_added == remote.n_added == 12
    a, b = _tensors(tmp_path / "local"), _tensors(tmp_path / "remote")
    assert sorted(a) == sorted(b) == ids
    for i in ids:
        np.testing.assert_array_equal(a[i], b[i])
    runs = json.loads((tmp_path / "remote" / "build.json").read_text())["runs"]
    assert runs[-1]["scheduler"] == scheduler


def test_a_worker_killed_mid_build_has_its_files_rescheduled(
    tmp_path: Path, scheduler: str
) -> None:
    ids, _ = write_dataset_folder(tmp_path / "in", 40, spacing=0.3)
    out = tmp_path / "ds"
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        with Client(scheduler, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy and shard_paths(out):  # some files stored, more being read
                    pid = _worker_pids(client)[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    report = build_dataset(tmp_path / "in", None, out, SETTINGS, shard_size=4, progress=False,
                           scheduler=scheduler)  # fmt: skip
    killer.join()
    assert killed, "no worker was busy while the build ran"
    assert report.clean and report.n_added == 40, report.summary()
    store = DatasetStore(out)  # refuses duplicate ids
    assert sorted(store.ids) == ids and len(store) == 40
    store.close()
    result = runner.invoke(app, ["dataset", "verify", str(out)])
    assert result.exit_code == 0, result.output


def test_a_file_that_kills_its_worker_twice_is_reported_and_the_rest_built(
    tmp_path: Path, scheduler: str
) -> None:
    ids, _ = write_dataset_folder(tmp_path / "in", 6)
    with Client(scheduler, timeout=30) as client:
        client.register_plugin(KillOnSample("gen-0003"))
        try:
            report = build_dataset(tmp_path / "in", None, tmp_path / "ds", SETTINGS,
                                   progress=False, scheduler=scheduler)  # fmt: skip
        finally:
            client.unregister_worker_plugin(KillOnSample.name)
        client.wait_for_workers(2, timeout=120)
    assert [(e.category, e.id) for e in report.skipped] == [("bad_file", "gen-0003")]
    assert "worker process died 2 times" in report.skipped[0].detail
    assert sorted(DatasetStore(tmp_path / "ds").ids) == [i for i in ids if i != "gen-0003"]


def test_local_workers_are_not_forked_from_the_threaded_process_that_starts_them() -> None:
    # A child forked from a process with threads can inherit a lock another thread holds and wait
    # on it forever (a worker hung in its first write to stderr, and the build with it): the local
    # workers come from a forkserver, a fresh process, and still start with the warm modules.
    with dask_client(2, warm=("rhoprop.grid.standardize",)) as client:
        parents = client.run(os.getppid)
        warm = client.run(lambda: "rhoprop.grid.standardize" in sys.modules)
    assert len(parents) == 2 and os.getpid() not in parents.values()
    assert all(warm.values())


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(RhopropError, match="tcp://HOST:PORT"), dask_client(scheduler="localhost:1"):
        pass
    out = tmp_path / "x"
    result = runner.invoke(app, ["dataset", "build", str(tmp_path), "--out", str(out), "--scheduler", "nowhere"])
    assert result.exit_code == 2 and "not a Dask scheduler address" in result.output
    assert not out.exists()  # exit 2: nothing written (it once left x/settings.json behind)
    result = runner.invoke(app, ["generate", "--protocol", "gpaw-scf-v1", "--prototypes", "--limit", "1",
                                 "--out", str(out), "--scheduler", "nowhere"])  # fmt: skip
    assert result.exit_code == 2 and "not a Dask scheduler address" in result.output
    assert not out.exists()  # it once wrote protocol.json and screen.json first


def _run_until(args: list[str], ready, timeout: float = 120) -> tuple[subprocess.Popen, list[int]]:
    """Start ``python -m rhoprop.cli ARGS``; wait until ``ready(descendant pids)``; return the
    process and every process below it seen so far."""
    proc = subprocess.Popen([sys.executable, "-m", "rhoprop.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        now = descendants(proc.pid)
        seen.update(now)
        if ready(now):
            return proc, sorted(seen)
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"`rhoprop {' '.join(args)}` never got ready (exit status {proc.returncode})")


def _kill_9_leaves_nothing(proc: subprocess.Popen, seen: list[int]) -> None:
    seen = sorted(set(seen) | set(descendants(proc.pid)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(seen)
    for pid in left:  # ours: started by the command under test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left 30 s after kill -9 of the command: {left}"


def test_kill_9_of_a_dataset_build_leaves_no_process(tmp_path: Path) -> None:
    write_dataset_folder(tmp_path / "in", 150, spacing=0.3, layout="flat")
    args = ["dataset", "build", str(tmp_path / "in"), "--out", str(tmp_path / "ds"),
            "--workers", "2", "--n", "8", "--shard-size", "5", "--no-progress"]  # fmt: skip
    proc, seen = _run_until(args, lambda pids: len(pids) >= 2 and shard_paths(tmp_path / "ds"))
    _kill_9_leaves_nothing(proc, seen)


# -- generate --------------------------------------------------------------------------------


def _aluminium() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])


def _cheap_generate(out: Path, **kwargs) -> dict:
    pytest.importorskip("gpaw", reason="the dft extra (GPAW) is not installed")
    pytest.importorskip("chgnet", reason="the dft extra (CHGNet) is not installed")
    from rhoprop.dft import SCFProtocol, generate
    from rhoprop.dft.material import Candidate, result_path

    protocol = SCFProtocol(pw_cutoff_ev=250, kpoint_density=1.5)
    report = generate([Candidate("Al", _aluminium())], out, protocol=protocol, progress=False,
                      **kwargs)  # fmt: skip
    assert report.computed == ["Al"], report
    return json.loads(result_path(out, "Al").read_text())


@pytest.mark.dft
def test_generate_on_a_running_scheduler_equals_the_local_default(
    tmp_path: Path, scheduler: str
) -> None:
    local = _cheap_generate(tmp_path / "local", workers=1)
    remote = _cheap_generate(tmp_path / "remote", scheduler=scheduler)
    assert remote["protocol_hash"] == local["protocol_hash"]
    for key in ("energy", "fermi_energy", "bandwidth"):
        assert remote["scf"][key] == pytest.approx(local["scf"][key], abs=1e-6), key


@pytest.mark.dft
def test_the_cpu_time_limit_holds_inside_a_dask_worker(tmp_path: Path) -> None:
    """A 3 s CPU limit on a calculation of minutes: the material fails with a timeout, after about
    3 s of its own CPU time, although Dask runs it from a worker thread."""
    pytest.importorskip("gpaw", reason="the dft extra (GPAW) is not installed")
    from rhoprop.dft import DFTProtocol, generate, load_failures
    from rhoprop.dft.material import Candidate

    si = Structure(Lattice.cubic(5.431), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    report = generate([Candidate("Si", si)], tmp_path, workers=1, protocol=DFTProtocol(),
                      max_minutes=0.05, progress=False)  # fmt: skip
    assert report.failed == {"Si": "Timeout: exceeded 3 s of CPU time"}
    assert 3.0 <= report.seconds["Si"] < 60
    assert load_failures(tmp_path)["Si"]["reason"] == "Timeout: exceeded 3 s of CPU time"


@pytest.mark.dft
def test_kill_9_of_generate_leaves_no_process(tmp_path: Path) -> None:
    """Killed while GPAW runs: command -> worker -> helper -> the material's process all go."""
    cif = tmp_path / "Si.cif"
    Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).to(
        filename=str(cif)
    )
    log = tmp_path / "out" / "logs" / "Si.txt"
    args = ["generate", str(cif), "--out", str(tmp_path / "out"), "--workers", "1"]
    proc, seen = _run_until(args, lambda pids: len(pids) >= 3 and log.is_file())
    _kill_9_leaves_nothing(proc, seen)
    assert not (tmp_path / "out" / "results" / "Si.json").exists()
