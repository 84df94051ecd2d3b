"""Online multiple kernel learning: river's checks, the random features against the kernel
they approximate, Hedge weights, missing modalities, seeding."""

from __future__ import annotations

import copy
import doctest
import math
import pickle

import numpy as np
import pytest
from river import checks

from streamfuse.errors import ConfigError
from streamfuse.fusion import mkl
from streamfuse.fusion.mkl import OnlineMKLClassifier, _ModalityExperts
from streamfuse.learn.linear import ScaledLogisticRegression


@pytest.mark.parametrize("params", list(OnlineMKLClassifier._unit_test_params()))
def test_river_estimator_checks(params):
    model = OnlineMKLClassifier(**params)
    ran = 0
    for check in checks.yield_checks(model):
        check(copy.deepcopy(model))
        ran += 1
    assert ran >= 25


def test_doctests():
    result = doctest.testmod(mkl)
    assert result.attempted >= 3 and result.failed == 0


def test_random_features_approximate_the_gaussian_kernel():
    """z(x) . z(x') ~ exp(-gamma ||x - x'||^2 / d) for z-scored x (Rahimi and Recht)."""
    rng = np.random.default_rng(0)
    d, D = 5, 4000
    ex = _ModalityExperts("eeg", 2, D, entropy=7)
    data = rng.normal(size=(400, d))
    ex.cols({f"f{j}": 0.0 for j in range(d)}, add=True)
    ex.count[:d] = data.shape[0]  # the z-scoring moments of the data
    ex.mean[:d] = data.mean(axis=0)
    ex.m2[:d] = ((data - data.mean(axis=0)) ** 2).sum(axis=0)
    gammas = np.array([0.3, 2.0])
    for _ in range(10):
        a, b = rng.normal(size=d), rng.normal(size=d)
        za = ex.features(*ex.cols({f"f{j}": a[j] for j in range(d)}, add=False),
                         np.sqrt(2 * gammas))
        zb = ex.features(*ex.cols({f"f{j}": b[j] for j in range(d)}, add=False),
                         np.sqrt(2 * gammas))
        sa = (a - ex.mean[:d]) / np.sqrt(ex.m2[:d] / ex.count[:d])
        sb = (b - ex.mean[:d]) / np.sqrt(ex.m2[:d] / ex.count[:d])
        for k, g in enumerate(gammas):
            want = math.exp(-g * float(np.sum((sa - sb) ** 2)) / d)
            assert float(za[k, :D] @ zb[k, :D]) == pytest.approx(want, abs=0.06)


