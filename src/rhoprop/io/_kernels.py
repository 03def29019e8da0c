"""Compiled kernels of the readers (numba; imported on first use, since loading numba costs about
0.2 s and 100 MB of memory that a process which reads no file should not pay)."""

from __future__ import annotations

import numpy as np
from numba import types

from rhoprop._jit import jit


@jit(
    types.Tuple((types.int64, types.boolean))(
        types.Array(types.uint8, 1, "C", readonly=True), types.boolean
    )
)
def count_tokens_in(data: np.ndarray, after_space: bool) -> tuple[int, bool]:  # pragma: no cover
    """Tokens starting in ``data`` (bytes <= 32 separate them) and whether it ends in a
    separator."""
    n = data.size
    if n == 0:
        return 0, after_space
    total = 1 if after_space and data[0] > 32 else 0
    for i in range(1, n):
        total += (data[i - 1] <= 32) & (data[i] > 32)
    return total, data[n - 1] <= 32
