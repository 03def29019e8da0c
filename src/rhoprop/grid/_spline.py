"""Compiled kernels of the periodic cubic B-spline sampling (numba, compiled once and cached).

Both kernels leave out the B-spline's normalization: the prefilter skips its gain of 6 per axis and
the evaluation its weights' 1/6 per axis, so their product is the exact spline value with 36 fewer
multiplications per point. Values match ``scipy.ndimage.spline_filter`` + ``map_coordinates``
(``order=3``, ``mode="grid-wrap"``) to rounding; they run 3-5x faster than those, whose generic
N-dimensional code pays per tap for index and boundary handling.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Pole of the cubic B-spline interpolation filter.
POLE = float(np.sqrt(3.0) - 2.0)
#: Terms of the periodic initial sums (``|POLE|**24 < 1e-13``).
INIT_TERMS = 24

_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False}


@njit("void(f8, f8[::1])", **_OPTIONS)
def _weights(t: float, w: np.ndarray) -> None:  # pragma: no cover - compiled
    """Cubic B-spline weights, times 6, of the 4 points around fractional position ``t`` in [0, 1)."""
    u = 1.0 - t
    w[0] = u * u * u
    w[1] = 4.0 - 6.0 * t * t + 3.0 * t * t * t
    w[2] = 4.0 - 6.0 * u * u + 3.0 * u * u * u
    w[3] = t * t * t


@njit("void(f8[:, ::1])", **_OPTIONS)
def _filter_leading(c: np.ndarray) -> None:  # pragma: no cover - compiled
    """Prefilter a C-contiguous ``(n, m)`` array along axis 0 in place, vectorized over axis 1."""
    n, m = c.shape
    k = min(INIT_TERMS, n - 1)
    norm = 1.0 / (1.0 - POLE**n)
    first = c[0].copy()
    power = POLE
    for t in range(k):
        for q in range(m):
            first[q] += power * c[n - 1 - t, q]
        power *= POLE
    for q in range(m):
        c[0, q] = norm * first[q]
    for i in range(1, n):
        for q in range(m):
            c[i, q] += POLE * c[i - 1, q]
    last = c[n - 1].copy()
    power = POLE
    for t in range(k):
        for q in range(m):
            last[q] += power * c[t, q]
        power *= POLE
    for q in range(m):
        c[n - 1, q] = -POLE * norm * last[q]
    for i in range(n - 2, -1, -1):
        for q in range(m):
            c[i, q] = POLE * (c[i + 1, q] - c[i, q])


@njit("void(f8[::1])", **_OPTIONS)
def _filter_line(line: np.ndarray) -> None:  # pragma: no cover - compiled
    """Prefilter one contiguous periodic line in place."""
    n = line.size
    k = min(INIT_TERMS, n - 1)
    norm = 1.0 / (1.0 - POLE**n)
    first = line[0]
    power = POLE
    for t in range(k):
        first += power * line[n - 1 - t]
        power *= POLE
    line[0] = norm * first
    for i in range(1, n):
        line[i] += POLE * line[i - 1]
    last = line[n - 1]
    power = POLE
    for t in range(k):
        last += power * line[t]
        power *= POLE
    line[n - 1] = -POLE * norm * last
    for i in range(n - 2, -1, -1):
        line[i] = POLE * (line[i + 1] - line[i])


@njit("void(f8[:, :, ::1])", **_OPTIONS)
def prefilter(c: np.ndarray) -> None:  # pragma: no cover - compiled
    """Turn a C-contiguous periodic grid ``(nx, ny, nz)`` into its cubic B-spline coefficients
    divided by 6**3, in place (Unser's causal/anticausal recursion along each axis)."""
    nx, ny, nz = c.shape
    _filter_leading(c.reshape(nx, ny * nz))
    for p in range(nx):
        _filter_leading(c[p])
    for p in range(nx):
        for q in range(ny):
            _filter_line(c[p, q])


@njit("f8[:, :, ::1](f8[:, :, ::1], f8[:, ::1], f8[::1], i8)", **_OPTIONS)
def sample_affine(coefficients: np.ndarray, matrix: np.ndarray, offset: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - compiled
    """Evaluate the periodic spline of :func:`prefilter`'s ``coefficients`` at the grid indices
    ``matrix @ (i, j, k) + offset`` for ``i, j, k < n`` -> ``(n, n, n)``."""
    nx, ny, nz = coefficients.shape
    out = np.empty((n, n, n))
    wx = np.empty(4)
    wy = np.empty(4)
    wz = np.empty(4)
    xs = np.empty(4, np.int64)
    ys = np.empty(4, np.int64)
    zs = np.empty(4, np.int64)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                x = matrix[0, 0] * i + matrix[0, 1] * j + matrix[0, 2] * k + offset[0]
                y = matrix[1, 0] * i + matrix[1, 1] * j + matrix[1, 2] * k + offset[1]
                z = matrix[2, 0] * i + matrix[2, 1] * j + matrix[2, 2] * k + offset[2]
                fx = np.floor(x)
                fy = np.floor(y)
                fz = np.floor(z)
                _weights(x - fx, wx)
                _weights(y - fy, wy)
                _weights(z - fz, wz)
                ix = int(fx) - 1
                iy = int(fy) - 1
                iz = int(fz) - 1
                for a in range(4):
                    xs[a] = (ix + a) % nx
                    ys[a] = (iy + a) % ny
                    zs[a] = (iz + a) % nz
                total = 0.0
                for a in range(4):
                    for b in range(4):
                        row = coefficients[xs[a], ys[b]]
                        inner = wz[0] * row[zs[0]] + wz[1] * row[zs[1]] + wz[2] * row[zs[2]] + wz[3] * row[zs[3]]
                        total += wx[a] * wy[b] * inner
                out[i, j, k] = total
    return out
