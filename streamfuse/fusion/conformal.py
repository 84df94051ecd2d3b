"""Online conformal prediction sets with late labels: adaptive conformal inference.

Every window's decision carries a *set* of classes meant to contain the true one with
probability ``target`` (e.g. 90 %): ``{"rest"}``, ``{"arithmetic"}``, or both (the engine
abstains). The set is ``{c : 1 - p(c) <= q}``, the least-ambiguous set-valued classifier of
Sadinle, Lei and Wasserman (2019, JASA 114:223-234), with ``q`` the conformal quantile
(level ``ceil((n + 1)(1 - alpha_t)) / n``) of the scores ``1 - p(y)`` of the last ``window``
labelled windows.

Exchangeability fails in a stream (people, sessions and sensors drift), so ``alpha_t`` is
steered by adaptive conformal inference (Gibbs and Candès 2021, "Adaptive conformal inference
under distribution shift", NeurIPS): after each label, ``alpha <- alpha + gamma (alpha_target -
err)``, ``err = 1`` when the set missed the label. Whatever the data, the miss rate over ``T``
labels is within ``(max(alpha_1, 1 - alpha_1) + gamma) / (gamma T)`` of ``1 - target`` (their
Proposition 4.1), because ``alpha_t`` stays in ``[-gamma, 1 + gamma]``: below 0 the set is every
class (cannot miss), above 1 it is empty (must miss).

Labels arrive late and possibly out of order here: the set made at decision time is kept with
the window (:class:`PredictionSet`) and passed back with its label to :meth:`learn`, which
applies the update in arrival order. With at most ``d`` windows decided between a window's
decision and its label, ``alpha_t`` stays within ``[-gamma (d + 1), 1 + gamma (d + 1)]`` and the
bound holds with ``gamma (d + 1)`` in place of ``gamma`` in its numerator.

No library was used: MAPIE's adaptive conformal inference is for regression intervals over a
fitted scikit-learn estimator, crepes and MAPIE's classifiers are batch (split) conformal, and
river 0.26 has no conformal module; none updates per label with the set of a past decision.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("streamfuse.fusion.conformal")


@dataclass(frozen=True, slots=True)
class PredictionSet:
    """The set made for one window: its classes (sorted by ``repr``), the ``alpha_t`` and the
    score threshold ``q`` used (``inf``: every class; ``-inf``: none)."""

    classes: tuple[Hashable, ...]
    alpha: float
    threshold: float

    @property
    def abstains(self) -> bool:
        """More than one class: the set cannot decide."""
        return len(self.classes) > 1


class AdaptiveConformal:
    """Adaptive conformal inference (Gibbs and Candès 2021) for classification sets.

    Parameters
    ----------
    target
        Wanted coverage ``1 - alpha``, in (0, 1).
    gamma
        Step of ``alpha_t`` per label (larger: adapts faster, ``alpha_t`` noisier).
    window
        Labelled scores kept for the quantile.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> aci = AdaptiveConformal(target=0.9, gamma=0.01)
    >>> for _ in range(3000):
    ...     y = rng.random() < 0.5
    ...     p = min(max(0.5 + (0.3 if y else -0.3) + rng.gauss(0, 0.2), 0.0), 1.0)
    ...     proba = {True: p, False: 1 - p}
    ...     aci.learn(proba, y, aci.predict(proba))
    >>> m = aci.metrics()
    >>> round(m["coverage"], 2), m["mean_set_size"] < 1.5
    (0.9, True)
    """

    def __init__(self, *, target: float = 0.9, gamma: float = 0.005, window: int = 500) -> None:
        if not 0 < target < 1:
            raise ConfigError(f"AdaptiveConformal: target={target!r}; pass a float in (0, 1)")
        if not gamma >= 0:
            raise ConfigError(f"AdaptiveConformal: gamma={gamma!r}; pass a float >= 0, e.g. 0.005")
        if not window >= 1:
            raise ConfigError(f"AdaptiveConformal: window={window!r}; pass an int >= 1")
        self.target = float(target)
        self.gamma = float(gamma)
        self.window = int(window)
        self.alpha_t = 1.0 - self.target
        self.classes: list[Hashable] = []
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self.n = 0
        self.covered = 0
        self.size_sum = 0
        self.abstained = 0
        self.empty = 0

    # ------------------------------------------------------------------ predict
    def threshold(self) -> float:
        """The score threshold for the current ``alpha_t``."""
        a = self.alpha_t
        if a >= 1.0:
            return -math.inf
        n = len(self._sorted)
        if a <= 0.0 or n == 0:
            return math.inf
        rank = math.ceil((n + 1) * (1.0 - a))
        return math.inf if rank > n else self._sorted[rank - 1]

    def predict(self, proba: Mapping[Any, float]) -> PredictionSet:
        """The prediction set for class probabilities ``proba`` (classes seen in labels but
        absent from ``proba`` have probability 0)."""
        q = self.threshold()
        classes = set(proba) | set(self.classes)
        chosen = tuple(sorted(
            (c for c in classes if 1.0 - float(proba.get(c, 0.0)) <= q), key=repr
        ))
        return PredictionSet(chosen, self.alpha_t, q)

    # ------------------------------------------------------------------ learn
    def learn(self, proba: Mapping[Any, float], y: Hashable, made: PredictionSet) -> None:
        """Score the set ``made`` for this window (with the ``proba`` it was made from) against
        its label ``y``; update ``alpha_t``, the running figures and the score window."""
        if y not in self.classes:
            self.classes.append(y)
        hit = y in made.classes
        self.n += 1
        self.covered += hit
        size = len(made.classes)
        self.size_sum += size
        self.abstained += size > 1
        self.empty += size == 0
        self.alpha_t += self.gamma * ((1.0 - self.target) - (0.0 if hit else 1.0))
        score = 1.0 - float(proba.get(y, 0.0))
        if not math.isfinite(score):
            return
        self._recent.append(score)
        bisect.insort(self._sorted, score)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def metrics(self) -> dict[str, float]:
        """``target``, running ``coverage``, ``mean_set_size``, ``abstain_rate`` (sets of
        two or more classes), ``empty_rate``, current ``alpha`` and ``n`` (NaN before any
        label)."""
        n = self.n
        nan = math.nan
        return {
            "target": self.target,
            "coverage": self.covered / n if n else nan,
            "mean_set_size": self.size_sum / n if n else nan,
            "abstain_rate": self.abstained / n if n else nan,
            "empty_rate": self.empty / n if n else nan,
            "alpha": self.alpha_t,
            "n": float(n),
        }
