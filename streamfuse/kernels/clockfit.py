"""Minimum-delay line fit: the lower envelope of (device time, apparent offset) points.

Given points ``(x_i, y_i)`` with ``y_i = arrival_i - device_time_i``, network delay only ever
adds to ``y``. The fitted line ``y = a + b x`` is the solution of the linear programme

    maximise  a + b * mean(x)   subject to   a + b * x_i <= y_i  for all i,

i.e. the line under every point that is closest to them on average (Moon, Skelly & Towsley,
"Estimation and removal of clock skew from network delay measurements", IEEE INFOCOM 1999).
Its solution is the edge of the lower convex hull that spans ``mean(x)``, found here with
Andrew's monotone chain in one pass over the points (already in ``x`` order).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def envelope_fit(bx, by, bid, newest, xs, ys, hull):  # pragma: no cover - compiled
    """Fit the lower envelope of the binned minima.

    ``bx``, ``by``, ``bid`` form a ring of bins (``bid[s]`` is the bin number held by slot ``s``);
    bins ``newest - len(bid) + 1 .. newest`` are gathered in order into the scratch arrays
    ``xs``, ``ys``, ``hull`` (all of ``len(bid)``). Returns ``(a, b, n, span)``: the line, the
    number of bins used and their ``x`` span. With one bin ``b`` is 0 and ``a`` its ``y``.
    """
    nb = bid.shape[0]
    n = 0
    for k in range(newest - nb + 1, newest + 1):
        s = k % nb
        if bid[s] == k:
            xs[n] = bx[s]
            ys[n] = by[s]
            n += 1
    if n == 0:
        return np.nan, 0.0, 0, 0.0
    if n == 1:
        return ys[0], 0.0, 1, 0.0
    h = 0
    xm = 0.0
    for i in range(n):
        xm += xs[i]
        while h >= 2:
            o = hull[h - 2]
            m = hull[h - 1]
            cross = (xs[m] - xs[o]) * (ys[i] - ys[o]) - (ys[m] - ys[o]) * (xs[i] - xs[o])
            if cross <= 0.0:
                h -= 1
            else:
                break
        hull[h] = i
        h += 1
    xm /= n
    span = xs[n - 1] - xs[0]
    for e in range(h - 1):
        i0 = hull[e]
        i1 = hull[e + 1]
        if xs[i1] >= xm or e == h - 2:
            dx = xs[i1] - xs[i0]
            if dx <= 0.0:
                return ys[i0], 0.0, n, span
            b = (ys[i1] - ys[i0]) / dx
            return ys[i0] - b * xs[i0], b, n, span
    return ys[hull[0]], 0.0, n, span
