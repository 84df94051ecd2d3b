"""Samples out of a binary frame: copy the little-endian float32 payload into an owned array
and count the values that are NaN or infinite, in one pass (see :mod:`streamfuse.codec`).

Plain reference: ``np.isfinite(src).all()`` and ``src.astype(np.float32)``
(``tests/test_codec.py`` checks both outcomes).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def copy_count_nonfinite(src: np.ndarray, dst: np.ndarray) -> int:  # pragma: no cover
    """``dst[:] = src`` (1-D float32, ``src`` may be a read-only view of the payload); returns
    how many values are not finite."""
    bad = 0
    for i in range(src.shape[0]):
        v = src[i]
        dst[i] = v
        if not math.isfinite(v):
            bad += 1
    return bad
