"""Evolving neuro-fuzzy models: river's checks, kernels vs plain references, behaviour."""

from __future__ import annotations

import copy
import doctest
import pickle

import numpy as np
import pytest
from river import checks

from streamfuse.errors import ConfigError
from streamfuse.kernels import fuzzy as fk
from streamfuse.learn import neurofuzzy
from streamfuse.learn.neurofuzzy import EvolvingFuzzyClassifier, EvolvingFuzzyRegressor
from tests.naive import naive_ts_learn, naive_ts_predict

CASES = [(cls, params) for cls in (EvolvingFuzzyRegressor, EvolvingFuzzyClassifier)
         for params in cls._unit_test_params()]


@pytest.mark.parametrize(("cls", "params"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_river_estimator_checks(cls, params):
    model = cls(**params)
    ran = 0
    for check in checks.yield_checks(model):
        if check.__name__ in model._unit_test_skips():
            continue
        check(copy.deepcopy(model))
        ran += 1
    assert ran >= 25


def test_doctests():
    result = doctest.testmod(neurofuzzy)
    assert result.attempted >= 4 and result.failed == 0


# --- kernels against the plain references ------------------------------------------------------

NAIVE_PARAMS = {"radius": 0.4, "rho": 0.5, "min_radius": 0.1, "coverage": 1.5, "replace": 0.4,
                "omega": 100.0, "forget": 0.995, "utility": 0.05, "min_age": 20, "merge": 0.3,
                "rescale": 0.05}


def _kernel_params(p):
    a = np.zeros(fk.N_PARAMS)
    a[fk.P_RADIUS], a[fk.P_RHO], a[fk.P_MIN_RADIUS] = p["radius"], p["rho"], p["min_radius"]
    a[fk.P_COVERAGE], a[fk.P_REPLACE], a[fk.P_OMEGA] = p["coverage"], p["replace"], p["omega"]
    a[fk.P_FORGET], a[fk.P_UTILITY] = p["forget"], p["utility"]
    a[fk.P_MIN_AGE], a[fk.P_MERGE], a[fk.P_RESCALE] = p["min_age"], p["merge"], p["rescale"]
    return a


def _state(cap, d, n_out):
    return {"mean": np.zeros(d), "m2": np.zeros(d), "cnt": np.zeros(d),
            "ref_mean": np.zeros(d), "ref_std": np.zeros(d),
            "centers": np.zeros((cap, d)), "radii": np.ones((cap, d)),
            "scatter": np.zeros((cap, d)), "theta": np.zeros((cap, d + 1, n_out)),
            "cov": np.zeros((cap, d + 1, d + 1)), "support": np.zeros(cap),
            "birth": np.zeros(cap), "usum": np.zeros(cap), "n": 0, "k": 0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learn_kernel_matches_naive(seed):
    rng = np.random.default_rng(seed)
    cap, d, n_out, steps = 6, 3, 2, 300
    ref = _state(cap, d, n_out)
    st = copy.deepcopy(ref)
    counters = np.zeros(2, dtype=np.int64)
    params = _kernel_params(NAIVE_PARAMS)
    work = (np.zeros(d), np.zeros(cap), np.zeros(cap), np.zeros(d + 1))
    events = []
    for t in range(steps):
        # drifting clusters so rules are created, replaced, pruned and merged
        centre = rng.integers(0, 4) * 2.0 + (t / steps) * 3.0
        x = rng.normal(centre, 0.4, size=d)
        mask = rng.random(d) > 0.1
        y = np.array([np.sin(x[0]), x[1] - x[2]])
        e1 = fk.learn_kernel(x, mask, y, st["mean"], st["m2"], st["cnt"], st["ref_mean"],
                             st["ref_std"], st["centers"],
                             st["radii"], st["scatter"], st["theta"], st["cov"], st["support"],
                             st["birth"], st["usum"], counters, params, *work)
        e2 = naive_ts_learn(ref, x, mask, y, NAIVE_PARAMS)
        assert e1 == e2
        events.append(e1)
        assert counters[0] == ref["n"] and counters[1] == ref["k"]
        n = ref["n"]
        for key in ("mean", "m2", "cnt", "ref_mean", "ref_std"):
            np.testing.assert_allclose(st[key], ref[key], rtol=1e-9, atol=1e-12)
        for key in ("centers", "radii", "scatter", "theta", "cov", "support", "birth", "usum"):
            np.testing.assert_allclose(st[key][:n], ref[key][:n], rtol=1e-7, atol=1e-9)
        out = np.zeros(n_out)
        fk.predict_kernel(x, mask, st["ref_mean"], st["ref_std"], st["centers"], st["radii"],
                          st["theta"], counters, *work[:3], out)
        expect = naive_ts_predict(x, mask, ref["ref_mean"], ref["ref_std"], ref["centers"],
                                  ref["radii"], ref["theta"], n)
        np.testing.assert_allclose(out, expect, rtol=1e-8, atol=1e-10)
    assert fk.EVENT_CREATED in events and fk.EVENT_REPLACED in events


def test_predict_kernel_with_no_rule_and_empty_input():
    out = np.full(2, 7.0)
    counters = np.zeros(2, dtype=np.int64)
    e = np.zeros(0)
    fk.predict_kernel(e, np.zeros(0, np.bool_), e, e, np.zeros((3, 0)), np.zeros((3, 0)),
                      np.zeros((3, 1, 2)), counters, e, np.zeros(3), np.zeros(3), out)
    assert out.tolist() == [0.0, 0.0]
    assert naive_ts_predict([], [], [], [], np.zeros((3, 0)), np.zeros((3, 0)),
                            np.zeros((3, 1, 2)), 0) == [0.0, 0.0]


# --- behaviour -----------------------------------------------------------------------------------


def test_regressor_fits_nonlinear_function_better_than_one_linear_model():
    rng = np.random.default_rng(3)
    model = EvolvingFuzzyRegressor(radius=0.3)
    linear = EvolvingFuzzyRegressor(max_rules=1)
    errs, lin_errs = [], []
    for t in range(3000):
        a = rng.uniform(-3, 3)
        x, y = {"a": a}, abs(a) + 0.5 * np.sin(2 * a)
        if t >= 2000:
            errs.append(abs(model.predict_one(x) - y))
            lin_errs.append(abs(linear.predict_one(x) - y))
        model.learn_one(x, y)
        linear.learn_one(x, y)
    assert linear.n_rules == 1 and model.n_rules > 2
    assert np.mean(errs) < 0.1 < np.mean(lin_errs)


def _blobs(rng, n):
    centres = {"rest": (60.0, 0.3), "arith": (90.0, 0.15), "walk": (110.0, 0.25)}
    names = list(centres)
    for _ in range(n):
        c = names[rng.integers(0, 3)]
        hr, alpha = centres[c]
        yield {"ecg_hr": rng.normal(hr, 4.0), "eeg_alpha_rel": rng.normal(alpha, 0.02)}, c


def test_classifier_three_classes_and_rule_text():
    rng = np.random.default_rng(4)
    model = EvolvingFuzzyClassifier()
    hits = 0
    for t, (x, y) in enumerate(_blobs(rng, 1500)):
        if t >= 500:
            hits += model.predict_one(x) == y
        model.learn_one(x, y)
    assert hits / 1000 > 0.95
    assert set(model.classes) == {"rest", "arith", "walk"}
    proba = model.predict_proba_one({"ecg_hr": 91.0, "eeg_alpha_rel": 0.15})
    assert max(proba, key=proba.get) == "arith" and abs(sum(proba.values()) - 1) < 1e-12
    rules = model.rules()
    assert len(rules) == model.n_rules >= 3
    assert all(r.startswith("IF ecg_hr is ") and " AND eeg_alpha_rel is " in r for r in rules)
    top = model.explain_one({"ecg_hr": 91.0, "eeg_alpha_rel": 0.15}, top=2)
    assert len(top) == 2 and top[0][1] >= top[1][1]
    assert "THEN arith" in top[0][0]
    # the value in brackets is the rule centre in the feature's own units (about 90 bpm)
    hr_centre = float(top[0][0].split("ecg_hr is ")[1].split("(≈ ")[1].split(")")[0])
    assert 80.0 < hr_centre < 100.0
    # firing strengths of all rules sum to one
    every = model.explain_one({"ecg_hr": 91.0, "eeg_alpha_rel": 0.15}, top=100)
    assert len(every) == model.n_rules and abs(sum(s for _, s in every) - 1) < 1e-9
    assert len(model.rules(max_terms=1)[0].split(" AND ")) == 1


def test_max_rules_cap_and_features_appearing_later():
    rng = np.random.default_rng(5)
    model = EvolvingFuzzyRegressor(max_rules=4, coverage_radius=0.5, utility_threshold=0.0)
    for t in range(400):
        x = {f"f{j}": rng.normal(0, 5) for j in range(3 + (t >= 200) * 2)}
        model.learn_one(x, float(sum(x.values())))
        assert model.n_rules <= 4
    assert model._features == ["f0", "f1", "f2", "f3", "f4"]
    assert model._cov.shape[1:] == (6, 6)
    assert np.isfinite(model.predict_one({"f0": 1.0, "f4": 2.0}))


def test_stale_rules_are_pruned_and_close_rules_merge():
    rng = np.random.default_rng(6)
    model = EvolvingFuzzyRegressor(utility_threshold=0.05, min_age=50, merge_distance=0.0)
    for _ in range(100):  # two regions
        a = rng.choice([-5.0, 5.0]) + rng.normal(0, 0.3)
        model.learn_one({"a": a}, a)
    assert model.n_rules >= 2
    for _ in range(3000):  # only the right-hand region from now on
        a = 5.0 + rng.normal(0, 0.3)
        model.learn_one({"a": a}, a)
    mean, std = model._ref_mean[0], model._ref_std[0]
    centres = mean + std * model._centers[: model.n_rules, 0]
    assert np.all(centres > 0), centres

    merged = EvolvingFuzzyRegressor(merge_distance=20.0, coverage_radius=0.5)
    for _ in range(300):
        a = rng.normal(0, 1)
        merged.learn_one({"a": a}, a)
    assert merged.n_rules == 1


def test_learn_is_deterministic_and_pickles():
    rng = np.random.default_rng(7)
    data = [({"a": rng.normal(), "b": rng.normal()}, rng.choice(["x", "y"])) for _ in range(200)]
    m1, m2 = EvolvingFuzzyClassifier(), EvolvingFuzzyClassifier()
    for x, y in data:
        m1.learn_one(x, y)
        m2.learn_one(dict(reversed(list(x.items()))), y)
    m3 = pickle.loads(pickle.dumps(m1))
    probe = {"a": 0.3, "b": -0.2}
    assert m1.predict_proba_one(probe) == m2.predict_proba_one(probe) == m3.predict_proba_one(probe)


@pytest.mark.parametrize(("kw", "word"), [({"max_rules": 0}, "max_rules"),
                                          ({"forgetting": 1.5}, "forgetting"),
                                          ({"radius": -1.0}, "radius")])
def test_bad_params_raise_config_error(kw, word):
    with pytest.raises(ConfigError, match=word):
        EvolvingFuzzyRegressor(**kw)
    with pytest.raises(ConfigError, match="temperature"):
        EvolvingFuzzyClassifier(temperature=0.0)


def test_rescaling_keeps_the_model_function():
    rng = np.random.default_rng(8)
    d, cap = 3, 5
    mean, m2, cnt = rng.normal(size=d), rng.uniform(1, 2, d) * 50, np.full(d, 50.0)
    ref_mean, ref_std = mean + 0.3, np.sqrt(m2 / cnt) * 1.2
    centers, radii = rng.normal(size=(cap, d)), rng.uniform(0.3, 1, (cap, d))
    scatter, theta = radii**2, rng.normal(size=(cap, d + 1, 2))
    cov = np.stack([np.eye(d + 1) * 5 + 0.1 for _ in range(cap)])
    x = rng.normal(size=d)
    mask = np.ones(d, np.bool_)
    counters = np.array([cap, 0])
    before, after = np.zeros(2), np.zeros(2)
    work = (np.zeros(d), np.zeros(cap), np.zeros(cap))
    fk.predict_kernel(x, mask, ref_mean, ref_std, centers, radii, theta, counters, *work, before)
    assert fk.rescale_kernel(mean, m2, cnt, ref_mean, ref_std, centers, radii, scatter, theta,
                             cov, cap, 0.01, np.zeros(d + 1))
    np.testing.assert_allclose(ref_std, np.sqrt(m2 / cnt))
    fk.predict_kernel(x, mask, ref_mean, ref_std, centers, radii, theta, counters, *work, after)
    np.testing.assert_allclose(after, before, rtol=1e-10)
    assert not fk.rescale_kernel(mean, m2, cnt, ref_mean, ref_std, centers, radii, scatter,
                                 theta, cov, cap, 0.01, np.zeros(d + 1))
