"""Dask distributed for rhoprop's batch jobs: one laptop or a cluster, the same call.

``rhoprop generate`` and ``rhoprop dataset build`` submit their tasks through :func:`dask_client`:
by default a local cluster of single-threaded worker processes, started and closed around the job
(the embedded default: nothing to start by hand); with ``scheduler="tcp://HOST:PORT"`` the workers
of a running Dask scheduler (``dask scheduler`` / ``dask worker``, or dask-jobqueue's SLURMCluster,
see docs/scaling.md). The calling process stays the only writer of the results (the store, the
failure records); workers compute and return.

A task costs Dask a few milliseconds (scheduling, two messages, the result's transfer; 3-9 ms per
task measured on this project's busy 2-core machine), so short work is sent in batches.

Faults are Dask's: a worker that dies in the middle of a task has the task rescheduled on another
worker; a task that was running on :data:`ALLOWED_FAILURES` + 1 dying workers fails with
``KilledWorker`` (:func:`killed_reason` words it). A local cluster's workers exit when the process
that started them dies, even by ``kill -9`` (their nannies live in it; distributed's worker
processes exit when their parent's pipe closes).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rhoprop.errors import RhopropError

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

#: Worker deaths a task may survive (Dask's ``distributed.scheduler.allowed-failures``) in the local
#: cluster: a task running on a worker that dies a second time is a failure (``KilledWorker``).
#: A running scheduler keeps its own setting (Dask's default is 3); see docs/scaling.md.
ALLOWED_FAILURES = 1
#: Seconds to wait for a running scheduler to answer and to have at least one worker.
CONNECT_TIMEOUT_S = 30.0
_LOCAL_CONFIG = {
    "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    # No worker pauses or spills: a task's data is one file's record or one material's status.
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.pause": False,
}


def check_scheduler_address(scheduler: str) -> str:
    """``scheduler`` if it looks like a Dask address (``tcp://HOST:PORT``), else RhopropError."""
    scheme, sep, rest = scheduler.partition("://")
    _, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls", "ucx", "inproc") or not colon or not port.isdigit():
        raise RhopropError(
            f"--scheduler {scheduler!r} is not a Dask scheduler address; expected tcp://HOST:PORT "
            "(what `dask scheduler` prints as 'Scheduler at:')"
        )
    return scheduler


@contextlib.contextmanager
def dask_client(
    workers: int = 1, scheduler: str | None = None, warm: Sequence[str] = ()
) -> Iterator[Client]:
    """A Dask client: to the running scheduler at ``scheduler`` (``tcp://HOST:PORT``), or to a local
    cluster of ``workers`` single-threaded worker processes started here and closed on exit.

    Where the system has it, local workers are forked from a forkserver that imported the modules
    ``warm`` (e.g. the compiled kernels) once: they start in a fraction of a second with them,
    instead of importing Python, Dask and rhoprop again each (2-4 s of CPU per worker).
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        check_scheduler_address(scheduler)
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RhopropError(
                f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); "
                "start it with `dask scheduler` and its workers with `dask worker "
                f"{scheduler}`, or omit --scheduler to use a local cluster"
            ) from exc
        try:
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except TimeoutError as exc:
                raise RhopropError(
                    f"the Dask scheduler at {scheduler} has no workers after "
                    f"{CONNECT_TIMEOUT_S:.0f} s; start some with `dask worker {scheduler} "
                    "--nthreads 1`"
                ) from exc
            yield client
        finally:
            client.close()
        return
    if workers < 1:
        raise RhopropError(f"workers must be at least 1, got {workers}")
    config: dict[str, Any] = dict(_LOCAL_CONFIG)
    forkserver = "forkserver" in multiprocessing.get_all_start_methods()
    if forkserver:
        config["distributed.worker.multiprocessing-method"] = "forkserver"
    with dask.config.set(config):
        if forkserver:
            _preload_forkserver(warm)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard; the scheduler's small HTTP server (health, metrics) on a free port.
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
        try:
            client = Client(cluster, set_as_default=False)
            try:
                if warm:  # preloaded unless this process's forkserver started with other modules
                    client.run(_import_all, tuple(warm))
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


def _preload_forkserver(warm: Sequence[str]) -> None:
    """Have the forkserver that starts the local workers import ``warm`` (and Dask) once.

    The workers are forked from that server, a fresh single-threaded process, not from this one:
    forking a process with threads (Dask's event loop, a test runner's, a logging handler's) can
    copy a lock another thread holds, and the child then waits on it forever (seen: a worker stuck
    in its first write to stderr, and the build waiting for it). Started once per process; a later
    call with other modules has them imported by each worker instead.
    """
    from distributed.utils import get_mp_context

    context = get_mp_context()  # Dask's own preload list, set once per process
    context.set_forkserver_preload(["distributed", *warm])


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def total_threads(client: Client) -> int:
    """Worker threads the scheduler has now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def run_bounded(
    client: Client,
    submit: Callable[[T], Future],
    items: Iterable[T],
    per_thread: int = 2,
    recount_s: float = 10.0,
) -> Iterator[tuple[T, Any, BaseException | None]]:
    """Submit ``submit(item)`` for each item, at most ``per_thread`` tasks per worker thread in
    flight, and yield ``(item, result, None)`` or ``(item, None, exception)`` as each finishes.

    Memory stays bounded whatever the number of items: results are gathered as they come and
    released. The worker count is read again every ``recount_s`` seconds (an adaptive cluster
    grows). ``exception`` is what the task raised, ``KilledWorker`` or ``CancelledError``.
    """
    from distributed import as_completed

    pending = iter(items)
    done = as_completed(loop=client.loop, with_results=True, raise_errors=False)
    owners: dict[Any, T] = {}
    limit, counted = per_thread * total_threads(client), time.monotonic()
    exhausted = False

    def top_up() -> None:
        nonlocal exhausted
        while not exhausted and len(owners) < limit:
            item = next(pending, _END)
            if item is _END:
                exhausted = True
                return
            future = submit(item)
            owners[future.key] = item
            done.add(future)

    top_up()
    while owners:
        future, value = next(done)
        item = owners.pop(future.key)
        if future.status == "error":
            yield item, None, value[1]
        elif future.status == "cancelled":
            yield item, None, value
        else:
            yield item, value, None
        future.release()
        if time.monotonic() - counted > recount_s:
            limit, counted = per_thread * total_threads(client), time.monotonic()
        top_up()


_END: Any = object()


def killed_reason(exc: BaseException, what: str = "task") -> str | None:
    """The failure reason of a task whose workers died (Dask's ``KilledWorker``), else None."""
    from distributed import KilledWorker

    if not isinstance(exc, KilledWorker):
        return None
    deaths = getattr(exc, "allowed_failures", ALLOWED_FAILURES) + 1
    return (
        f"the worker process died {deaths} times while running this {what} (killed, crashed "
        "or out of memory); Dask stopped retrying it (KilledWorker)"
    )
