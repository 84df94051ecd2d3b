"""Whether an array holds only finite values, without allocating (the check of every
in-process chunk, :mod:`streamfuse.intake`).

``np.isfinite(x).all()`` allocates a boolean array and walks it twice: 2.4 us for a 50 x 19
float32 chunk against 0.64 us here (``timeit``, minimum of 7, same process, a busy machine,
2026-12-06); the whole in-process chunk check went from 4.4 to 2.3 us with it."""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def all_finite(x):
    """True when no value of ``x`` (any shape) is NaN or infinite; stops at the first."""
    for v in x.flat:
        if not math.isfinite(v):
            return False
    return True
