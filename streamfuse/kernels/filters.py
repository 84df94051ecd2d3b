"""Streaming filter kernels with carried state: biquad cascades, gap holding, step peaks, and a
bounded history that keeps the last ``n`` samples.

Every function here works on preallocated arrays and carries its state in arrays the caller
owns, so a stream cut into chunks of any size gives the same result as one call over the whole
stream. Plain references: ``scipy.signal.sosfilt`` and ``tests.naive`` (``naive_steps``,
``naive_hold``, ``naive_tail``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def biquads_one(sos: np.ndarray, zi: np.ndarray, v: float) -> float:  # pragma: no cover
    """One sample through cascaded biquads (transposed direct form II); ``zi`` updated."""
    for s in range(sos.shape[0]):
        y = sos[s, 0] * v + zi[s, 0]
        zi[s, 0] = sos[s, 1] * v - sos[s, 4] * y + zi[s, 1]
        zi[s, 1] = sos[s, 2] * v - sos[s, 5] * y
        v = y
    return v


@njit(cache=True, nogil=True)
def sosfilt_kernel(
    sos: np.ndarray, zi: np.ndarray, x: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Cascaded biquads (transposed direct form II, as ``scipy.signal.sosfilt``); ``zi`` updated.

    The operations are scipy's own, in its order, so the output is bit-identical to
    ``scipy.signal.sosfilt(sos, x, zi=zi)``.
    """
    if sos.shape[0] != 2:
        for i in range(x.shape[0]):
            out[i] = biquads_one(sos, zi, x[i])
        return
    # two sections (an order-2 band-pass): the state in registers across the loop, not in
    # memory (a store and a load in every step of the recursion), same operations
    a, b = sos[0], sos[1]
    a0, a1, b0, b1 = zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1]
    for i in range(x.shape[0]):
        v = x[i]
        y = a[0] * v + a0
        a0 = a[1] * v - a[4] * y + a1
        a1 = a[2] * v - a[5] * y
        w = b[0] * y + b0
        b0 = b[1] * y - b[4] * w + b1
        b1 = b[2] * y - b[5] * w
        out[i] = w
    zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1] = a0, a1, b0, b1


@njit(cache=True, nogil=True)
def hold_kernel(
    x: np.ndarray, valid: np.ndarray, last: float, out: np.ndarray
) -> float:  # pragma: no cover - compiled
    """``out[i]``: the latest valid ``x`` at or before ``i`` (``last`` before the first one).

    Returns the value to carry into the next chunk.
    """
    cur = last
    for i in range(x.shape[0]):
        if valid[i]:
            cur = x[i]
        out[i] = cur
    return cur


@njit(cache=True, nogil=True)
def step_one(
    y: float, valid: bool, state: np.ndarray, min_amp: float, min_gap: int
) -> int:  # pragma: no cover - compiled
    """One sample of :func:`step_kernel`: the index of the step it confirms, or -1."""
    n = int(state[0])
    p1 = state[1]
    p2 = state[2]
    found = -1
    if n >= 2 and valid and p1 > p2 and p1 >= y:
        thr = max(min_amp, 0.5 * state[4])
        if p1 > thr and (state[3] < 0 or (n - 1) - state[3] >= min_gap):
            found = n - 1
            state[3] = n - 1
            state[4] = 0.8 * state[4] + 0.2 * p1 if state[4] > 0 else p1
    state[2] = p1
    state[1] = y if valid else 0.0
    state[0] = n + 1
    return found


@njit(cache=True, nogil=True)
def step_kernel(
    bp: np.ndarray,
    valid: np.ndarray,
    state: np.ndarray,
    min_amp: float,
    min_gap: int,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Steps as local maxima of the band-passed magnitude above an adaptive threshold.

    ``state`` = [samples seen, previous value, value before it, last step index, peak level].
    A peak at sample ``n - 1`` counts when it exceeds ``max(min_amp, 0.5 * level)`` (``level``
    an exponential average of accepted peaks) and comes ``min_gap`` samples after the last
    step. Writes step indices (since the start) to ``out``; returns how many.
    """
    n_out = 0
    for i in range(bp.shape[0]):
        idx = step_one(bp[i], valid[i], state, min_amp, min_gap)
        if idx >= 0:
            out[n_out] = idx
            n_out += 1
    return n_out


@njit(cache=True, nogil=True)
def push_rows(
    buf: np.ndarray,
    buf_valid: np.ndarray,
    filled: int,
    x: np.ndarray,
    valid: np.ndarray,
    start: int,
    gap: int,
) -> int:  # pragma: no cover - compiled
    """Append ``gap`` invalid zero rows, then rows ``x[start:]`` (validity ``valid[start:]``),
    to a history ``buf`` (``[cap, ch]``) filled to ``filled``; return the new fill.

    Only the newest ``cap`` rows are kept: ``buf[:fill]`` ends up holding the last rows of
    ``concatenate([buf[:filled], zeros((gap, ch)), x[start:]])`` (likewise for ``buf_valid``).
    """
    cap = buf.shape[0]
    ch = buf.shape[1]
    total = gap + x.shape[0] - start
    keep = min(filled, cap - total) if total < cap else 0
    shift = filled - keep
    if shift > 0:
        for i in range(keep):
            for c in range(ch):
                buf[i, c] = buf[i + shift, c]
            buf_valid[i] = buf_valid[i + shift]
    skip = total - cap if total > cap else 0
    for t in range(skip, total):
        p = keep + t - skip
        if t < gap:
            for c in range(ch):
                buf[p, c] = 0.0
            buf_valid[p] = False
        else:
            j = start + t - gap
            for c in range(ch):
                buf[p, c] = x[j, c]
            buf_valid[p] = valid[j]
    return keep + total - skip


@njit(cache=True, nogil=True)
def push_valid(buf: np.ndarray, filled: int, valid: np.ndarray) -> int:  # pragma: no cover
    """Append ``valid`` to a boolean history filled to ``filled``; keep the newest
    ``len(buf)``; return the new fill."""
    cap = buf.shape[0]
    total = valid.shape[0]
    keep = min(filled, cap - total) if total < cap else 0
    shift = filled - keep
    if shift > 0:
        for i in range(keep):
            buf[i] = buf[i + shift]
    skip = total - cap if total > cap else 0
    for t in range(skip, total):
        buf[keep + t - skip] = valid[t]
    return keep + total - skip
