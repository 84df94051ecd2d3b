"""Quality-aware modality attention: river's checks, the gate's gradient, and what it learns."""

from __future__ import annotations

import copy
import doctest
import math
import pickle
import random

import numpy as np
import pytest
from river import checks

from streamfuse.errors import ConfigError
from streamfuse.fusion import attention, standardize, views
from streamfuse.fusion.attention import AttentionFusionClassifier, ModalityGate


@pytest.mark.parametrize("params", list(AttentionFusionClassifier._unit_test_params()))
def test_river_estimator_checks(params):
    model = AttentionFusionClassifier(**params)
    ran = 0
    for check in checks.yield_checks(model):
        check(copy.deepcopy(model))
        ran += 1
    assert ran >= 25


def test_doctests():
    for module in (attention, views, standardize):
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0


def _mixture_loss(bias, coef, members, quality, y):
    """-log sum_m softmax(b_m + a_m . q_m) p_m(y), from the definition."""
    mods = sorted(members)
    s = [bias[m] + sum(coef[m][k] * quality[m][k] for k in coef[m]) for m in mods]
    z = sum(math.exp(v) for v in s)
    return -math.log(sum(math.exp(s[i]) / z * members[m][y] for i, m in enumerate(mods)))


def test_gate_step_is_the_gradient_of_the_mixture_log_loss():
    rng = random.Random(4)
    gate = ModalityGate(lr=1e-6, l2=0.0, standardize=False)
    members = {"ecg": {"a": 0.7, "b": 0.3}, "eeg": {"a": 0.2, "b": 0.8},
               "acc": {"a": 0.5, "b": 0.5}}
    quality = {m: {"flat": rng.random(), "gap": rng.random()} for m in members}
    gate.learn(members, quality, "a")  # creates the parameters at 0 (a step from 0, too)
    for m in members:
        gate.bias[m] = rng.uniform(-1, 1)
        for k in gate.coef[m]:
            gate.coef[m][k] = rng.uniform(-1, 1)
    bias, coef = dict(gate.bias), copy.deepcopy(gate.coef)
    gate.learn(members, quality, "a")
    h = 1e-6
    for m in members:
        b2 = dict(bias)
        b2[m] += h
        numeric = (_mixture_loss(b2, coef, members, quality, "a")
                   - _mixture_loss(bias, coef, members, quality, "a")) / h
        assert (bias[m] - gate.bias[m]) / 1e-6 == pytest.approx(numeric, rel=1e-3, abs=1e-6)
        for k in coef[m]:
            c2 = copy.deepcopy(coef)
            c2[m][k] += h
            numeric = (_mixture_loss(bias, c2, members, quality, "a")
                       - _mixture_loss(bias, coef, members, quality, "a")) / h
            assert (coef[m][k] - gate.coef[m][k]) / 1e-6 == pytest.approx(
                numeric, rel=1e-3, abs=1e-6)


def _stream(n, seed, noise_eeg=True):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        y = "arithmetic" if rng.random() < 0.5 else "rest"
        s = 1.0 if y == "arithmetic" else -1.0
        x = {"ecg_hr": s + 0.7 * rng.normal(), "ecg_rmssd": -0.5 * s + rng.normal()}
        if noise_eeg:
            x |= {f"eeg_b{j}": rng.normal() for j in range(6)}
        yield x, y


def test_gate_learns_to_down_weight_a_modality_of_pure_noise():
    model = AttentionFusionClassifier()
    eeg_weights = []
    for i, (x, y) in enumerate(_stream(1500, seed=0)):
        if i >= 1300:
            _, w, _ = model.attend(views.split_views(x)[0])
            eeg_weights.append(w["eeg"])
        model.learn_one(x, y)
    assert np.mean(eeg_weights) < 0.15
    assert model.gate.bias["ecg"] > model.gate.bias["eeg"]


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_gate_trusts_a_modality_less_in_the_windows_its_quality_says_are_bad(scale):
    """eeg is the better modality when clean, confidently wrong when corrupted (30 % of the
    windows, flagged by its ``beyond`` index, whatever that index's scale); ecg is fair
    throughout."""
    rng = np.random.default_rng(1)
    gate = ModalityGate(lr=0.1)
    corrupted_w, clean_w = [], []
    for i in range(3000):
        y = "a" if rng.random() < 0.5 else "b"
        other = "b" if y == "a" else "a"
        bad = rng.random() < 0.3
        p_ecg = 0.7
        p_eeg = 0.15 if bad else 0.9
        members = {"ecg": {y: p_ecg, other: 1 - p_ecg}, "eeg": {y: p_eeg, other: 1 - p_eeg}}
        quality = {"ecg": {"flat": 0.0}, "eeg": {"beyond": scale * ((0.8 if bad else 0.05)
                                                           + 0.05 * rng.random())}}
        if i >= 2500:
            w = gate.weights(quality, members)["eeg"]
            (corrupted_w if bad else clean_w).append(w)
        gate.learn(members, quality, y)
    assert np.mean(clean_w) > 0.6
    assert np.mean(corrupted_w) < 0.2
    assert gate.coef["eeg"]["beyond"] < 0


