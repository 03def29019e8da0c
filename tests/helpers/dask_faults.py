"""Real Dask processes for the tests: a scheduler and workers on 127.0.0.1, and a worker fault.

:func:`start_scheduler` starts ``dask scheduler`` and ``dask worker`` as the user would, and
:class:`KillOnSample` is a worker plugin that SIGKILLs its own worker process as it starts a task
naming a given sample id: what the kernel's OOM killer does to a worker that reads a file too big
for it. The workers import this module, so they run with ``tests/`` on their path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

TESTS = Path(__file__).resolve().parents[1]


class KillOnSample(WorkerPlugin):
    """SIGKILL the worker process that starts a task whose arguments name ``sample_id``."""

    name = "rhoprop-test-kill-on-sample"

    def __init__(self, sample_id: str) -> None:
        self.sample_id = sample_id
        self.worker: Any = None

    def setup(self, worker: Any) -> None:
        self.worker = worker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or self.worker is None:
            return
        task = self.worker.state.tasks.get(key)
        if task is not None and self.sample_id in repr(getattr(task.run_spec, "args", ())):
            os.kill(os.getpid(), signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Pids of every process below ``pid`` now."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pids: list[int]) -> list[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    import psutil

    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


@contextlib.contextmanager
def start_scheduler(folder: Path, workers: int = 2) -> Iterator[str]:
    """A Dask scheduler on 127.0.0.1 (allowed-failures 1) with ``workers`` single-threaded workers
    under one nanny process; yields its address, stops both (by pid) on exit."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "scheduler.json"
    env = {
        **os.environ,
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
        env=env, stdout=subprocess.DEVNULL, stderr=(folder / "scheduler.log").open("w"),
    )  # fmt: skip
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            assert scheduler.poll() is None, (folder / "scheduler.log").read_text()
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--nworkers",
                    str(workers),
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(folder / "workers.log").open("w"),
            )
        )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