def _ring(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        a, b = rng.normal(size=2)
        y = "arithmetic" if a * a + b * b > 1.4 else "rest"
        yield {"ecg_a": a, "ecg_b": b, "eeg_n0": rng.normal(), "eeg_n1": rng.normal()}, y


def test_kernels_learn_what_a_linear_model_cannot():
    model, linear = OnlineMKLClassifier(seed=0), ScaledLogisticRegression()
    hits = {"mkl": 0, "linear": 0}
    for i, (x, y) in enumerate(_ring(2000, seed=1)):
        if i >= 1000:
            hits["mkl"] += model.predict_one(x) == y
            hits["linear"] += linear.predict_one(x) == y
        model.learn_one(x, y)
        linear.learn_one(x, y)
    assert hits["mkl"] / 1000 > 0.85
    assert hits["linear"] / 1000 < 0.7
    w = model.modality_weights()
    assert w["ecg"] > 0.9 and sum(w.values()) == pytest.approx(1.0)
    kw = model.kernel_weights()
    assert set(kw) == {f"{m}:{g}" for m in ("ecg", "eeg") for g in ("0.1", "1", "10")}
    assert sum(kw.values()) == pytest.approx(1.0)


def test_a_missing_modality_takes_no_part():
    model = OnlineMKLClassifier(seed=0)
    for x, y in _ring(300, seed=2):
        model.learn_one(x, y)
    losses = {m: v.copy() for m, v in model.losses.items()}
    proba, weights = model.predict_views({"ecg": {"ecg_a": 0.1, "ecg_b": 2.0}})
    assert set(weights) == {"ecg:0.1", "ecg:1", "ecg:10"}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert sum(proba.values()) == pytest.approx(1.0)
    model.learn_one({"ecg_a": 0.1, "ecg_b": 2.0}, "arithmetic")
    assert np.array_equal(model.losses["eeg"], losses["eeg"])  # eeg neither scored nor learnt
    assert not np.array_equal(model.losses["ecg"], losses["ecg"])
    assert model.predict_views({}) == ({}, {})


def test_seeding_pickling_and_bad_parameters():
    runs = []
    for seed in (3, 3, 4):
        model = OnlineMKLClassifier(seed=seed)
        for x, y in _ring(200, seed=5):
            model.learn_one(x, y)
        runs.append(model)
    x = {"ecg_a": 0.5, "ecg_b": -0.2, "eeg_n0": 0.0, "eeg_n1": 1.0}
    assert runs[0].predict_proba_one(x) == runs[1].predict_proba_one(x)
    assert runs[0].predict_proba_one(x) != runs[2].predict_proba_one(x)
    back = pickle.loads(pickle.dumps(runs[0]))
    assert back.predict_proba_one(x) == runs[0].predict_proba_one(x)
    unseeded = OnlineMKLClassifier()
    for x2, y in _ring(50, seed=6):
        unseeded.learn_one(x2, y)
    restored = pickle.loads(pickle.dumps(unseeded))
    assert restored.predict_proba_one(x) == unseeded.predict_proba_one(x)
    with pytest.raises(ConfigError, match="gammas"):
        OnlineMKLClassifier(gammas=(1.0, -1.0))
    with pytest.raises(ConfigError, match="discount"):
        OnlineMKLClassifier(discount=0.0)


def test_non_finite_values_and_unseen_features_do_not_poison_the_model():
    model = OnlineMKLClassifier(seed=0)
    for x, y in _ring(100, seed=7):
        model.learn_one(x, y)
    model.learn_one({"ecg_a": math.nan, "ecg_b": math.inf, "eeg_n0": 0.0}, "rest")
    p = model.predict_proba_one({"ecg_a": 0.0, "ecg_b": 0.0, "ecg_new": 5.0})
    assert all(math.isfinite(v) for v in p.values()) and sum(p.values()) == pytest.approx(1.0)
    ecg = model.experts["ecg"]
    assert np.isfinite(ecg.W).all() and np.isfinite(ecg.mean).all()


def _kernel_case(rng, n_cols=7, D=16, K=3, rows=3):
    G = rng.normal(size=(D, n_cols + 2))
    cols = rng.permutation(n_cols)[: int(rng.integers(1, n_cols + 1))].astype(np.int64)
    vals = rng.normal(size=cols.size) * 3
    if cols.size > 2:
        vals[1] = rng.choice([np.nan, np.inf])
    count = rng.integers(0, 4, size=n_cols + 2).astype(float)
    mean = rng.normal(size=n_cols + 2)
    m2 = rng.random(n_cols + 2) * count
    m2[0] = 0.0  # a feature that has not varied
    scales = np.sqrt(2 * rng.random(K) * 5)
    offsets = rng.uniform(0, 2 * np.pi, size=(K, D))
    W = rng.normal(size=(K, rows, D + 1))
    return G, cols, vals, count, mean, m2, n_cols, scales, offsets, W


@pytest.mark.parametrize("seed", range(8))
def test_kernels_match_the_numpy_references(seed):
    from streamfuse.kernels import mkl as kern
    from tests import naive_mkl as ref

    rng = np.random.default_rng(seed)
    G, cols, vals, count, mean, m2, n_cols, scales, offsets, W = _kernel_case(rng)
    K, D = offsets.shape
    Z = np.empty((K, D + 1))
    kern.rff_features(G, cols, vals, count, mean, m2, n_cols, scales, offsets, np.empty(D), Z)
    want = ref.naive_features(G, cols, vals, count, mean, m2, n_cols, scales, offsets)
    np.testing.assert_allclose(Z, want, rtol=1e-12, atol=1e-12)
    for n_classes in (1, 3, 4):  # fewer, as many and more classes than W has rows
        P = np.empty((K, n_classes))
        kern.softmax_proba(W, Z, n_classes, P)
        np.testing.assert_allclose(P, ref.naive_proba(W, Z, n_classes), rtol=1e-12)
    y, lr, l2 = int(rng.integers(0, 3)), 0.3, 1e-3
    c2, mu2, s2, W2, losses_want = ref.naive_learn(G, cols, vals, count, mean, m2, n_cols,
                                                   scales, offsets, W, 3, y, lr, l2, 1e-6)
    losses = np.empty(K)
    kern.learn_step(G, cols, vals, count, mean, m2, n_cols, scales, offsets, W, 3, y, lr, l2,
                    1e-6, np.empty(D), np.empty((K, D + 1)), np.empty((K, 3)), losses)
    for got, want_ in ((count, c2), (mean, mu2), (m2, s2), (W, W2), (losses, losses_want)):
        np.testing.assert_allclose(got, want_, rtol=1e-10, atol=1e-12)
