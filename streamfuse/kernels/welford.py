"""Running z-scores (Welford's mean and variance per entry) for the feature normalisers.

:func:`welford_indexed` serves a dict of named features mapped to slots of growing arrays
(:class:`streamfuse.features.OnlineNormalizer`), :func:`welford_dense` a fixed-layout vector
(:class:`streamfuse.fusion.early.ArrayNormalizer`). Both use the operations of the code they
replaced, in its order, so the statistics are bit-identical. Plain reference:
``tests.golden.features.NaiveOnlineNormalizer`` and ``NaiveArrayNormalizer``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def welford_indexed(
    slots: np.ndarray,
    x: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    learn: bool,
    need: int,
    clip: float,
    eps: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """With ``learn``: add the finite ``x[j]`` to the statistics of slot ``slots[j]``.
    Otherwise: ``out[j]`` = the clipped z-score of ``x[j]``, 0.0 for a non-finite value, a slot
    seen fewer than ``need`` times, or a standard deviation below ``eps``."""
    for j in range(x.shape[0]):
        v = x[j]
        i = slots[j]
        if learn:
            if not math.isfinite(v):
                continue
            n = count[i] + 1
            mu = mean[i]
            d = v - mu
            mu += d / n
            count[i] = n
            mean[i] = mu
            m2[i] += d * (v - mu)
            continue
        n = count[i]
        if n < need or not math.isfinite(v):
            out[j] = 0.0
            continue
        sd = math.sqrt(m2[i] / (n - 1))
        if sd < eps:
            out[j] = 0.0
            continue
        z = (v - mean[i]) / sd
        z = z if z < clip else clip
        out[j] = z if z > -clip else -clip


@njit(cache=True, nogil=True, error_model="numpy")
def welford_indexed_learn_transform(
    slots: np.ndarray,
    x: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    need: int,
    clip: float,
    eps: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """:func:`welford_indexed` learning ``x``, then again for its z-scores: one call."""
    welford_indexed(slots, x, count, mean, m2, True, need, clip, eps, out)
    welford_indexed(slots, x, count, mean, m2, False, need, clip, eps, out)


@njit(cache=True, nogil=True, error_model="numpy")
def welford_dense(
    x: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    need: float,
    clip: float,
    eps: float,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Learn the finite entries of ``x``, then write their clipped z-scores to ``out`` (NaN
    where ``x`` is not finite; 0.0 while an entry has fewer than ``need`` values or a standard
    deviation below ``eps``). Returns how many entries of ``out`` are finite."""
    n_ok = 0
    for j in range(x.shape[0]):
        v = x[j]
        if not math.isfinite(v):
            out[j] = np.nan
            continue
        n = count[j] + 1.0
        d = v - mean[j]
        mu = mean[j] + d / n
        count[j] = n
        mean[j] = mu
        m2[j] = m2[j] + d * (v - mu)
        sd = math.sqrt(m2[j] / (n - 1.0))
        z = (v - mu) / sd
        z = max(z, -clip)
        z = min(z, clip)
        out[j] = z if (n >= need and sd >= eps) else 0.0
        n_ok += 1
    return n_ok
