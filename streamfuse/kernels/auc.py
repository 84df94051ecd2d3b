"""The exact, rank-based ROC AUC kernel of :mod:`streamfuse.learn.metrics` (Mann-Whitney
statistic with mid-ranks for ties)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def auc_kernel(scores, labels, ranks):
    """Exact ROC AUC of ``scores`` for boolean ``labels`` (mid-ranks for ties); NaN when one
    class is absent. ``ranks`` is a preallocated float64 work array of the same length."""
    n = scores.shape[0]
    n_pos = 0
    for i in range(n):
        if labels[i]:
            n_pos += 1
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan
    order = np.argsort(scores, kind="mergesort")
    i = 0
    while i < n:
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = 0.5 * (i + j) + 1.0
        for t in range(i, j + 1):
            ranks[order[t]] = mid
        i = j + 1
    r_pos = 0.0
    for i in range(n):
        if labels[i]:
            r_pos += ranks[i]
    return (r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
