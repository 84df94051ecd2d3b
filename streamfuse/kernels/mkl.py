"""Kernels of online multiple kernel learning (:mod:`streamfuse.fusion.mkl`): one modality's
random Fourier features for every kernel width, its experts' softmax probabilities, and one
learning step (z-scoring moments, features, probabilities, log-losses, SGD) in one call.

Plain references: ``tests/naive_mkl.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def rff_features(
    G: np.ndarray, cols: np.ndarray, vals: np.ndarray, count: np.ndarray, mean: np.ndarray,
    m2: np.ndarray, n_columns: int, scales: np.ndarray, offsets: np.ndarray, u: np.ndarray,
    Z: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """``Z[k] = sqrt(2/D) cos(scales[k] / sqrt(d) * (G[:, cols] @ z) + offsets[k])`` with ``z``
    the values z-scored by the moments (0 where the spread is 0 or the value not finite), and
    ``Z[k, D] = 1`` (the intercept). ``u`` is ``float64[D]`` scratch."""
    D = G.shape[0]
    for i in range(D):
        u[i] = 0.0
    for j in range(cols.shape[0]):
        c = cols[j]
        v = vals[j]
        n = count[c]
        if n <= 1.0 or not math.isfinite(v):
            continue
        sd = math.sqrt(m2[c] / n)
        if not sd > 0.0:
            continue
        zj = (v - mean[c]) / sd
        for i in range(D):
            u[i] += G[i, c] * zj
    norm = math.sqrt(2.0 / D)
    root_d = math.sqrt(max(n_columns, 1))
    for k in range(scales.shape[0]):
        s = scales[k] / root_d
        for i in range(D):
            Z[k, i] = norm * math.cos(s * u[i] + offsets[k, i])
        Z[k, D] = 1.0


@njit(cache=True, nogil=True)
def softmax_proba(
    W: np.ndarray, Z: np.ndarray, n_classes: int, P: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``P[k, c]``: softmax over the first ``n_classes`` rows of ``W[k] @ Z[k]`` (a class
    beyond ``W``'s rows has logit 0)."""
    K, rows, width = W.shape
    for k in range(K):
        top = -np.inf
        for c in range(n_classes):
            acc = 0.0
            if c < rows:
                for i in range(width):
                    acc += W[k, c, i] * Z[k, i]
            P[k, c] = acc
            if acc > top:
                top = acc
        total = 0.0
        for c in range(n_classes):
            e = math.exp(P[k, c] - top)
            P[k, c] = e
            total += e
        for c in range(n_classes):
            P[k, c] /= total


@njit(cache=True, nogil=True)
def learn_step(
    G: np.ndarray, cols: np.ndarray, vals: np.ndarray, count: np.ndarray, mean: np.ndarray,
    m2: np.ndarray, n_columns: int, scales: np.ndarray, offsets: np.ndarray, W: np.ndarray,
    n_classes: int, y: int, lr: float, l2: float, p_floor: float, u: np.ndarray,
    Z: np.ndarray, P: np.ndarray, losses: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """One labelled sample of one modality: Welford update of the present finite values'
    moments, the features, each expert's log-loss on ``y`` (into ``losses``), then one SGD
    step of every expert's softmax regression (``W`` must have ``n_classes`` rows)."""
    for j in range(cols.shape[0]):
        v = vals[j]
        if math.isfinite(v):
            c = cols[j]
            count[c] += 1.0
            d = v - mean[c]
            mean[c] += d / count[c]
            m2[c] += d * (v - mean[c])
    rff_features(G, cols, vals, count, mean, m2, n_columns, scales, offsets, u, Z)
    softmax_proba(W, Z, n_classes, P)
    K, _, width = W.shape
    for k in range(K):
        losses[k] = -math.log(max(P[k, y], p_floor))
        P[k, y] -= 1.0
        for c in range(n_classes):
            g = P[k, c]
            for i in range(width):
                W[k, c, i] -= lr * (g * Z[k, i] + l2 * W[k, c, i])
