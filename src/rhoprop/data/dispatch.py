"""Where a build's files are read: in the building process, or as Dask tasks in batches.

With one worker and no scheduler, files are read here, one after the other. Otherwise the files go
to Dask (:func:`rhoprop.cluster.dask_client`: a local cluster of ``workers`` processes or a running
scheduler's workers) in batches of a few files: one task costs Dask a few milliseconds of
scheduling and messages, as long as reading a small file. A batch holds files of up to
:data:`BATCH_BYTES` (about 0.1 s of reading on one core) and at most :data:`BATCH_FILES` files;
near the end of a build batches shrink (at most the remaining files / (:data:`TAIL_SPLIT` x worker
threads)), so that no worker is left alone with a long last batch. At most two batches per worker
thread are in flight, so memory stays bounded whatever the number of files.

A worker that dies has its batches rescheduled by Dask. A batch that was on two dying workers
(``KilledWorker``: Dask gave up on it) may hold bystanders, queued behind the culprit: once the
other batches are done, each of its files runs alone, so that only a file that kills its worker
again is reported (``bad_file``, with the reason) and the others are read, as before.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from rhoprop.data.records import ReadOptions, read_batch, reason
from rhoprop.data.report import ReportEntry
from rhoprop.data.store import SampleRecord

#: Input bytes per batch (0.1 s of reading at the ~300 MB/s one core reaches on CHGCARs here).
BATCH_BYTES = 32 * 2**20
#: Files per batch at most.
BATCH_FILES = 64
#: Near the end a batch holds at most remaining files / (TAIL_SPLIT x worker threads).
TAIL_SPLIT = 4

Task = tuple[str, str]


def plan_batches(tasks: Sequence[Task], threads: int) -> Iterator[list[Task]]:
    """The batches of ``tasks`` ((id, path) pairs) for ``threads`` worker threads, in order."""
    i, n = 0, len(tasks)
    while i < n:
        cap = max(1, min(BATCH_FILES, (n - i) // (TAIL_SPLIT * max(1, threads))))
        batch: list[Task] = []
        size = 0
        while i < n and len(batch) < cap and size < BATCH_BYTES:
            with contextlib.suppress(OSError):  # a missing file: the reader reports it
                size += os.stat(tasks[i][1]).st_size
            batch.append(tasks[i])
            i += 1
        yield batch


def read_files(
    tasks: Sequence[Task],
    options: ReadOptions,
    workers: int = 1,
    scheduler: str | None = None,
) -> Iterator[SampleRecord | ReportEntry]:
    """A record or a report entry for each (id, path) of ``tasks``, in the order they finish."""
    if workers <= 1 and scheduler is None:
        for task in tasks:
            yield from read_batch([task], options)
        return
    from distributed import KilledWorker

    from rhoprop.cluster import dask_client, killed_reason, run_bounded, total_threads

    tasks = [(sid, os.path.abspath(path)) for sid, path in tasks]  # workers may have another cwd
    warm = ("rhoprop.io._kernels", "rhoprop.grid._spline", "rhoprop.io", "rhoprop.grid")
    with dask_client(workers, scheduler, warm) as client:
        run = uuid.uuid4().hex[:8]
        numbers = itertools.count()
        suspects: list[Task] = []

        def submit(batch: list[Task]) -> Any:
            key = f"rhoprop-read-{run}-{next(numbers)}"
            return client.submit(read_batch, batch, options, key=key, pure=False)

        batches = plan_batches(tasks, total_threads(client))
        for batch, result, exc in run_bounded(client, submit, batches):
            if exc is None:
                yield from result
            elif isinstance(exc, KilledWorker):
                suspects.extend(batch)
            else:
                detail = f"the task reading it failed: {reason(exc)}"
                yield from (ReportEntry("bad_file", sid, path, detail) for sid, path in batch)
        # Files of tasks that were on dying workers, the culprit and its bystanders: each alone now.
        for sid, path in suspects:
            future = submit([(sid, path)])
            try:
                yield from future.result()
            except KilledWorker as exc:
                yield ReportEntry("bad_file", sid, path, killed_reason(exc, "file") or str(exc))
            except Exception as exc:  # the task itself failed: reported, never fatal
                yield ReportEntry(
                    "bad_file", sid, path, f"the task reading it failed: {reason(exc)}"
                )
