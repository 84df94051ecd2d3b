"""Sums and moments in NumPy's own summation order, for kernels that replace NumPy code.

NumPy sums a contiguous float64 vector pairwise (blocks of at most 128 values, each summed in
eight interleaved partial sums), and sums along the outer axis of a C-ordered 2-D array row by
row. :func:`pairwise_sum` repeats the first order exactly, so a kernel computing
``a.mean()``, ``a.var()`` or ``a.std(ddof=1)`` of the same values gets the same bits as NumPy
(plain-loop reference: ``tests.naive.naive_pairwise_sum``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_BLOCK = 128  # NumPy's PW_BLOCKSIZE


@njit(cache=True, nogil=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """NumPy's sum of at most 128 values: eight interleaved partial sums, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """Sum of ``a[lo : lo + n]`` in the order ``numpy.add.reduce`` uses for a contiguous vector.

    Above 128 values NumPy splits the range in two (the first half a multiple of 8 long) and
    adds the two halves' sums; that recursion runs here on an explicit stack.
    """
    if n <= _BLOCK:
        return _block_sum(a, lo, n)
    depth = 64  # halving from 2**63 values down to 128 takes fewer levels
    f_lo = np.empty(depth, dtype=np.int64)
    f_n = np.empty(depth, dtype=np.int64)
    f_phase = np.zeros(depth, dtype=np.int64)
    vals = np.empty(depth + 1)
    sp = 1
    nv = 0
    f_lo[0] = lo
    f_n[0] = n
    while sp > 0:
        t = sp - 1
        m = f_n[t]
        if m <= _BLOCK:
            vals[nv] = _block_sum(a, f_lo[t], m)
            nv += 1
            sp -= 1
            continue
        half = m // 2
        half -= half % 8
        if f_phase[t] == 0:
            f_phase[t] = 1
            f_lo[sp] = f_lo[t]
            f_n[sp] = half
            f_phase[sp] = 0
            sp += 1
        elif f_phase[t] == 1:
            f_phase[t] = 2
            f_lo[sp] = f_lo[t] + half
            f_n[sp] = m - half
            f_phase[sp] = 0
            sp += 1
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            sp -= 1
    return vals[0]


@njit(cache=True, nogil=True)
def var_of(a: np.ndarray, n: int, ddof: int, scratch: np.ndarray) -> float:  # pragma: no cover
    """``a[:n].var(ddof=ddof)`` the way NumPy computes it (two passes); uses ``scratch[:n]``."""
    mean = pairwise_sum(a, 0, n) / n
    for i in range(n):
        d = a[i] - mean
        scratch[i] = d * d
    return pairwise_sum(scratch, 0, n) / (n - ddof)


@njit(cache=True, nogil=True)
def kurtosis_of(a: np.ndarray, n: int, scratch: np.ndarray) -> float:  # pragma: no cover
    """Pearson kurtosis of ``a[:n]`` (3 for a Gaussian); 0.0 below 4 values or without spread.

    ``scratch`` needs ``2 * n`` values.
    """
    if n < 4:
        return 0.0
    mean = pairwise_sum(a, 0, n) / n
    for i in range(n):
        c = a[i] - mean
        scratch[i] = c * c
        scratch[n + i] = c**4.0
    v = pairwise_sum(scratch, 0, n) / n
    if v <= 1e-20:
        return 0.0
    return (pairwise_sum(scratch, n, n) / n) / (v * v)


@njit(cache=True, nogil=True)
def col_sums(
    a: np.ndarray, lo: int, hi: int, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[c]`` = the sum of ``a[lo:hi, c]`` row by row (NumPy's order for ``sum(axis=0)``
    of a C-ordered 2-D array), four columns at a time in registers: four independent running
    sums instead of one sum per column after another, or sums kept in memory."""
    ch = a.shape[1]
    c = 0
    while c + 4 <= ch:
        s0 = s1 = s2 = s3 = 0.0
        for i in range(lo, hi):
            s0 += a[i, c]
            s1 += a[i, c + 1]
            s2 += a[i, c + 2]
            s3 += a[i, c + 3]
        out[c] = s0
        out[c + 1] = s1
        out[c + 2] = s2
        out[c + 3] = s3
        c += 4
    if ch - c == 3:
        s0 = s1 = s2 = 0.0
        for i in range(lo, hi):
            s0 += a[i, c]
            s1 += a[i, c + 1]
            s2 += a[i, c + 2]
        out[c] = s0
        out[c + 1] = s1
        out[c + 2] = s2
    elif ch - c == 2:
        s0 = s1 = 0.0
        for i in range(lo, hi):
            s0 += a[i, c]
            s1 += a[i, c + 1]
        out[c] = s0
        out[c + 1] = s1
    elif ch - c == 1:
        s0 = 0.0
        for i in range(lo, hi):
            s0 += a[i, c]
        out[c] = s0
