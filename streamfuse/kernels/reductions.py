"""NumPy's reductions repeated bit for bit, for the signal-quality kernels
(:mod:`streamfuse.kernels.quality`): the sum of a contiguous float64 run (:func:`pairwise_sum`,
:func:`np_sum`), a row's sum of a column-selected copy (:func:`row_sum`), the mean down the
rows (:func:`column_means`) and the median (:func:`median_of`, by quickselect).

NumPy sums a contiguous run pairwise (what ``x.sum()`` and ``x.sum(axis=-1)`` use on contiguous
rows) and a ``[k, ch]`` block down its rows (``x.sum(axis=0)`` with ch > 1) as a plain running
sum. :func:`pairwise_sum` is :func:`streamfuse.kernels.moments.pairwise_sum` but for the sign of
a short run's zero (from ``-0.0``, as NumPy's pairwise routine), and :func:`np_sum` adds the
reduction's initial ``0.0``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .moments import pairwise_sum as moments_pairwise_sum


@njit(cache=True, nogil=True)
def pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """``a[lo:lo+n].sum()`` exactly as NumPy adds a contiguous float64 run, without the
    reduction's initial ``0.0 +``: :func:`streamfuse.kernels.moments.pairwise_sum` (the same
    order), except that a run shorter than eight is summed from ``-0.0``, as NumPy's pairwise
    routine does (it decides the sign of a sum of zeros)."""
    if n < 8:
        res = -0.0
        for i in range(n):
            res += a[lo + i]
        return res
    return moments_pairwise_sum(a, lo, n)


@njit(cache=True, nogil=True)
def np_sum(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """NumPy's ``a[lo:lo+n].sum()`` of a contiguous float64 run (``0.0 +`` the pairwise sum)."""
    return 0.0 + pairwise_sum(a, lo, n)


@njit(cache=True, nogil=True)
def column_means(v: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``v.mean(axis=0)`` of a C-contiguous float64 ``[k, ch]`` (k > 0) in NumPy's order: a
    running sum down the rows, pairwise when there is one column."""
    k, ch = v.shape
    out = np.empty(ch)
    if ch == 1:
        out[0] = np_sum(v.ravel(), 0, k) / k
        return out
    for c in range(ch):
        out[c] = 0.0
    for i in range(k):
        for c in range(ch):
            out[c] += v[i, c]
    for c in range(ch):
        out[c] = out[c] / k
    return out


@njit(cache=True, nogil=True)
def _select(w: np.ndarray, k: int) -> None:  # pragma: no cover - compiled
    """Reorder ``w`` so that ``w[k]`` is its k-th smallest value, nothing larger before it and
    nothing smaller after it (quickselect, median-of-three pivots, Hoare partitions)."""
    lo = 0
    hi = w.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        a, b, c = w[lo], w[mid], w[hi]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
        if a > b:
            b = a
        i, j = lo, hi
        while i <= j:
            while w[i] < b:
                i += 1
            while w[j] > b:
                j -= 1
            if i <= j:
                w[i], w[j] = w[j], w[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True, nogil=True)
def median_of(values: np.ndarray) -> float:  # pragma: no cover - compiled
    """``np.median`` of finite values (the middle value, or NumPy's ``(a + b) / 2`` of the
    middle two); ``values`` is reordered. Numba's own ``np.median`` took ~5 us on a 512-sample
    EEG channel (its middle-element pivot suits smooth signals badly); this ~1 us. The value
    is the same order statistic; of a tie between ``0.0`` and ``-0.0`` either may come back,
    as from NumPy's introselect."""
    n = values.shape[0]
    h = n >> 1
    _select(values, h)
    if n & 1:
        return values[h]
    below = values[0]
    for i in range(1, h):
        if values[i] > below:
            below = values[i]
    return (below + values[h]) / 2


@njit(cache=True, nogil=True)
def row_sum(a: np.ndarray, lo: int, n: int, rows: int) -> float:  # pragma: no cover
    """One row's sum of a column-selected ``[rows, n]`` copy, as NumPy adds it: pairwise for a
    single row, else a running sum from ``0.0``."""
    if rows == 1:
        return np_sum(a, lo, n)
    res = 0.0
    for i in range(lo, lo + n):
        res += a[i]
    return res