def test_missing_modality_has_weight_zero_and_others_renormalise():
    model = AttentionFusionClassifier()
    for x, y in _stream(200, seed=2):
        model.learn_one(x, y)
    x = {"ecg_hr": 1.0, "ecg_rmssd": -0.5}
    proba, w, members = model.attend(views.split_views(x)[0])
    assert w == {"ecg": 1.0} and set(members) == {"ecg"}
    assert proba == pytest.approx(members["ecg"])
    # nothing present: no decision (not a crash)
    assert model.attend({})[0] == {} and model.predict_proba_one({}) == {}
    gate = ModalityGate()
    assert gate.combine({"ecg": {}, "eeg": {}}, {}) == ({}, {})


def test_quality_keys_reach_the_gate_not_the_members():
    model = AttentionFusionClassifier()
    for x, y in _stream(50, seed=3, noise_eeg=False):
        model.learn_one(x | {"ecg_q_flat": 0.0}, y)
    assert "flat" in model.gate.coef["ecg"]
    member = model.members["ecg"]
    assert "ecg_q_flat" not in member._columns


def test_pickle_roundtrip_predicts_the_same_and_learning_is_deterministic():
    a, b = AttentionFusionClassifier(), AttentionFusionClassifier()
    for x, y in _stream(300, seed=5):
        a.learn_one(x, y)
        b.learn_one(x, y)
    c = pickle.loads(pickle.dumps(a))
    for x, _ in _stream(20, seed=6):
        assert a.predict_proba_one(x) == b.predict_proba_one(x) == c.predict_proba_one(x)


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="lr"):
        ModalityGate(lr=0.0)
    with pytest.raises(ConfigError, match="l2"):
        AttentionFusionClassifier(l2=-1.0)


def test_standardised_inputs_follow_the_running_moments():
    gate = ModalityGate()
    members = {"ecg": {"a": 0.9, "b": 0.1}, "eeg": {"a": 0.5, "b": 0.5}}
    values = [0.01, 0.03, 0.02, 0.06]
    assert gate._inputs("eeg", {"clipped": 0.5}) == {"clipped": 0.0}  # nothing seen yet
    for v in values:
        gate.learn(members, {"eeg": {"clipped": v}}, "a")
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert gate._inputs("eeg", {"clipped": 0.04}) == pytest.approx({"clipped": (0.04 - mean) / sd})
    assert gate._inputs("eeg", {"clipped": 10.0}) == {"clipped": 5.0}  # clipped to ±5
    gate.learn(members, {"eeg": {"flat": 0.0}}, "a")
    gate.learn(members, {"eeg": {"flat": 0.0}}, "a")
    assert gate._inputs("eeg", {"flat": 3.0}) == {"flat": 0.0}  # has not varied yet


def test_non_finite_quality_counts_as_absent():
    gate = ModalityGate()
    members = {"ecg": {"a": 0.9, "b": 0.1}, "eeg": {"a": 0.5, "b": 0.5}}
    for _ in range(20):
        gate.learn(members, {"ecg": {"flat": 0.2}}, "a")
    w = gate.weights({"ecg": {"flat": math.nan}}, members)
    assert all(math.isfinite(v) for v in w.values()) and sum(w.values()) == pytest.approx(1.0)
    gate.learn(members, {"ecg": {"flat": math.inf}}, "a")
    assert math.isfinite(gate.coef["ecg"]["flat"])


def test_a_member_with_non_finite_probabilities_counts_as_absent():
    gate = ModalityGate()
    members = {"ecg": {"a": 0.9, "b": 0.1}, "eeg": {"a": math.nan, "b": 0.5}}
    proba, w = gate.combine(members, {})
    assert w == {"ecg": 1.0} and proba == pytest.approx({"a": 0.9, "b": 0.1})
    gate.learn(members, {}, "a")
    assert all(math.isfinite(v) for v in gate.bias.values())
