"""NumPy references of the online-MKL kernels (``streamfuse.kernels.mkl``): whole-array
expressions, written from the definitions, importing nothing from streamfuse."""

from __future__ import annotations

import math

import numpy as np


def naive_zscore(cols, vals, count, mean, m2):
    n = count[cols]
    sd = np.sqrt(np.where(n > 1, m2[cols] / np.maximum(n, 1.0), 0.0))
    ok = (n > 1) & (sd > 0) & np.isfinite(vals)
    return np.where(ok, (np.where(np.isfinite(vals), vals, 0.0) - mean[cols])
                    / np.where(sd > 0, sd, 1.0), 0.0)


def naive_features(G, cols, vals, count, mean, m2, n_columns, scales, offsets):
    z = naive_zscore(cols, vals, count, mean, m2)
    D = G.shape[0]
    u = G[:, cols] @ z
    out = np.ones((scales.shape[0], D + 1))
    out[:, :D] = math.sqrt(2.0 / D) * np.cos(
        np.outer(scales / math.sqrt(max(n_columns, 1)), u) + offsets)
    return out


def naive_proba(W, Z, n_classes):
    rows = min(n_classes, W.shape[1])
    logits = np.zeros((Z.shape[0], n_classes))
    logits[:, :rows] = np.einsum("kcd,kd->kc", W[:, :rows], Z)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def naive_learn(G, cols, vals, count, mean, m2, n_columns, scales, offsets, W, n_classes, y,
                lr, l2, p_floor):
    """Returns the new (count, mean, m2, W) and the experts' log-losses."""
    count, mean, m2, W = count.copy(), mean.copy(), m2.copy(), W.copy()
    for c, v in zip(cols, vals, strict=True):
        if math.isfinite(v):
            count[c] += 1
            d = v - mean[c]
            mean[c] += d / count[c]
            m2[c] += d * (v - mean[c])
    Z = naive_features(G, cols, vals, count, mean, m2, n_columns, scales, offsets)
    P = naive_proba(W, Z, n_classes)
    losses = -np.log(np.maximum(P[:, y], p_floor))
    P[:, y] -= 1.0
    W[:, :n_classes] -= lr * (np.einsum("kc,kd->kcd", P, Z) + l2 * W[:, :n_classes])
    return count, mean, m2, W, losses
