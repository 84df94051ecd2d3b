"""Level selection: the published level is the best over the stated horizon (acceptance 5)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from streamfuse.errors import ConfigError
from streamfuse.fusion import selector
from streamfuse.fusion.selector import LevelSelector

LEVELS = ("early", "intermediate", "late")


def _recompute_best(history, horizon, score):
    """From the recorded (label, probas) history, the level with the best mean score over its
    last ``horizon`` windows (first listed wins ties), computed independently."""
    per = {lv: [] for lv in LEVELS}
    for y, probas in history:
        for lv, p in probas.items():
            if score == "log_loss":
                per[lv].append(-math.log(max(p.get(y, 0.0), 1e-15)))
            else:
                top = max(p.values())
                decided = sorted((c for c in p if p[c] == top), key=repr)[0]
                per[lv].append(float(decided == y))
    means = {lv: np.mean(v[-horizon:]) for lv, v in per.items() if v}
    sign = 1 if score == "log_loss" else -1
    return min(means, key=lambda lv: (sign * means[lv], LEVELS.index(lv)))


@pytest.mark.parametrize("score", ["log_loss", "accuracy"])
def test_best_is_recomputed_from_history(score):
    rng = np.random.default_rng(0)
    sel = LevelSelector(LEVELS, horizon=40, score=score)
    history = []
    # three levels whose quality changes over time; late sometimes misses a window
    for t in range(600):
        y = "stress" if rng.random() < 0.5 else "rest"
        skill = {"early": 0.6, "intermediate": 0.8 if t < 300 else 0.55,
                 "late": 0.7 if t < 300 else 0.85}
        probas = {}
        for lv in LEVELS:
            if lv == "late" and rng.random() < 0.1:
                continue
            right = rng.random() < skill[lv]
            conf = float(rng.uniform(0.5, 0.95))
            other = "rest" if y == "stress" else "stress"
            probas[lv] = {y: conf, other: 1 - conf} if right else {y: 1 - conf, other: conf}
        sel.update(y, probas)
        history.append((y, probas))
        assert sel.best() == _recompute_best(history, 40, score)
    assert sel.best() == "late"


def test_ties_pin_and_unscored_levels():
    sel = LevelSelector(LEVELS, horizon=3, score="accuracy")
    assert sel.best() == "early"  # nothing scored: first listed
    sel.update("a", {"late": {"a": 1.0}})
    assert sel.best() == "late"  # scored beats unscored
    sel.update("a", {"early": {"a": 1.0}, "intermediate": {"a": 1.0}})
    assert sel.best() == "early"  # tie at 1.0: first listed
    sel.pin("intermediate")
    sel.update("a", {"early": {"a": 1.0}, "intermediate": {"b": 1.0}})
    assert sel.best() == "intermediate"
    sel.pin(None)
    assert sel.best() == "early"
    with pytest.raises(ConfigError, match="cannot pin"):
        sel.pin("hybrid")
    with pytest.raises(ConfigError, match="unknown level"):
        sel.update("a", {"hybrid": {"a": 1.0}})


def test_horizon_forgets_old_windows():
    sel = LevelSelector(("early", "late"), horizon=5, score="accuracy")
    for _ in range(5):
        sel.update("a", {"early": {"a": 0.9, "b": 0.1}, "late": {"a": 0.1, "b": 0.9}})
    assert sel.best() == "early"
    for _ in range(5):
        sel.update("a", {"early": {"a": 0.1, "b": 0.9}, "late": {"a": 0.9, "b": 0.1}})
    assert sel.best() == "late" and sel.scores() == {"early": 0.0, "late": 1.0}


def test_config_and_doctest():
    with pytest.raises(ConfigError, match="horizon"):
        LevelSelector(LEVELS, horizon=0)
    with pytest.raises(ConfigError, match="distinct"):
        LevelSelector(("a", "a"))
    with pytest.raises(ConfigError, match="score"):
        LevelSelector(LEVELS, score="brier")
    assert LevelSelector(LEVELS, pinned="late").best() == "late"
    result = doctest.testmod(selector)
    assert result.attempted >= 2 and result.failed == 0
