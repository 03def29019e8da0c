"""Gradient-boosting baselines: one OpenMP thread against every core's thread, same run.

Usage::

    .venv/bin/python bench/gb_threads.py                   # the built-in tiers, composition model
    .venv/bin/python bench/gb_threads.py --repeat 3 --targets formation_energy,band_gap

Fits the composition model (:func:`rhoprop.train.baselines.composition_predictions`, the
benchmark's settings) on the composition features of ``gpaw-v1,gpaw-scf-v1`` with
``BaselineSettings.threads`` 1 and with the machine's core count, interleaved, and prints the best
wall time of each and their ratio. Run it as the machine is used (a DFT batch beside it is the
case the default of one thread is for) and say what else ran.
"""

from __future__ import annotations

import argparse
import os
import sys

from _timing import best_times


def main() -> int:
    """Time both thread counts and print the ratio."""
    import numpy as np

    from rhoprop.analysis.benchmark import _gb_features
    from rhoprop.train.baselines import BaselineSettings, composition_predictions
    from rhoprop.train.data import label_matrix, open_store, select_tasks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gpaw-v1,gpaw-scf-v1")
    parser.add_argument("--targets", default="formation_energy,band_gap,is_metal")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    store = open_store(args.dataset)
    ids = store.ids
    train, test = ids[: int(0.8 * len(ids))], ids[int(0.8 * len(ids)) :]
    tasks = select_tasks(store, args.targets.split(","), ids)
    x_train, x_test = (
        _gb_features(store, train, "composition"),
        _gb_features(store, test, "composition"),
    )
    y_train = label_matrix(store, train, tasks)
    cores = os.cpu_count() or 1
    results = {}

    def fit(threads: int) -> object:
        out = composition_predictions(
            tasks, x_train, y_train, x_test, BaselineSettings(threads=threads)
        )
        results[threads] = out
        return out

    one, every = best_times([lambda: fit(1), lambda: fit(cores)], args.repeat)
    same = all(np.array_equal(results[1][k], results[cores][k]) for k in results[1])
    print(f"{len(train)} training materials, {len(tasks)} targets, 300 iterations each; "
          f"load average {os.getloadavg()[0]:.1f} on {cores} cores")  # fmt: skip
    print(f"threads 1: {one:.2f} s   threads {cores}: {every:.2f} s   ratio {every / one:.1f}x   "
          f"identical predictions: {same}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
