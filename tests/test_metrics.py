"""Prequential metrics against plain references and river."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from river import metrics as rm

from streamfuse.errors import ConfigError
from streamfuse.kernels.auc import auc_kernel
from streamfuse.learn import metrics
from streamfuse.learn.metrics import PrequentialMetrics, auc
from tests.naive import naive_auc, naive_binary_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_auc_matches_pairwise_reference(seed, n):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(n), 1)  # many ties
    labels = rng.random(n) > 0.4
    got = auc(scores, labels)
    want = naive_auc(scores.tolist(), labels.tolist())
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_auc_edge_cases_and_validation():
    assert math.isnan(auc(np.zeros(0), np.zeros(0, bool)))
    assert math.isnan(auc_kernel(np.ones(3), np.ones(3, np.bool_), np.empty(3)))
    assert auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([False, True])) == 0.5
    with pytest.raises(ValueError, match="nan_to_num"):
        auc(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="equal length"):
        auc(np.zeros(3), np.zeros(2))


def test_binary_against_naive_and_river():
    rng = np.random.default_rng(3)
    m = PrequentialMetrics(positive="stress", window=100)
    # river 0.26's binary metrics score string labels as 0 here, so they get booleans
    r_auc = rm.RollingROCAUC(window_size=100)
    r_f1, r_p, r_r = rm.F1(), rm.Precision(), rm.Recall()
    truths, preds, scores = [], [], []
    for _ in range(400):
        y = "stress" if rng.random() < 0.4 else "rest"
        p = float(np.clip(rng.normal(0.65 if y == "stress" else 0.4, 0.2), 0, 1))
        proba = {"stress": p, "rest": 1 - p}
        y_pred = "stress" if p > 0.5 else "rest"
        m.update(y, proba)
        r_auc.update(y == "stress", p)
        for r in (r_f1, r_p, r_r):
            r.update(y == "stress", y_pred == "stress")
        truths.append(y)
        preds.append(y_pred)
        scores.append(p)
    got = m.get()
    ref = naive_binary_metrics(truths, preds, "stress")
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["f1"] == pytest.approx(r_f1.get()) and got["precision"] == pytest.approx(r_p.get())
    assert got["recall"] == pytest.approx(r_r.get())
    want_auc = naive_auc(scores[-100:], [t == "stress" for t in truths[-100:]])
    assert got["auc"] == pytest.approx(want_auc, abs=1e-12)
    assert got["auc"] == pytest.approx(r_auc.get(), abs=1e-9)
    assert got["n"] == 400.0


def test_macro_multiclass_against_naive():
    rng = np.random.default_rng(4)
    classes = ["a", "b", "c"]
    m = PrequentialMetrics(window=50)
    rows = []
    for _ in range(200):
        y = classes[rng.integers(0, 3)]
        w = rng.random(3) + np.array([c == y for c in classes]) * 0.5
        proba = dict(zip(classes, w / w.sum(), strict=True))
        m.update(y, proba)
        rows.append((y, proba))
    preds = [max(p, key=p.get) for _, p in rows]
    truths = [t for t, _ in rows]
    per = [naive_binary_metrics(truths, preds, c) for c in classes]
    got = m.get()
    for key in ("precision", "recall", "f1", "specificity"):
        assert got[key] == pytest.approx(np.mean([p[key] for p in per]), abs=1e-12), key
    aucs = [naive_auc([p[c] for _, p in rows[-50:]], [t == c for t, _ in rows[-50:]])
            for c in classes]
    assert got["auc"] == pytest.approx(np.mean(aucs), abs=1e-12)
    hits = [t == p for t, p in zip(truths, preds, strict=True)]
    assert got["accuracy"] == pytest.approx(np.mean(hits))
    assert got["accuracy"] == pytest.approx(m.get()["accuracy"])


def test_undefined_values_are_nan_and_config_is_checked():
    m = PrequentialMetrics(positive=True)
    got = m.get()
    assert got["n"] == 0.0 and all(math.isnan(got[k]) for k in PrequentialMetrics.KEYS)
    m.update(True, {True: 0.9, False: 0.1})
    got = m.get()
    assert got["accuracy"] == 1.0 and got["recall"] == 1.0 and math.isnan(got["specificity"])
    assert math.isnan(got["auc"])
    m.update(True, {})  # a model that cannot predict yet counts as a miss
    assert m.get()["accuracy"] == 0.5
    with pytest.raises(ConfigError, match="window"):
        PrequentialMetrics(window=0)


def test_doctests():
    result = doctest.testmod(metrics)
    assert result.attempted >= 3 and result.failed == 0


def test_a_class_appearing_late_scores_zero_where_earlier_predictions_did_not_name_it():
    rng = np.random.default_rng(5)
    m = PrequentialMetrics(window=40)
    rows = []
    for i in range(90):
        classes = ["a", "b"] if i < 30 else ["a", "b", "c"]
        y = classes[rng.integers(0, len(classes))]
        w = rng.random(len(classes))
        proba = dict(zip(classes, w / w.sum(), strict=True))
        m.update(y, proba)
        rows.append((y, proba))
        recent = rows[-40:]
        seen = sorted({c for t, p in rows for c in (t, *p)})
        aucs = [naive_auc([p.get(c, 0.0) for _, p in recent], [t == c for t, _ in recent])
                for c in seen]
        aucs = [a for a in aucs if not np.isnan(a)]
        want = np.mean(aucs) if aucs else np.nan
        got = m.get()["auc"]
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12), i


@pytest.mark.parametrize("window", [1, 255, 256, 300, 1000, 10**6])
def test_rings_grow_to_the_window_and_then_wrap(window):
    """The rings start small and double; the AUC always covers the last ``window`` pairs,
    before, across and after a growth and a wrap, as a pairwise count over them says."""
    rng = np.random.default_rng(window)
    m = PrequentialMetrics(positive="a", window=window)
    scores, truths = [], []
    for k in range(1300):
        p = float(rng.random())
        y = "a" if rng.random() < 0.3 + 0.4 * p else "b"
        m.update(y, {"a": p, "b": 1 - p})
        scores.append(p)
        truths.append(y == "a")
        if k in (0, 254, 255, 256, 299, 300, 511, 512, 999, 1000, 1299):
            last = slice(max(0, len(scores) - window), None)
            want = naive_auc(scores[last], truths[last])
            got = m.get()["auc"]
            assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want), k
