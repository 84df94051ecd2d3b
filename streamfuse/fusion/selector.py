"""Pick the fusion level to publish from each level's recent prequential score.

Every labelled window scores each level's prediction (made before the label arrived). The
selector keeps the last ``horizon`` scores of each level and publishes the level with the best
mean: lowest log-loss (``score="log_loss"``) or highest accuracy (``score="accuracy"``); or
the level whose last ``horizon`` predictions rank best (``score="auc"``: the exact ROC AUC of
each class's probability against that class, within each group, e.g. device, that has both
classes in the horizon, averaged over those groups; pooled over all windows while no group
has both). Within a group is how a monitor is used: telling one person's states apart.
Log-loss rewards calibration, so a level whose probabilities are sharper wins it even when
another orders the windows better; ranking quality is comparable across levels whatever
their probability scales. Ties go to the level listed first in ``levels``; a level with no
score yet ranks last. ``pinned`` overrides the choice.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from streamfuse.errors import ConfigError
from streamfuse.learn.metrics import auc

SCORES = ("log_loss", "accuracy", "auc")

log = logging.getLogger("streamfuse.fusion.selector")

_P_FLOOR = 1e-15

_C = TypeVar("_C", bound=Hashable)  # a class label


def window_score(score: str, y_true: _C, proba: Mapping[_C, float]) -> float:
    """One window's score for one level: its log-loss, or 1/0 for a right/wrong decision.

    The decision is the most probable class (ties: smallest ``repr``); an empty ``proba``
    scores as wrong (accuracy) or as ``-log(1e-15)`` (log-loss).
    """
    if score == "log_loss":
        return -math.log(max(float(proba.get(y_true, 0.0)), _P_FLOOR))
    if not proba:
        return 0.0
    decided = min(proba, key=lambda c: (-proba[c], repr(c)))
    return 1.0 if decided == y_true else 0.0


def ranking_score(pairs: Sequence[tuple[Hashable, Mapping[Hashable, float]]]) -> float:
    """Mean over classes of the ROC AUC of ``proba[c]`` for "the label is ``c``", over the
    classes with both positives and negatives among ``pairs`` (NaN when none has)."""
    if not pairs:
        return math.nan
    classes = sorted({y for y, _ in pairs}, key=repr)
    if len(classes) < 2:
        return math.nan
    ys = [y for y, _ in pairs]
    values = []
    for c in classes:
        scores = np.array([float(p.get(c, 0.0)) for _, p in pairs])
        a = auc(scores, np.array([y == c for y in ys]))
        if math.isfinite(a):
            values.append(a)
        if len(classes) == 2:
            break  # the other class's AUC is the same figure
    return sum(values) / len(values) if values else math.nan


def grouped_ranking_score(
    triples: Sequence[tuple[Hashable, Hashable, Mapping[Hashable, float]]],
) -> float:
    """:func:`ranking_score` within each group of ``(group, label, proba)`` that has two
    classes, averaged over those groups; pooled over all of them while no group has two."""
    groups: dict[Hashable, list[tuple[Hashable, Mapping[Hashable, float]]]] = {}
    for g, y, p in triples:
        groups.setdefault(g, []).append((y, p))
    values = [ranking_score(pairs) for pairs in groups.values()]
    values = [v for v in values if math.isfinite(v)]
    if values:
        return sum(values) / len(values)
    return ranking_score([(y, p) for _, y, p in triples])


class LevelSelector:
    """Tracks each fusion level's rolling prequential score and says which is best.

    Parameters
    ----------
    levels
        Level names in tie-break order, e.g. ``("early", "intermediate", "late")``.
    horizon
        How many recent labelled windows the score covers.
    score
        ``"log_loss"`` (lower is better), ``"accuracy"`` or ``"auc"`` (higher is better).
    pinned
        A level to publish regardless of scores, or None.

    Examples
    --------
    >>> sel = LevelSelector(("early", "late"), horizon=2, score="accuracy")
    >>> sel.update("a", {"early": {"a": 0.4, "b": 0.6}, "late": {"a": 0.9, "b": 0.1}})
    >>> sel.best(), sel.scores()
    ('late', {'early': 0.0, 'late': 1.0})

    """

    def __init__(self, levels: Sequence[str], *, horizon: int = 50, score: str = "log_loss",
                 pinned: str | None = None) -> None:
        levels = tuple(levels)
        if not levels or len(set(levels)) != len(levels):
            raise ConfigError(f"LevelSelector: levels={levels!r}; pass distinct level names")
        if not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"LevelSelector: horizon={horizon!r}; pass an int >= 1, e.g. 50")
        if score not in SCORES:
            raise ConfigError(f"LevelSelector: score={score!r}; pass one of {SCORES}")
        self.levels = levels
        self.horizon = horizon
        self.score = score
        self._recent: dict[str, deque[float]] = {lv: deque(maxlen=horizon) for lv in levels}
        # score="auc": each level's last ``horizon`` (group, label, probabilities)
        self._pairs: dict[str, deque[tuple[Hashable, Hashable, Mapping[Hashable, float]]]] = {
            lv: deque(maxlen=horizon) for lv in levels
        }
        self._best: str | None = None  # best() until the next update (asked per window)
        self.pinned: str | None = None
        self.pin(pinned)

    def pin(self, level: str | None) -> None:
        """Publish ``level`` from now on (None returns to choosing by score)."""
        if level is not None and level not in self.levels:
            raise ConfigError(f"LevelSelector: cannot pin {level!r}; choose one of "
                              f"{list(self.levels)}")
        self.pinned = level

    def update(
        self,
        y_true: _C,
        probas_by_level: Mapping[str, Mapping[_C, float]],
        group: Hashable = None,
    ) -> None:
        """Score one labelled window for every level that predicted it.

        Parameters
        ----------
        y_true
            The window's label.
        probas_by_level
            ``{level: proba}`` as predicted before the label; unknown levels raise, levels
            absent from the mapping are not scored for this window.
        group
            What the window belongs to (e.g. its device); ``score="auc"`` ranks windows of
            one group against each other.
        """
        self._best = None
        for level, proba in probas_by_level.items():
            if level not in self._recent:
                raise ConfigError(f"LevelSelector: unknown level {level!r}; known: "
                                  f"{list(self.levels)}")
            if self.score == "auc":
                p: dict[Hashable, float] = {c: float(v) for c, v in proba.items()}
                self._pairs[level].append((group, y_true, p))
            else:
                self._recent[level].append(window_score(self.score, y_true, proba))

    def scores(self) -> dict[str, float]:
        """Score of each level over its last ``horizon`` windows (NaN if none yet, or for
        ``"auc"`` while no class has both positives and negatives there)."""
        if self.score == "auc":
            return {lv: grouped_ranking_score(q) for lv, q in self._pairs.items()}
        return {lv: (sum(q) / len(q) if q else math.nan) for lv, q in self._recent.items()}

    def best(self) -> str:
        """The level to publish: the pinned one, else the best recent score."""
        if self.pinned is not None:
            return self.pinned
        if self._best is None:
            self._best = self._rank()
        return self._best

    def _rank(self) -> str:
        sign = 1.0 if self.score == "log_loss" else -1.0  # accuracy, auc: higher is better
        scores = self.scores()

        def key(i: int) -> tuple[int, float, int]:
            s = scores[self.levels[i]]
            return (1, 0.0, i) if math.isnan(s) else (0, sign * s, i)

        return self.levels[min(range(len(self.levels)), key=key)]
