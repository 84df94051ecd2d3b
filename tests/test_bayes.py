"""Bayesian late fusion: river's checks, the calibrator against a batch posterior, the
product-of-experts formula, missing modalities, and uncertainty that narrows with data."""

from __future__ import annotations

import copy
import doctest
import math
import pickle

import numpy as np
import pytest
from river import checks
from scipy import optimize

from streamfuse.errors import ConfigError
from streamfuse.fusion import bayes
from streamfuse.fusion.bayes import BayesFusionClassifier, BayesianFusion, OnlinePlatt


@pytest.mark.parametrize("params", list(BayesFusionClassifier._unit_test_params()))
def test_river_estimator_checks(params):
    model = BayesFusionClassifier(**params)
    ran = 0
    for check in checks.yield_checks(model):
        check(copy.deepcopy(model))
        ran += 1
    assert ran >= 25


def test_doctests():
    result = doctest.testmod(bayes)
    assert result.attempted >= 3 and result.failed == 0


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_online_platt_mean_approaches_the_batch_posterior_mode():
    """With no forgetting, the one-pass Bayesian update ends near the MAP of the same prior and
    likelihood fitted in batch (scipy), and its variance near the inverse Hessian there."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=3000)
    y = rng.random(3000) < 1 / (1 + np.exp(-(0.4 * z - 0.7)))  # over-confident, biased member
    cal = OnlinePlatt(prior_sd=1.0, forget=1.0)
    for zi, yi in zip(z, y, strict=True):
        cal.update(float(zi), bool(yi))

    def neg_log_post(theta):
        a, b = theta
        s = a * z + b
        return float(np.sum(np.logaddexp(0, s) - y * s) + 0.5 * ((a - 1) ** 2 + b**2))

    fit = optimize.minimize(neg_log_post, x0=[1.0, 0.0], method="BFGS")
    a, b = fit.x
    assert cal.a == pytest.approx(a, abs=0.03) and cal.b == pytest.approx(b, abs=0.05)
    p = 1 / (1 + np.exp(-(a * z + b)))
    w = p * (1 - p)
    H = np.array([[np.sum(w * z * z) + 1, np.sum(w * z)], [np.sum(w * z), np.sum(w) + 1]])
    cov = np.linalg.inv(H)
    assert cal.paa == pytest.approx(cov[0, 0], rel=0.3)
    assert cal.pbb == pytest.approx(cov[1, 1], rel=0.3)


def _members(rng, y, strength=(1.5, 1.5)):
    """Each modality: a logistic member whose log-odds are 2 * (signal + noise)."""
    out = {}
    for m, s in zip(("ecg", "eeg"), strength, strict=True):
        z = 2.0 * ((s if y else -s) + rng.normal())
        p = 1 / (1 + math.exp(-z))
        out[m] = {True: p, False: 1 - p}
    return out


def test_product_of_experts_counts_the_prior_once_and_drops_a_missing_term():
    rng = np.random.default_rng(1)
    fusion = BayesianFusion()
    for _ in range(400):
        y = bool(rng.random() < 0.3)
        fusion.learn(_members(rng, y), y)
    members = {"ecg": {True: 0.8, False: 0.2}, "eeg": {True: 0.4, False: 0.6}}
    out = fusion.fuse(members)
    # by hand, from the calibrators' means and the counts
    n_true, n_false = fusion.counts[True] + 1, fusion.counts[False] + 1
    prior = math.log(n_true / n_false)
    terms = {}
    for m, p in members.items():
        cal = fusion.calibrators[(m, True)]
        terms[m] = cal.a * math.log(p[True] / p[False]) + cal.b - prior
    assert out.prior == pytest.approx(prior)
    assert out.contributions == pytest.approx(terms)
    assert out.proba[True] == pytest.approx(_sig(prior + sum(terms.values())))
    assert out.proba[True] + out.proba[False] == pytest.approx(1.0)
    # a missing modality drops its term; one modality alone is its own calibrated decision
    alone = fusion.fuse({"ecg": members["ecg"]})
    assert set(alone.contributions) == {"ecg"}
    assert alone.proba[True] == pytest.approx(_sig(prior + terms["ecg"]))
    assert fusion.fuse({"ecg": members["ecg"], "eeg": {}}).proba == alone.proba
    # no modality at all: the prior
    assert fusion.fuse({}).proba[True] == pytest.approx(_sig(prior))


def test_fusing_two_informative_modalities_beats_each_alone():
    rng = np.random.default_rng(2)
    fusion = BayesianFusion()
    losses = {"fused": 0.0, "ecg": 0.0, "eeg": 0.0}
    for i in range(3000):
        y = bool(rng.random() < 0.5)
        members = _members(rng, y, strength=(0.8, 0.8))
        if i >= 1000:
            for key, p in (("fused", fusion.fuse(members).proba),
                           ("ecg", fusion.fuse({"ecg": members["ecg"]}).proba),
                           ("eeg", fusion.fuse({"eeg": members["eeg"]}).proba)):
                losses[key] -= math.log(max(p[y], 1e-12))
        fusion.learn(members, y)
    assert losses["fused"] < 0.9 * min(losses["ecg"], losses["eeg"])


def test_calibration_mends_an_over_confident_member():
    rng = np.random.default_rng(3)
    fusion = BayesianFusion()
    raw = cal = 0.0
    for i in range(3000):
        y = bool(rng.random() < 0.5)
        truth = 0.6 * (1 if y else -1) + rng.normal()  # true log-odds-ish signal
        p = 1 / (1 + math.exp(-4.0 * truth))  # the member says it four times too loud
        members = {"ecg": {True: p, False: 1 - p}}
        if i >= 1000:
            raw -= math.log(max(members["ecg"][y], 1e-12))
            cal -= math.log(max(fusion.fuse(members).proba[y], 1e-12))
        fusion.learn(members, y)
    assert cal < 0.8 * raw
    assert fusion.calibrators[("ecg", True)].a < 0.5


def test_uncertainty_narrows_with_more_labels():
    rng = np.random.default_rng(4)
    fusion = BayesianFusion(forget=1.0)
    probe = {"ecg": {True: 0.7, False: 0.3}, "eeg": {True: 0.6, False: 0.4}}
    widths = {}
    for i in range(1, 2001):
        y = bool(rng.random() < 0.5)
        fusion.learn(_members(rng, y, strength=(0.5, 0.5)), y)
        if i in (20, 200, 2000):
            lo, hi = fusion.fuse(probe).interval[True]
            assert lo <= fusion.fuse(probe).proba[True] <= hi
            widths[i] = hi - lo
    assert widths[20] > widths[200] > widths[2000]
    assert widths[2000] < 0.5 * widths[20]


def test_multiclass_fuses_every_class():
    rng = np.random.default_rng(5)
    model = BayesFusionClassifier()
    classes = ["rest", "arithmetic", "walk"]
    centers = {"rest": -2.0, "arithmetic": 0.0, "walk": 2.0}
    hits = 0
    for i in range(1500):
        y = classes[int(rng.integers(0, 3))]
        x = {"ecg_hr": centers[y] + rng.normal(), "acc_mag": centers[y] + rng.normal()}
        if i >= 1000:
            views = {"ecg": {"ecg_hr": x["ecg_hr"]}, "acc": {"acc_mag": x["acc_mag"]}}
            out = model.fuse_views(views)
            assert set(out.proba) == set(classes) == set(out.interval)
            assert sum(out.proba.values()) == pytest.approx(1.0)
            hits += max(out.proba, key=out.proba.get) == y
        model.learn_one(x, y)
    assert hits / 500 > 0.75


def test_pickle_roundtrip_and_bad_parameters():
    rng = np.random.default_rng(6)
    model = BayesFusionClassifier()
    for _ in range(200):
        y = bool(rng.random() < 0.5)
        model.learn_one({"ecg_hr": (1.0 if y else -1.0) + rng.normal(), "eeg_a": rng.normal()}, y)
    copy_ = pickle.loads(pickle.dumps(model))
    x = {"ecg_hr": 0.3, "eeg_a": 0.1}
    assert copy_.fuse_views({"ecg": {"ecg_hr": 0.3}, "eeg": {"eeg_a": 0.1}}) == model.fuse_views(
        {"ecg": {"ecg_hr": 0.3}, "eeg": {"eeg_a": 0.1}})
    assert copy_.predict_proba_one(x) == model.predict_proba_one(x)
    with pytest.raises(ConfigError, match="level"):
        BayesianFusion(level=1.0)
    with pytest.raises(ConfigError, match="forget"):
        BayesFusionClassifier(forget=0.0)


def test_non_finite_member_probabilities_give_no_term():
    fusion = BayesianFusion()
    rng = np.random.default_rng(7)
    for _ in range(100):
        y = bool(rng.random() < 0.5)
        fusion.learn(_members(rng, y), y)
    good = {"ecg": {True: 0.8, False: 0.2}}
    fusion.learn(good | {"eeg": {True: math.nan, False: math.nan}}, True)
    out = fusion.fuse(good | {"eeg": {True: math.inf, False: 0.0}})
    assert set(out.contributions) == {"ecg"}
    assert all(math.isfinite(v) for v in out.proba.values())
    cal = fusion.calibrators[("eeg", True)]
    assert math.isfinite(cal.a) and math.isfinite(cal.paa)
