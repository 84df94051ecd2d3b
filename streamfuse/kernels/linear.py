"""Numba kernels of :class:`streamfuse.learn.linear.ScaledLogisticRegression`.

One call does all of one ``learn_one`` (or ``predict_proba_one``) over the features present in
the sample: ``cols[i]`` is the column of the ``i``-th present feature, ``vals[i]`` its value.
The per-column state is ``counts``, ``means``, ``vars_`` (Welford, population variance, the
update order of river's ``StandardScaler``), one weight row per class ``W[k, :]`` and one
intercept per class ``b[k]``. The kernels never validate; the wrapper does. Plain references
are in ``tests/naive.py``.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def _standardize(cols, vals, means, vars_, z):
    for i in range(cols.shape[0]):
        j = cols[i]
        v = vars_[j]
        z[i] = (vals[i] - means[j]) / math.sqrt(v) if v != 0.0 else 0.0


@njit(cache=True)
def _log_gradient(raw, positive):
    """d(log loss)/d(raw) for a label in {-1, +1} (river ``optim.losses.Log.gradient``)."""
    y = 1.0 if positive else -1.0
    zz = raw * y
    if zz > 18.0:
        return math.exp(-zz) * -y
    if zz < -18.0:
        return -y
    return -y / (math.exp(zz) + 1.0)


@njit(cache=True)
def _sigmoid(raw):
    """river ``utils.math.sigmoid``: exactly 0 below -30 and 1 above 30."""
    if raw < -30.0:
        return 0.0
    if raw > 30.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-raw))


@njit(cache=True)
def learn_one(cols, vals, counts, means, vars_, W, b, n_classes, k_true, lr, intercept_lr, l2,
              clip, z):
    """Update the scaler with the sample, standardise it, then take one SGD step of every
    class's binary logistic regression (class ``k_true`` positive, the others negative)."""
    for i in range(cols.shape[0]):
        j = cols[i]
        x = vals[i]
        counts[j] += 1.0
        old = means[j]
        means[j] += (x - old) / counts[j]
        vars_[j] += ((x - old) * (x - means[j]) - vars_[j]) / counts[j]
    _standardize(cols, vals, means, vars_, z)
    for k in range(n_classes):
        raw = b[k]
        for i in range(cols.shape[0]):
            raw += W[k, cols[i]] * z[i]
        g = _log_gradient(raw, k == k_true)
        if g > clip:
            g = clip
        elif g < -clip:
            g = -clip
        b[k] -= intercept_lr * g
        for i in range(cols.shape[0]):
            j = cols[i]
            w = W[k, j]
            W[k, j] = w - lr * (g * z[i] + l2 * w)


@njit(cache=True)
def predict_proba(cols, vals, means, vars_, W, b, n_classes, z, out):
    """Fill ``out[:n_classes]`` with one-vs-rest probabilities normalised to sum to 1 (uniform
    when every class says 0)."""
    _standardize(cols, vals, means, vars_, z)
    total = 0.0
    for k in range(n_classes):
        raw = b[k]
        for i in range(cols.shape[0]):
            raw += W[k, cols[i]] * z[i]
        p = _sigmoid(raw)
        out[k] = p
        total += p
    for k in range(n_classes):
        out[k] = out[k] / total if total != 0.0 else 1.0 / n_classes


@njit(cache=True)
def predict_then_learn(cols, vals, counts, means, vars_, W, b, n_before, n_classes, k_true, lr,
                       intercept_lr, l2, clip, z, out):
    """:func:`predict_proba` over the first ``n_before`` classes (into ``out``), then
    :func:`learn_one` over ``n_classes`` with class ``k_true`` positive: a late-fusion member
    scored on a window, then trained on it, in one call. Returns ``out[k_true]`` as predicted,
    0.0 when ``k_true`` is not among the first ``n_before`` classes."""
    predict_proba(cols, vals, means, vars_, W, b, n_before, z, out)
    p_true = out[k_true] if k_true < n_before else 0.0
    learn_one(cols, vals, counts, means, vars_, W, b, n_classes, k_true, lr, intercept_lr, l2,
              clip, z)
    return p_true


@njit(cache=True)
def predict_proba_rows(cols, X, means, vars_, W, b, n_classes, z, out):
    """:func:`predict_proba` of every row of ``X`` (``[rows, len(cols)]``) into the same row
    of ``out`` (``[rows, n_classes]``): one call for a batch of windows with one layout."""
    for r in range(X.shape[0]):
        predict_proba(cols, X[r], means, vars_, W, b, n_classes, z, out[r])
