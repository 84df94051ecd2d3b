"""Early-fusion channel statistics of a masked window: log-variance envelope, line length,
zero-crossing rate and Hjorth mobility per column (see :mod:`streamfuse.fusion.early`).

Sums follow NumPy's order for the expressions this replaced (``sum(axis=0)`` of a C-ordered
matrix: row by row, or pairwise for a single column; ``add.reduceat``: first row, then the
rest pairwise). Golden master: ``tests.golden.features.naive_early_arrays``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .moments import pairwise_sum

#: floor added before taking logs (variance units of the raw signal)
EPS = 1e-12


@njit(cache=True, nogil=True)
def _segment_sums(a: np.ndarray, lo: int, hi: int, out: np.ndarray) -> None:  # pragma: no cover
    """Per column of ``a`` (``[k, ch]``): ``a[lo] + pairwise(a[lo + 1 : hi])``, the order of
    ``numpy.add.reduceat`` along axis 0. Up to 128 summed values (one NumPy block) all columns
    advance together, row by row, in eight partial sums each."""
    ch = a.shape[1]
    n = hi - lo - 1
    if n > 128:
        for c in range(ch):
            out[c] = a[lo, c] + pairwise_sum(a[:, c], lo + 1, n)
        return
    if n < 8:
        for c in range(ch):
            res = 0.0
            for i in range(lo + 1, hi):
                res += a[i, c]
            out[c] = a[lo, c] + res
        return
    r = np.empty((8, ch))
    for u in range(8):
        for c in range(ch):
            r[u, c] = a[lo + 1 + u, c]
    stop = n - n % 8
    j = 8
    while j < stop:
        for u in range(8):
            row = lo + 1 + j + u
            for c in range(ch):
                r[u, c] += a[row, c]
        j += 8
    for c in range(ch):
        lo4 = (r[0, c] + r[1, c]) + (r[2, c] + r[3, c])
        res = lo4 + ((r[4, c] + r[5, c]) + (r[6, c] + r[7, c]))
        for t in range(stop, n):
            res += a[lo + 1 + t, c]
        out[c] = a[lo, c] + res


@njit(cache=True, nogil=True, error_model="numpy")
def early_stats(
    x: np.ndarray, valid: np.ndarray, edges: np.ndarray, per: int, out: np.ndarray
) -> int:  # pragma: no cover - compiled
    """Statistics of every column of ``x`` (``[k, ch]``, ``valid`` ``bool[k, ch]``) into
    ``out[c * per : (c + 1) * per]``: log10 variance of each segment starting at ``edges``,
    then log10 line length, zero-crossing rate, log10 mobility. NaN where undefined (a segment
    with fewer than two valid samples; no valid pair or fewer than two valid samples).
    Returns how many entries of ``out`` are finite.

    Column sums run row by row with one accumulator per column (NumPy's order for a C-ordered
    matrix, and independent chains the CPU overlaps); a single column, which NumPy sums as one
    contiguous vector, is summed pairwise instead. The centred values and the pair statistics
    share one pass and segments count their valid samples row by row (34 -> 27 us for
    512 x 12).
    """
    k = x.shape[0]
    ch = x.shape[1]
    segs = edges.shape[0]
    single = ch == 1
    f = np.empty((k, ch))
    n = np.zeros(ch)
    total = np.zeros(ch)
    ns = np.zeros((segs, ch))
    for i in range(k):
        for c in range(ch):
            w = 1.0 if valid[i, c] else 0.0
            f[i, c] = w
            n[c] += w
            total[c] += np.float64(x[i, c]) * w
    if single:
        col = np.empty(k)
        for i in range(k):
            col[i] = np.float64(x[i, 0]) * f[i, 0]
        total[0] = pairwise_sum(col, 0, k)
    mean = np.empty(ch)
    for c in range(ch):
        mean[c] = total[c] / n[c] if n[c] > 0 else 0.0
    xc = np.empty((k, ch))
    sq = np.empty((k, ch))
    var_x = np.zeros(ch)
    n_p = np.zeros(ch)
    zc = np.zeros(ch)
    s_abs = np.zeros(ch)
    s_dd = np.zeros(ch)
    for c in range(ch if k > 0 else 0):
        v = (np.float64(x[0, c]) - mean[c]) * f[0, c]
        xc[0, c] = v
        sq[0, c] = v * v
        var_x[c] += v * v
    for i in range(1, k):
        for c in range(ch):
            xi = np.float64(x[i, c])
            fi = f[i, c]
            v = (xi - mean[c]) * fi
            xc[i, c] = v
            sq[i, c] = v * v
            var_x[c] += v * v
            pf = f[i - 1, c] * fi
            d = (xi - np.float64(x[i - 1, c])) * pf
            s_abs[c] += abs(d)
            s_dd[c] += d * d
            n_p[c] += pf
            zc[c] += pf if v * xc[i - 1, c] < 0 else 0.0
    if single:
        col = np.empty(k)
        for i in range(k):
            col[i] = sq[i, 0]
        var_x[0] = pairwise_sum(col, 0, k)
        if k > 1:
            d_abs = np.empty(k - 1)
            for i in range(k - 1):
                d = (np.float64(x[i + 1, 0]) - np.float64(x[i, 0])) * (f[i, 0] * f[i + 1, 0])
                d_abs[i] = abs(d)
                col[i] = d * d
            s_abs[0] = pairwise_sum(d_abs, 0, k - 1)
            s_dd[0] = pairwise_sum(col, 0, k - 1)
    for j in range(ch * per):
        out[j] = np.nan
    s1 = np.empty(ch)
    s2 = np.empty(ch)
    for s_j in range(segs):
        lo = edges[s_j]
        hi = edges[s_j + 1] if s_j + 1 < segs else k
        _segment_sums(xc, lo, hi, s1)
        _segment_sums(sq, lo, hi, s2)
        for i in range(lo, hi):  # row by row: counts, so any order gives the same figure
            for c in range(ch):
                ns[s_j, c] += f[i, c]
        for c in range(ch):
            n_s = ns[s_j, c]
            if n_s >= 2:
                m1 = s1[c] / n_s
                var = s2[c] / n_s - m1 * m1
                if var < 0.0:
                    var = 0.0
                out[c * per + s_j] = math.log10(var + EPS)
    n_ok = 0
    for c in range(ch):
        base = c * per
        if n_p[c] >= 1 and n[c] >= 2:
            out[base + per - 3] = math.log10(s_abs[c] / n_p[c] + EPS)
            out[base + per - 2] = zc[c] / n_p[c]
            vx = var_x[c] / n[c]
            vd = s_dd[c] / n_p[c]
            out[base + per - 1] = math.log10(math.sqrt(vd / (vx + EPS)) + EPS)
        for j in range(per):
            if math.isfinite(out[base + j]):
                n_ok += 1
    return n_ok
