"""Prequential (test-then-train) classification metrics.

:class:`PrequentialMetrics` keeps a cumulative confusion matrix (accuracy, precision, recall,
F1, specificity) and the last ``window`` (scores, label) pairs for an exact, rank-based AUC
(Mann–Whitney statistic with mid-ranks for ties; river's ``ROCAUC`` approximates with a few
thresholds instead). With ``positive`` set, precision/recall/F1/specificity/AUC are those of
that class against the rest; without it they are macro averages over the classes seen (AUC
over the classes that have both positives and negatives in the window).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np

from ..errors import ConfigError
from ..kernels.auc import auc_kernel

log = logging.getLogger("streamfuse.learn.metrics")

NAN = float("nan")
#: the rings' first size; they double up to ``window``
_FIRST_CAPACITY = 256

_C = TypeVar("_C", bound=Hashable)  # a class label; one type per update call


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC (validating wrapper of :func:`auc_kernel`).

    Parameters
    ----------
    scores
        float64[n] scores, higher meaning "more positive"; finite.
    labels
        bool[n], True for positives.

    Returns
    -------
    float
        The AUC, or NaN when ``labels`` lacks positives or negatives.
    """
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got shapes {s.shape} "
                         f"and {y.shape}")
    if s.dtype != np.float64:
        s = s.astype(np.float64)
    if y.dtype != np.bool_:
        y = y.astype(np.bool_)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf; replace them (e.g. np.nan_to_num) first")
    return float(auc_kernel(np.ascontiguousarray(s), np.ascontiguousarray(y),
                            np.empty(s.shape[0])))


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else NAN


class PrequentialMetrics:
    """Accuracy, precision, recall, F1, specificity and windowed exact AUC, updated online.

    Parameters
    ----------
    positive
        The class treated as positive; ``None`` for macro averages over classes.
    window
        How many recent (scores, label) pairs the AUC covers.

    Examples
    --------
    >>> m = PrequentialMetrics(positive="stress", window=500)
    >>> m.update("stress", {"stress": 0.8, "rest": 0.2})
    >>> m.update("rest", {"stress": 0.3, "rest": 0.7})
    >>> m.update("rest", {"stress": 0.6, "rest": 0.4})
    >>> m.get()["auc"], round(m.get()["accuracy"], 3)
    (1.0, 0.667)

    """

    KEYS = ("auc", "accuracy", "f1", "precision", "recall", "specificity")

    def __init__(self, positive: Hashable | None = None, window: int = 500) -> None:
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"PrequentialMetrics: window={window!r}; pass an int >= 1, e.g. 500")
        self.positive = positive
        self.window = window
        self._classes: list[Hashable] = []
        self._cm: dict[tuple[Hashable, Hashable], int] = {}
        self._n = 0
        # the last ``window`` scored predictions as rings: the label's class index, and per
        # class the score it was given (0.0 where the prediction did not name the class).
        # The rings start small and double until they hold ``window`` (a scorer made with a
        # huge window for "everything", as the evaluation's per-subject ones are, costs what
        # it holds, not what it might)
        cap = min(window, _FIRST_CAPACITY)
        self._truth = np.full(cap, -1, dtype=np.int64)
        self._scores: dict[Hashable, np.ndarray] = {}
        self._pos = 0
        self._filled = 0
        self._work = np.empty(cap)

    @property
    def n(self) -> int:
        """How many labelled predictions were scored."""
        return self._n

    def _see(self, c: Hashable) -> None:
        if c is not None and c not in self._classes:
            self._classes.append(c)

    def update(self, y_true: _C, proba: Mapping[_C, float], y_pred: _C | None = None) -> None:
        """Score one prediction against its label.

        Parameters
        ----------
        y_true
            The label.
        proba
            Class probabilities the model gave before seeing the label (may be empty).
        y_pred
            The decided class; by default the most probable one (ties: first in ``proba``).
        """
        if y_pred is None and proba:
            y_pred = max(proba, key=proba.__getitem__)
        classes = self._classes
        if y_true not in classes:
            self._see(y_true)
        if y_pred not in classes:
            self._see(y_pred)
        for c in proba:
            if c not in classes:
                self._see(c)
        key = (y_true, y_pred)
        cm = self._cm
        cm[key] = cm.get(key, 0) + 1
        self._n += 1
        i = self._pos
        if i == self._truth.size:  # only while filling: the ring has not wrapped yet
            self._grow()
        named: Mapping[Hashable, float] = proba  # type: ignore[assignment]  # any key may be asked
        scores = self._scores
        for known in classes:
            ring = scores.get(known)
            if ring is None:  # a new class: no earlier prediction named it, so 0.0 there
                ring = scores[known] = np.zeros(self._truth.size)
            ring[i] = float(named.get(known, 0.0))
        self._truth[i] = classes.index(y_true) if y_true in classes else -1
        self._pos = (i + 1) % self.window
        filled = self._filled + 1
        self._filled = filled if filled < self.window else self.window

    def _grow(self) -> None:
        cap = min(self.window, 2 * self._truth.size)
        truth = np.full(cap, -1, dtype=np.int64)
        truth[: self._truth.size] = self._truth
        self._truth = truth
        for c, ring in self._scores.items():
            grown = np.zeros(cap)
            grown[: ring.size] = ring
            self._scores[c] = grown
        self._work = np.empty(cap)

    def _counts(self, c: Hashable) -> tuple[int, int, int, int]:
        tp = fp = fn = tn = 0
        for (t, p), k in self._cm.items():
            if t == c and p == c:
                tp += k
            elif p == c:
                fp += k
            elif t == c:
                fn += k
            else:
                tn += k
        return tp, fp, fn, tn

    def _class_auc(self, c: Hashable) -> float:
        n = self._filled
        if n == 0 or c not in self._scores:
            return NAN
        labels = self._truth[:n] == self._classes.index(c)
        return float(auc_kernel(self._scores[c][:n], labels, self._work[:n]))

    def _one(self, c: Hashable) -> dict[str, float]:
        tp, fp, fn, tn = self._counts(c)
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        return {"precision": precision, "recall": recall, "f1": f1,
                "specificity": _ratio(tn, tn + fp), "auc": self._class_auc(c)}

    def get(self) -> dict[str, float]:
        """The current figures (NaN where undefined, e.g. AUC before both classes were seen).

        Returns
        -------
        dict
            ``auc``, ``accuracy``, ``f1``, ``precision``, ``recall``, ``specificity`` and ``n``.
        """
        correct = sum(k for (t, p), k in self._cm.items() if t == p)
        out = {"accuracy": _ratio(correct, self._n)}
        if self.positive is not None:
            out.update(self._one(self.positive))
        else:
            per = [self._one(c) for c in self._classes]
            for key in ("precision", "recall", "f1", "specificity", "auc"):
                vals = [p[key] for p in per if not math.isnan(p[key])]
                out[key] = sum(vals) / len(vals) if vals else NAN
        out["n"] = float(self._n)
        return {k: out[k] for k in (*self.KEYS, "n")}
