"""NumPy's reductions repeated bit for bit, for the signal-quality kernels
(:mod:`streamfuse.kernels.quality`): the sum of a contiguous float64 run (:func:`pairwise_sum`,
:func:`np_sum`), a row's sum of a column-selected copy (:func:`row_sum`), the mean down the
rows (:func:`column_means`) and the median (:func:`median_of`, by quickselect).

NumPy sums a contiguous run pairwise (what ``x.sum()`` and ``x.sum(axis=-1)`` use on contiguous
rows) and a ``[k, ch]`` block down its rows (``x.sum(axis=0)`` with ch > 1) as a plain running
sum. :func:`streamfuse.kernels.moments.pairwise_sum` adds in the same order but starts a short
run from ``0.0``; :func:`pairwise_sum` here starts it from ``-0.0``, as NumPy's pairwise routine
does, and :func:`np_sum` adds the reduction's initial ``0.0``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """NumPy's pairwise summation of a run of at most 128: eight accumulators, or a running
    sum from ``-0.0`` below eight."""
    if n < 8:
        res = -0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    full = n - n % 8
    for i in range(lo + 8, lo + full, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(lo + full, lo + n):
        res += a[i]
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """``a[lo:lo+n].sum()`` exactly as NumPy adds a contiguous float64 run (halves rounded
    down to a multiple of 8 until at most 128, then ``_block_sum``; left + right), without
    the reduction's initial ``0.0 +``. The halving runs on an explicit stack: a recursive
    kernel with ``cache=True`` crashed when loaded from the cache (numba 0.68)."""
    if n <= 128:
        return _block_sum(a, lo, n)
    s_lo = np.empty(64, dtype=np.int64)
    s_n = np.empty(64, dtype=np.int64)
    s_stage = np.empty(64, dtype=np.int64)  # 1: left half pending, 2: right half pending
    s_left = np.empty(64)
    s_lo[0] = lo
    s_n[0] = n
    s_stage[0] = 0
    sp = 1
    while True:
        t = sp - 1
        nn = s_n[t]
        if nn > 128:
            h = nn // 2
            h -= h % 8
            s_stage[t] = 1
            s_lo[sp] = s_lo[t]
            s_n[sp] = h
            s_stage[sp] = 0
            sp += 1
            continue
        val = _block_sum(a, s_lo[t], nn)
        sp -= 1
        while True:
            if sp == 0:
                return val
            p = sp - 1
            if s_stage[p] == 1:
                s_left[p] = val
                s_stage[p] = 2
                h = s_n[p] // 2
                h -= h % 8
                s_lo[sp] = s_lo[p] + h
                s_n[sp] = s_n[p] - h
                s_stage[sp] = 0
                sp += 1
                break
            val = s_left[p] + val
            sp -= 1


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
