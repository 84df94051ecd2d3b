"""An online z-scored one-vs-rest logistic regression, computed by one Numba call per sample.

:class:`ScaledLogisticRegression` does the arithmetic of the river pipeline
``preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(
linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2))``, step for step: the scaler
learns the sample and then standardises it, every class's binary model takes one SGD step on
the log loss (intercept at ``intercept_lr``, L2 on the weights of the present features only),
and probabilities are the classes' sigmoids normalised to sum to 1. The pipeline spends
~100 us per ``learn_one`` walking dicts through five objects; here the dict becomes two arrays
(its columns, cached per key set, and its values) and one kernel does the rest
(``bench/test_bench_learn.py`` has the figures). ``tests/test_linear.py`` checks that both
give the same probabilities, sample for sample.

It is the engine's default model (``model = "logreg"``); ``"river-logreg"`` names the river
pipeline itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
from river import base

from ..kernels import linear as kern
from .vector import FeatureVector

_CACHED_KEY_SETS = 64


class ScaledLogisticRegression(base.Classifier):
    """Online standardisation + one-vs-rest logistic regression trained by plain SGD.

    Parameters
    ----------
    lr
        SGD learning rate of the weights.
    l2
        L2 penalty on the weights (applied to the features present in each sample).
    intercept_lr
        Learning rate of each class's intercept.
    clip_gradient
        Bound on the absolute loss gradient.

    Features absent from a sample are neither learnt nor used for it; a feature never seen
    standardises to 0. Classes are kept in the order they were first learnt.
    """

    def __init__(
        self,
        lr: float = 0.05,
        l2: float = 1e-4,
        intercept_lr: float = 0.01,
        clip_gradient: float = 1e12,
    ) -> None:
        self.lr = lr
        self.l2 = l2
        self.intercept_lr = intercept_lr
        self.clip_gradient = clip_gradient
        self.classes: list[Hashable] = []
        self._class_index: dict[Hashable, int] = {}
        self._columns: dict[Hashable, int] = {}
        self._key_sets: dict[tuple[Hashable, ...], np.ndarray] = {}
        self._counts = np.zeros(8)
        self._means = np.zeros(8)
        self._vars = np.zeros(8)
        self._W = np.zeros((2, 8))
        self._b = np.zeros(2)
        self._z = np.zeros(8)
        self._p = np.zeros(2)

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"lr": 0.1, "l2": 0.0}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_key_sets"] = {}  # a cache; rebuilt on first use
        state.pop("_names", None)  # likewise
        return state

    # ------------------------------------------------------------------ dict -> arrays
    def _cols(self, keys: tuple[Hashable, ...]) -> np.ndarray:
        cols = self._key_sets.get(keys)
        if cols is None:
            index = self._columns
            for k in keys:
                if k not in index:
                    index[k] = len(index)
            self._grow_columns(len(index))
            cols = np.fromiter((index[k] for k in keys), np.int64, len(keys))
            if len(self._key_sets) >= _CACHED_KEY_SETS:
                self._key_sets.clear()
            self._key_sets[keys] = cols
        return cols

    def _grow_columns(self, n: int) -> None:
        cap = self._means.shape[0]
        if n <= cap:
            return
        new = max(n, 2 * cap)
        for name in ("_counts", "_means", "_vars", "_z"):
            old = getattr(self, name)
            grown = np.zeros(new)
            grown[:cap] = old
            setattr(self, name, grown)
        W = np.zeros((self._W.shape[0], new))
        W[:, :cap] = self._W
        self._W = W

    def _add_class(self, y: Hashable) -> int:
        k = len(self.classes)
        self.classes.append(y)
        self._class_index[y] = k
        if k >= self._b.shape[0]:
            rows = 2 * self._b.shape[0]
            W = np.zeros((rows, self._W.shape[1]))
            W[:k] = self._W[:k]
            b = np.zeros(rows)
            b[:k] = self._b[:k]
            self._W, self._b, self._p = W, b, np.zeros(rows)
        return k

    # ------------------------------------------------------------------ river API
    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:  # type: ignore[override]
        k = self._class_index.get(y)
        if k is None:
            k = self._add_class(y)
        cols = self._cols(tuple(x))
        vals = np.fromiter(x.values(), np.float64, len(cols))
        kern.learn_one(
            cols, vals, self._counts, self._means, self._vars, self._W, self._b,
            len(self.classes), k, float(self.lr), float(self.intercept_lr), float(self.l2),
            float(self.clip_gradient), self._z,
        )

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Hashable, float]:  # type: ignore[override]
        n = len(self.classes)
        if n == 0:
            return {}
        keys = tuple(x)
        cols = self._key_sets.get(keys)
        if cols is None:
            known = self._columns
            if any(k not in known for k in keys):
                # never-seen features standardise to 0 and carry no weight: leave them out
                x = {k: v for k, v in x.items() if k in known}
                keys = tuple(x)
            cols = self._cols(keys)
        vals = np.fromiter(x.values(), np.float64, len(cols))
        kern.predict_proba(
            cols, vals, self._means, self._vars, self._W, self._b, n, self._z, self._p
        )
        p = self._p
        return {c: float(p[i]) for i, c in enumerate(self.classes)}

    # ------------------------------------------------------------------ FeatureVector lane
    # The same arithmetic as the dict API on a :class:`~streamfuse.learn.vector.FeatureVector`
    # (its names are the dict's keys in order, its values the dict's values): no dict is built
    # or walked (``bench/test_bench_learn.py``).
    def _known_cols(self, names: tuple[Hashable, ...]) -> np.ndarray | None:
        """Columns of the features ``names``, None when one was never seen."""
        cols = self._key_sets.get(names)
        if cols is None:
            known = self._columns
            if any(k not in known for k in names):
                return None
            cols = self._cols(names)
        return cols

    def predict_proba_vector(self, x: FeatureVector) -> dict[Hashable, float]:
        """:meth:`predict_proba_one` of ``x``."""
        n = len(self.classes)
        if n == 0:
            return {}
        cols = self._known_cols(x.names)
        if cols is None:
            return self.predict_proba_one(x.as_dict())
        kern.predict_proba(
            cols, x.array, self._means, self._vars, self._W, self._b, n, self._z, self._p
        )
        return dict(zip(self.classes, self._p[:n].tolist(), strict=True))

    def predict_proba_named(self, x: FeatureVector) -> dict[str, float]:
        """:meth:`predict_proba_vector` of ``x`` with each class as ``str(class)`` (what the
        fusion levels publish), built once."""
        n = len(self.classes)
        if n == 0:
            return {}
        cols = self._known_cols(x.names)
        if cols is None:
            return {str(c): float(v) for c, v in self.predict_proba_one(x.as_dict()).items()}
        kern.predict_proba(
            cols, x.array, self._means, self._vars, self._W, self._b, n, self._z, self._p
        )
        names = self.__dict__.get("_names")
        if names is None or len(names) != n:  # classes are only ever appended
            names = self._names = [str(c) for c in self.classes]
        return dict(zip(names, self._p[:n].tolist(), strict=True))

    def predict_proba_named_rows(
        self, names: tuple[str, ...], X: np.ndarray
    ) -> list[dict[str, float]]:
        """:meth:`predict_proba_named` of each row of ``X`` (float64 ``[rows, len(names)]``,
        the values of windows whose features are ``names``), in one kernel call."""
        n = len(self.classes)
        if n == 0:
            return [{} for _ in range(X.shape[0])]
        cols = self._known_cols(names)
        if cols is None:
            return [self.predict_proba_named(FeatureVector(names, row)) for row in X]
        out = np.empty((X.shape[0], n))
        kern.predict_proba_rows(
            cols, X, self._means, self._vars, self._W, self._b, n, self._z, out
        )
        classes = self.__dict__.get("_names")
        if classes is None or len(classes) != n:
            classes = self._names = [str(c) for c in self.classes]
        return [dict(zip(classes, row, strict=True)) for row in out.tolist()]

    def learn_vector(self, x: FeatureVector, y: Hashable) -> None:
        """:meth:`learn_one` of ``x``."""
        k = self._class_index.get(y)
        if k is None:
            k = self._add_class(y)
        kern.learn_one(
            self._cols(x.names), x.array, self._counts, self._means, self._vars, self._W,
            self._b, len(self.classes), k, float(self.lr), float(self.intercept_lr),
            float(self.l2), float(self.clip_gradient), self._z,
        )

    def predict_learn_vector(self, x: FeatureVector, y: Hashable) -> float | None:
        """:meth:`predict_proba_one` of ``x``, then :meth:`learn_one` of ``(x, y)``, in one
        kernel call: the probability given to ``y`` before learning (0.0 for a new class),
        None when the model knew no class yet (an empty prediction)."""
        n = len(self.classes)
        cols = self._known_cols(x.names) if n else None
        if cols is None:  # no class yet, or a feature never seen: the two steps one by one
            p = self.predict_proba_vector(x)
            self.learn_vector(x, y)
            return float(p.get(y, 0.0)) if p else None
        k = self._class_index.get(y)
        if k is None:
            k = self._add_class(y)
        return float(kern.predict_then_learn(
            cols, x.array, self._counts, self._means, self._vars, self._W, self._b, n,
            len(self.classes), k, float(self.lr), float(self.intercept_lr), float(self.l2),
            float(self.clip_gradient), self._z, self._p,
        ))

    # ------------------------------------------------------------------ inspection
    @property
    def weights(self) -> dict[Hashable, dict[Hashable, float]]:
        """Each class's weights by feature, in the standardised units the model works in."""
        names = list(self._columns)
        return {
            c: {f: float(self._W[i, j]) for j, f in enumerate(names)}
            for i, c in enumerate(self.classes)
        }

    @property
    def intercepts(self) -> dict[Hashable, float]:
        return {c: float(self._b[i]) for i, c in enumerate(self.classes)}
