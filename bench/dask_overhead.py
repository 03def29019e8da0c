"""Benchmark: what Dask costs rhoprop per run and per task, with a local cluster of 2 workers.

Per run: starting the local cluster (:func:`rhoprop.cluster.dask_client`, workers forked after the
compiled kernels are imported) and closing it. Per task: ``--tasks`` no-op tasks through
:func:`rhoprop.cluster.run_bounded` (2 in flight per worker, as ``dataset build`` submits), the
wall time per task; and one task at a time (submit, wait for the result), the round trip. Each
measurement is repeated ``--repeat`` times, interleaved; medians are reported with the load average.

    .venv/bin/python bench/dask_overhead.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def _noop(x: int) -> int:
    return x


def one_round(tasks: int) -> dict[str, float]:
    """One start, the task measurements, one close (seconds)."""
    from rhoprop.cluster import dask_client, run_bounded

    warm = ("rhoprop.io._kernels", "rhoprop.grid._spline", "rhoprop.io", "rhoprop.grid")
    t0 = time.perf_counter()
    context = dask_client(2, None, warm)
    client = context.__enter__()
    client.wait_for_workers(2)
    t1 = time.perf_counter()
    for _ in run_bounded(client, lambda i: client.submit(_noop, i, pure=False), range(tasks)):
        pass
    t2 = time.perf_counter()
    for i in range(tasks // 10):
        client.submit(_noop, i, pure=False).result()
    t3 = time.perf_counter()
    context.__exit__(None, None, None)
    t4 = time.perf_counter()
    return {
        "start_s": t1 - t0,
        "close_s": t4 - t3,
        "bounded_ms_per_task": (t2 - t1) / tasks * 1e3,
        "round_trip_ms": (t3 - t2) / (tasks // 10) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="no-op tasks per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    args = parser.parse_args()
    import rhoprop.grid._spline
    import rhoprop.io._kernels  # noqa: F401 - imported before the clock, as dataset build does

    load_before = os.getloadavg()
    rounds = [one_round(args.tasks) for _ in range(args.repeat)]
    summary = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        **{
            key: round(statistics.median(r[key] for r in rounds), 3)
            for key in ("start_s", "close_s", "bounded_ms_per_task", "round_trip_ms")
        },
        "rounds": rounds,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
