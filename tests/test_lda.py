"""DiagonalLDA against a plain-Python reference, sample for sample, and as a river model."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from river import checks

from streamfuse.learn.lda import DiagonalLDA
from streamfuse.learn.models import make_model
from tests.naive_lda import NaiveDiagonalLDA

CLASSES = ("rest", "stress", "exercise")


def stream(n, seed=0, features=12, p_missing=0.15):
    """Class-shifted features on very different scales, some missing or NaN per sample, a
    third class that first appears late and a feature that only exists after a while."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        y = CLASSES[rng.integers(3 if t > n // 3 else 2)]
        shift = CLASSES.index(y)
        x = {
            f"f{i}": float(
                rng.normal(loc=shift * (i % 3 == shift) * 10 ** (i % 4), scale=10 ** (i % 4))
            )
            for i in range(features)
            if rng.random() > p_missing
        }
        if t % 17 == 0 and x:
            x[next(iter(x))] = math.nan
        if t > n // 2:
            x["late_feature"] = float(rng.normal(5.0, 2.0))
        yield x, y


@pytest.mark.parametrize(("var_floor", "temperature_lr"), [(1e-6, 0.05), (1e-2, 0.3)])
def test_same_probabilities_as_the_plain_reference(var_floor, temperature_lr):
    ref = NaiveDiagonalLDA(var_floor, temperature_lr)
    ours = DiagonalLDA(var_floor, temperature_lr)
    worst, compared = 0.0, 0
    for x, y in stream(250, seed=int(temperature_lr * 10)):
        p_ref, p_ours = ref.predict_proba_one(x), ours.predict_proba_one(x)
        assert list(p_ours) == list(p_ref)
        for c in p_ref:
            worst = max(worst, abs(p_ref[c] - p_ours[c]))
            compared += 1
        ref.learn_one(x, y)
        ours.learn_one(x, y)
    assert compared > 500
    assert worst < 1e-9


def test_learns_a_shift_hidden_among_noise_features():
    rng = np.random.default_rng(1)
    m = DiagonalLDA()
    right = 0
    for t in range(600):
        y = "a" if rng.random() < 0.5 else "b"
        x = {f"noise{i}": float(rng.normal(0, 1 + i)) for i in range(20)}
        x["signal"] = float(rng.normal(1.0 if y == "b" else 0.0, 0.5))
        if t >= 300:
            p = m.predict_proba_one(x)
            right += max(p, key=p.get) == y
        m.learn_one(x, y)
    assert right > 0.75 * 300


def test_unseen_features_change_nothing_and_untrained_model_predicts_nothing():
    m = DiagonalLDA()
    assert m.predict_proba_one({"a": 1.0}) == {}
    m.learn_one({"a": 1.0}, "only")
    assert m.predict_proba_one({"a": 2.0}) == {"only": 1.0}
    for x, y in stream(100):
        m.learn_one(x, y)
    x = {"f1": 0.5, "f2": -1.0}
    before = m.predict_proba_one(x)
    assert m.predict_proba_one({**x, "never_seen": 3.0}) == pytest.approx(before, abs=1e-15)
    assert m.predict_proba_one(x) == before
    assert set(m.decision(x)) == set(before)


def test_pickle_resumes_identically():
    a = DiagonalLDA()
    data = list(stream(300, seed=3))
    for x, y in data[:150]:
        a.learn_one(x, y)
    b = pickle.loads(pickle.dumps(a))
    for x, y in data[150:]:
        assert a.predict_proba_one(x) == b.predict_proba_one(x)
        a.learn_one(x, y)
        b.learn_one(x, y)


def test_passes_river_checks_and_is_named_lda():
    for params in DiagonalLDA._unit_test_params():
        checks.check_estimator(DiagonalLDA(**params))
    assert isinstance(make_model("lda"), DiagonalLDA)
