"""ScaledLogisticRegression against the river pipeline it re-implements, sample for sample."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from river import checks, linear_model, multiclass, optim, preprocessing

from streamfuse.learn.linear import ScaledLogisticRegression
from streamfuse.learn.models import make_model

CLASSES = ("rest", "stress", "exercise")


def river_pipeline(lr=0.05, l2=1e-4):
    return preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(
        linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
    )


def stream(n, seed=0, features=30, p_missing=0.1):
    """Samples whose class shifts a third of the features; some features missing per sample,
    a class that first appears late, and a feature that only exists after a while."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        y = CLASSES[rng.integers(3 if t > n // 3 else 2)]
        shift = CLASSES.index(y)
        x = {
            f"f{i}": float(rng.normal(loc=shift * (i % 3 == shift), scale=1 + i % 4))
            for i in range(features)
            if rng.random() > p_missing
        }
        if t > n // 2:
            x["late_feature"] = float(rng.normal(5.0, 2.0))
        yield x, y


@pytest.mark.parametrize(("lr", "l2"), [(0.05, 1e-4), (0.2, 0.0), (0.01, 0.1)])
def test_same_probabilities_as_the_river_pipeline(lr, l2):
    ref, ours = river_pipeline(lr, l2), ScaledLogisticRegression(lr=lr, l2=l2)
    worst, compared = 0.0, 0
    for x, y in stream(1500, seed=int(lr * 100)):
        p_ref, p_ours = ref.predict_proba_one(x), ours.predict_proba_one(x)
        assert list(p_ours) == list(p_ref)  # same classes, same order
        for c in p_ref:
            worst = max(worst, abs(p_ref[c] - p_ours[c]))
            compared += 1
        ref.learn_one(x, y)
        ours.learn_one(x, y)
    assert compared > 3000
    assert worst < 1e-12  # only summation order differs


def test_predicting_with_unseen_features_matches_and_changes_nothing():
    ref, ours = river_pipeline(), ScaledLogisticRegression()
    for x, y in stream(200):
        ref.learn_one(x, y)
        ours.learn_one(x, y)
    def state(m):
        return (m.weights, m.intercepts, m._counts.tolist(), m._means.tolist(), m._vars.tolist())

    before = state(ours)
    x = {"f1": 0.5, "never_seen": 3.0, "f2": -1.0}
    p_ref, p_ours = ref.predict_proba_one(x), ours.predict_proba_one(x)
    assert p_ours == pytest.approx(p_ref, abs=1e-12)
    assert state(ours) == before


def test_untrained_model_predicts_nothing_and_then_is_sure_of_its_only_class():
    m = ScaledLogisticRegression()
    assert m.predict_proba_one({"a": 1.0}) == {}
    m.learn_one({"a": 1.0}, "only")
    assert m.predict_proba_one({"a": 2.0}) == {"only": 1.0}


def test_pickle_resumes_identically():
    a = ScaledLogisticRegression()
    data = list(stream(400, seed=3))
    for x, y in data[:200]:
        a.learn_one(x, y)
    b = pickle.loads(pickle.dumps(a))
    for x, y in data[200:]:
        assert a.predict_proba_one(x) == b.predict_proba_one(x)
        a.learn_one(x, y)
        b.learn_one(x, y)
    assert a.weights == b.weights and a.intercepts == b.intercepts


def test_clone_is_fresh_with_the_same_parameters():
    a = ScaledLogisticRegression(lr=0.3, l2=0.01)
    for x, y in stream(50):
        a.learn_one(x, y)
    c = a.clone()
    assert (c.lr, c.l2) == (0.3, 0.01)
    assert c.classes == [] and c.predict_proba_one({"f1": 1.0}) == {}


def test_passes_river_checks():
    for params in ScaledLogisticRegression._unit_test_params():
        checks.check_estimator(ScaledLogisticRegression(**params))


def test_logreg_by_name_is_ours_and_river_logreg_is_the_pipeline():
    assert isinstance(make_model("logreg"), ScaledLogisticRegression)
    ref = make_model("river-logreg")
    ours = make_model("logreg")
    for x, y in stream(300, seed=5):
        p_ref, p_ours = ref.predict_proba_one(x), ours.predict_proba_one(x)
        assert p_ours == pytest.approx(p_ref, abs=1e-12)
        ref.learn_one(x, y)
        ours.learn_one(x, y)
