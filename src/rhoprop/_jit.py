"""numba compilation shared by the compiled kernels (imported only by them, on first use)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit


def jit(signature: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` for one explicit ``signature``, compiled when the module loads.

    The machine code is cached on disk where numba can write (beside the source, or the user's
    cache folder); on a read-only install with no writable cache folder it is compiled in memory
    instead (about 1 s per process) rather than failing.
    """

    def compile_(func: Callable[..., Any]) -> Any:
        try:
            return njit(signature, cache=True, nogil=True, boundscheck=False)(func)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            return njit(signature, nogil=True, boundscheck=False)(func)

    return compile_
