"""The exact, rank-based ROC AUC kernel of :mod:`streamfuse.learn.metrics` (Mann-Whitney
statistic with mid-ranks for ties)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def auc_kernel(scores, labels, ranks):
    """Exact ROC AUC of ``scores`` for boolean ``labels`` (mid-ranks for ties); NaN when one
    class is absent. ``ranks`` is a preallocated float64 work array of the same length.

    The Mann-Whitney statistic is counted from the sorted positive and negative scores
    (each pair: 1 if the positive scores higher, 1/2 for a tie), the same exact multiple of
    1/2 as the rank sum less its minimum, so the same AUC, without an argsort of all of them
    (~3x faster at 500); with a NaN score it falls back to the ranks."""
    n = scores.shape[0]
    n_pos = 0
    finite = True
    for i in range(n):
        if labels[i]:
            n_pos += 1
        if scores[i] != scores[i]:
            finite = False
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan
    if not finite:
        return _auc_ranked(scores, labels, ranks)
    pos = np.empty(n_pos)
    neg = np.empty(n_neg)
    a = 0
    b = 0
    for i in range(n):
        if labels[i]:
            pos[a] = scores[i]
            a += 1
        else:
            neg[b] = scores[i]
            b += 1
    pos.sort()
    neg.sort()
    u = 0.0
    below = 0  # negatives scoring less than the current positive
    upto = 0  # negatives scoring no more than it
    for a in range(n_pos):
        p = pos[a]
        while below < n_neg and neg[below] < p:
            below += 1
        if upto < below:
            upto = below
        while upto < n_neg and neg[upto] <= p:
            upto += 1
        u += below + 0.5 * (upto - below)
    return u / (n_pos * n_neg)


@njit(cache=True)
def _auc_ranked(scores, labels, ranks):
    """:func:`auc_kernel` by mid-ranks of all scores (the reference formulation)."""
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
