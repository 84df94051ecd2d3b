"""Adaptive conformal prediction sets: coverage recovering after a shift, the finite-sample
guarantee with late labels, and the sets themselves."""

from __future__ import annotations

import doctest
import math
from collections import deque

import numpy as np
import pytest

from streamfuse.errors import ConfigError
from streamfuse.fusion import conformal
from streamfuse.fusion.conformal import AdaptiveConformal, PredictionSet


def test_doctests():
    result = doctest.testmod(conformal)
    assert result.attempted >= 3 and result.failed == 0


def _shifted(n, shift_at, seed):
    """Binary probabilities from a model that degrades at ``shift_at`` (its signal halves and
    its noise doubles), with the labels."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        y = "arithmetic" if rng.random() < 0.5 else "rest"
        s, sd = (1.5, 0.8) if t < shift_at else (0.5, 1.6)
        z = (s if y == "arithmetic" else -s) + sd * rng.normal()
        p = 1.0 / (1.0 + math.exp(-2.0 * z))
        yield {"arithmetic": p, "rest": 1.0 - p}, y


def _run(aci, stream, delay=0):
    """Decide every window, learn each label ``delay`` windows later; 1 per covered window."""
    pending: deque = deque()
    hits = []
    for proba, y in stream:
        made = aci.predict(proba)
        hits.append(y in made.classes)
        pending.append((proba, y, made))
        if len(pending) > delay:
            aci.learn(*pending.popleft())
    while pending:
        aci.learn(*pending.popleft())
    return np.array(hits, dtype=float)


def test_coverage_recovers_after_a_mid_stream_shift():
    n, shift = 6000, 3000
    aci = AdaptiveConformal(target=0.9, gamma=0.01, window=500)
    # the same sets without adaptation, calibrated on everything seen (split conformal)
    static = AdaptiveConformal(target=0.9, gamma=0.0, window=100_000)
    hits = _run(aci, _shifted(n, shift, seed=0), delay=5)
    stale = _run(static, _shifted(n, shift, seed=0), delay=5)
    assert hits[:shift].mean() == pytest.approx(0.9, abs=0.02)
    # right after the shift both miss more; the adaptive one recovers, the static one not
    assert hits[shift : shift + 200].mean() < 0.89
    assert hits[shift + 1000 :].mean() == pytest.approx(0.9, abs=0.02)
    assert stale[shift + 1000 :].mean() < 0.86
    assert aci.metrics()["coverage"] == pytest.approx(hits.mean())


@pytest.mark.parametrize("delay", [0, 1, 25])
def test_miss_rate_bound_holds_with_late_labels_on_any_sequence(delay):
    """Gibbs and Candès (2021), Prop. 4.1, with alpha_t's excursion widened by the delay:
    |misses / T - alpha| <= (max(alpha_1, 1 - alpha_1) + gamma (d + 1)) / (gamma T)."""
    rng = np.random.default_rng(delay)
    gamma, target, T = 0.02, 0.8, 3000

    def adversarial():
        for t in range(T):  # probabilities that carry no information, then lie
            p = rng.random()
            y = "a" if (rng.random() < 0.5 if t < T // 2 else p < 0.5) else "b"
            yield {"a": p, "b": 1.0 - p}, y

    aci = AdaptiveConformal(target=target, gamma=gamma, window=200)
    hits = _run(aci, adversarial(), delay=delay)
    alpha = 1.0 - target
    bound = (max(alpha, 1.0 - alpha) + gamma * (delay + 1)) / (gamma * T)
    assert abs((1.0 - hits.mean()) - alpha) <= bound
    assert -gamma * (delay + 1) <= aci.alpha_t <= 1.0 + gamma * (delay + 1)


def test_sets_at_the_extremes_and_in_between():
    aci = AdaptiveConformal(target=0.9)
    proba = {"rest": 0.7, "arithmetic": 0.3}
    first = aci.predict(proba)
    assert first.classes == ("arithmetic", "rest") and first.abstains  # nothing learnt: all
    for _ in range(200):
        aci.learn(proba, "rest", aci.predict(proba))
    assert aci.predict(proba).classes == ("rest",)
    aci.alpha_t = 1.2
    assert aci.predict(proba) == PredictionSet((), 1.2, -math.inf)
    aci.alpha_t = -0.1
    assert aci.predict(proba).classes == ("arithmetic", "rest")
    # a class known from labels but absent from the probabilities has probability 0
    aci.alpha_t = 0.1
    assert "walk" not in aci.predict({"rest": 1.0}).classes
    aci.learn({"rest": 1.0}, "walk", aci.predict({"rest": 1.0}))
    assert aci.predict({"rest": 1.0, "walk": 0.0}).classes == aci.predict({"rest": 1.0}).classes


def test_metrics_count_sets_and_sizes():
    aci = AdaptiveConformal(target=0.9, gamma=0.0)
    assert math.isnan(aci.metrics()["coverage"])
    both = PredictionSet(("a", "b"), 0.1, math.inf)
    one = PredictionSet(("a",), 0.1, 0.5)
    empty = PredictionSet((), 0.1, -math.inf)
    for made, y in ((both, "a"), (one, "b"), (empty, "a"), (one, "a")):
        aci.learn({"a": 0.6, "b": 0.4}, y, made)
    m = aci.metrics()
    assert m["coverage"] == 0.5 and m["mean_set_size"] == 1.0
    assert m["abstain_rate"] == 0.25 and m["empty_rate"] == 0.25 and m["n"] == 4.0
    assert set(m) == {"target", "coverage", "mean_set_size", "abstain_rate", "empty_rate",
                      "alpha", "n"}


def test_score_window_is_bounded_and_sorted():
    aci = AdaptiveConformal(window=50)
    rng = np.random.default_rng(9)
    for _ in range(500):
        p = float(rng.random())
        aci.learn({"a": p, "b": 1 - p}, "a", aci.predict({"a": p, "b": 1 - p}))
    assert len(aci._sorted) == len(aci._recent) == 50
    assert aci._sorted == sorted(aci._recent)


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="target"):
        AdaptiveConformal(target=1.0)
    with pytest.raises(ConfigError, match="gamma"):
        AdaptiveConformal(gamma=-0.1)
    with pytest.raises(ConfigError, match="window"):
        AdaptiveConformal(window=0)


def test_non_finite_probabilities_neither_enter_a_set_nor_the_scores():
    aci = AdaptiveConformal(target=0.8)
    for _ in range(50):
        aci.learn({"a": 0.9, "b": 0.1}, "a", aci.predict({"a": 0.9, "b": 0.1}))
    made = aci.predict({"a": math.nan, "b": 0.2})
    assert "a" not in made.classes
    n_scores = len(aci._sorted)
    aci.learn({"a": math.nan, "b": 0.2}, "a", made)
    assert len(aci._sorted) == n_scores and aci.n == 51
