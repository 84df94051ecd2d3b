"""Online diagonal linear discriminant analysis (Gaussian naive Bayes with one shared variance
per feature), with a learnt temperature for its probabilities.

Each class keeps a running mean of every feature (Welford); the variance of a feature is
pooled over the classes (the within-class spread). A class's discriminant is

    d_k(x) = sum_j (x_j mu_kj - mu_kj^2 / 2) / var_j + log prior_k,

summed over the features present in ``x`` that have a mean in every class, and the
probabilities are ``softmax(a * d)``. ``a`` (a temperature's inverse) is learnt by one SGD
step on the log loss of each labelled sample before the sample updates the statistics, so the
probabilities stay usable when hundreds of correlated features add their evidence.

Why this model for a person the models never had labels for: every feature's weight is its
effect size estimated over all labelled windows (a sufficient statistic, exact at every step,
no learning rate), rather than a path of SGD steps that lean on whichever subject came last.
Bickel and Levina (2004, Bernoulli 10(6):989-1010) show that ignoring the correlations
("independence rule") beats Fisher's full-covariance rule when features are many and samples
few, as here (230 inputs, 19 people). ``docs/evaluation.md`` has the figures.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
from river import base

_CACHED_KEY_SETS = 64


class DiagonalLDA(base.Classifier):
    """Online diagonal LDA with a learnt softmax temperature.

    Parameters
    ----------
    var_floor
        Relative floor on each feature's pooled variance (times the feature's mean square
        plus 1e-12), so a feature that has not varied yet cannot dominate.
    temperature_lr
        Step of the log-temperature's SGD on the log loss.

    Features absent from a sample are neither learnt nor used for it; a feature counts once
    every known class has at least one value of it. Classes are kept in the order they were
    first learnt.
    """

    def __init__(self, var_floor: float = 1e-6, temperature_lr: float = 0.05) -> None:
        self.var_floor = var_floor
        self.temperature_lr = temperature_lr
        self.classes: list[Hashable] = []
        self._class_index: dict[Hashable, int] = {}
        self._columns: dict[Hashable, int] = {}
        self._key_sets: dict[tuple[Hashable, ...], np.ndarray] = {}
        self._n = np.zeros((2, 8))  # per class, per feature: values seen
        self._mu = np.zeros((2, 8))
        self._m2 = np.zeros((2, 8))
        self._seen = np.zeros(2)  # per class: samples learnt
        self._log_a = math.nan  # log inverse temperature; set on the first learnt sample

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"var_floor": 1e-3, "temperature_lr": 0.1}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_key_sets"] = {}  # a cache; rebuilt on first use
        return state

    # ------------------------------------------------------------------ dict -> arrays
    def _cols(self, keys: tuple[Hashable, ...], grow: bool) -> np.ndarray:
        cols = self._key_sets.get(keys)
        if cols is not None:
            return cols
        index = self._columns
        if grow:
            for k in keys:
                if k not in index:
                    index[k] = len(index)
            self._grow(len(index), self._n.shape[0])
        cols = np.fromiter((index.get(k, -1) for k in keys), np.int64, len(keys))
        if grow:
            if len(self._key_sets) >= _CACHED_KEY_SETS:
                self._key_sets.clear()
            self._key_sets[keys] = cols
        return cols

    def _grow(self, features: int, classes: int) -> None:
        rows, cap = self._n.shape
        if features <= cap and classes <= rows:
            return
        new_cap = max(features, 2 * cap) if features > cap else cap
        new_rows = max(classes, 2 * rows) if classes > rows else rows
        for name in ("_n", "_mu", "_m2"):
            old = getattr(self, name)
            grown = np.zeros((new_rows, new_cap))
            grown[:rows, :cap] = old
            setattr(self, name, grown)
        seen = np.zeros(new_rows)
        seen[:rows] = self._seen
        self._seen = seen

    # ------------------------------------------------------------------ the model
    def _discriminants(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """``d_k(x)`` for every known class (finite values only)."""
        k = len(self.classes)
        ok = (cols >= 0) & np.isfinite(vals)
        c, v = cols[ok], vals[ok]
        n = self._n[:k, c]
        usable = (n > 0).all(axis=0)
        c, v = c[usable], v[usable]
        n, mu, m2 = self._n[:k, c], self._mu[:k, c], self._m2[:k, c]
        dof = n.sum(axis=0) - k
        var = np.where(dof > 0, m2.sum(axis=0) / np.maximum(dof, 1), 0.0)
        floor = self.var_floor * ((mu**2).mean(axis=0) + 1e-12)
        var = np.maximum(var, floor)
        d = ((v * mu - 0.5 * mu**2) / var).sum(axis=1)
        prior = np.log((self._seen[:k] + 1.0) / (self._seen[:k].sum() + k))
        return d + prior

    def _proba(self, d: np.ndarray) -> np.ndarray:
        a = math.exp(self._log_a) if math.isfinite(self._log_a) else 1.0
        z = a * (d - d.max())
        e = np.exp(z)
        return e / e.sum()

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:  # type: ignore[override]
        k = self._class_index.get(y)
        if k is None:
            k = len(self.classes)
            self.classes.append(y)
            self._class_index[y] = k
            self._grow(len(self._columns), k + 1)
        cols = self._cols(tuple(x), grow=True)
        vals = np.fromiter(x.values(), np.float64, len(cols))
        if not math.isfinite(self._log_a):
            self._log_a = -math.log(max(1, len(cols)))
        if len(self.classes) > 1:
            # test, then train: the temperature learns from the prediction it would have made
            d = self._discriminants(cols, vals)
            p = self._proba(d)
            target = np.zeros_like(p)
            target[k] = 1.0
            a = math.exp(self._log_a)
            grad = a * float(((p - target) * (d - d.mean())).sum())
            self._log_a -= self.temperature_lr * max(-1.0, min(1.0, grad))
        ok = np.isfinite(vals)
        c, v = cols[ok], vals[ok]
        self._n[k, c] += 1.0
        delta = v - self._mu[k, c]
        self._mu[k, c] += delta / self._n[k, c]
        self._m2[k, c] += delta * (v - self._mu[k, c])
        self._seen[k] += 1.0

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Hashable, float]:  # type: ignore[override]
        if not self.classes:
            return {}
        if len(self.classes) == 1:
            return {self.classes[0]: 1.0}
        cols = self._cols(tuple(x), grow=False)
        vals = np.fromiter(x.values(), np.float64, len(cols))
        p = self._proba(self._discriminants(cols, vals))
        return {c: float(p[i]) for i, c in enumerate(self.classes)}

    def decision(self, x: dict) -> dict[Hashable, float]:
        """Each class's discriminant ``d_k(x)`` (before the temperature)."""
        if not self.classes:
            return {}
        cols = self._cols(tuple(x), grow=False)
        vals = np.fromiter(x.values(), np.float64, len(cols))
        d = self._discriminants(cols, vals)
        return {c: float(d[i]) for i, c in enumerate(self.classes)}
