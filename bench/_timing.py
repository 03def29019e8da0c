"""Timing helper shared by the bench/ scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_times(funcs: list[Callable[[], object]], repeat: int) -> list[float]:
    """Fastest wall time (s) of each function over ``repeat`` interleaved rounds, after a warm-up.

    Interleaving and taking the minimum keep the comparison fair on a shared, loaded machine.
    """
    for func in funcs:
        func()
    best = [float("inf")] * len(funcs)
    for _ in range(repeat):
        for index, func in enumerate(funcs):
            start = time.perf_counter()
            func()
            best[index] = min(best[index], time.perf_counter() - start)
    return best
