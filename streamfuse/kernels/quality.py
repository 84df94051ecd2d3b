"""Kernels of the signal-quality indices (:mod:`streamfuse.features.quality`): run lengths of
flat and clipped samples, and a zero-phase band-pass for the beat detector.

Plain references: ``tests/naive_quality.py`` (``naive_flat``, ``naive_clipped``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .filters import biquads_one


@njit(cache=True, nogil=True)
def flat_count(
    v: np.ndarray, valid: np.ndarray, min_run: int, tol: float
) -> int:  # pragma: no cover - compiled
    """Valid samples of ``v`` inside runs of at least ``min_run`` consecutive valid samples
    whose successive differences are all ``<= tol``."""
    n = v.shape[0]
    total = 0
    i = 0
    while i < n:
        if not valid[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and valid[j + 1] and abs(v[j + 1] - v[j]) <= tol:
            j += 1
        if j - i + 1 >= min_run:
            total += j - i + 1
        i = j + 1
    return total


@njit(cache=True, nogil=True)
def held_count(
    x: np.ndarray, valid: np.ndarray, min_run: int, rel_tol: float
) -> int:  # pragma: no cover - compiled
    """Over every column of ``x``: valid samples within ``rel_tol`` of the column's valid range
    from its maximum (or minimum), inside runs of at least ``min_run`` such valid samples."""
    n, ch = x.shape
    total = 0
    for c in range(ch):
        hi = -np.inf
        lo = np.inf
        for i in range(n):
            if valid[i]:
                hi = max(hi, x[i, c])
                lo = min(lo, x[i, c])
        span = hi - lo
        if not span > 0:
            continue
        top, bottom = hi - rel_tol * span, lo + rel_tol * span
        for side in range(2):
            run = 0
            for i in range(n + 1):
                ok = False
                if i < n and valid[i]:
                    ok = x[i, c] >= top if side == 0 else x[i, c] <= bottom
                if ok:
                    run += 1
                else:
                    if run >= min_run:
                        total += run
                    run = 0
    return total


@njit(cache=True, nogil=True)
def zero_phase(sos: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``x`` through the biquads forward, then backward (zero phase, zero initial state; the
    caller removes the signal's level first so the start-up transient stays small)."""
    n = x.shape[0]
    zi = np.zeros((sos.shape[0], 2))
    for i in range(n):
        out[i] = biquads_one(sos, zi, x[i])
    zi[:] = 0.0
    for i in range(n - 1, -1, -1):
        out[i] = biquads_one(sos, zi, out[i])
