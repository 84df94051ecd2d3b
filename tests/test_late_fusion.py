"""Late fusion: per-modality models, Hedge weights, missing modalities (acceptance 4)."""

from __future__ import annotations

import doctest
import math
import pickle

import numpy as np
import pytest
from river import linear_model, preprocessing

from streamfuse.errors import ConfigError
from streamfuse.fusion import late
from streamfuse.fusion.late import LateFusion
from streamfuse.learn.neurofuzzy import EvolvingFuzzyClassifier


def _stream(rng, n):
    """ecg is informative, eeg weakly, acc is noise."""
    for _ in range(n):
        y = "stress" if rng.random() < 0.5 else "rest"
        s = 1.0 if y == "stress" else 0.0
        yield {
            "ecg": {"hr": 70 + 20 * s + rng.normal(0, 4)},
            "eeg": {"alpha": 0.3 - 0.05 * s + rng.normal(0, 0.05)},
            "acc": {"mag": rng.normal(1.0, 0.1)},
        }, y


def _trained(combine="weighted", n=600):
    rng = np.random.default_rng(0)
    fusion = LateFusion(lambda m: EvolvingFuzzyClassifier(), combine=combine)
    for x, y in _stream(rng, n):
        fusion.learn(x, y)
    return fusion


def test_weights_follow_online_performance():
    fusion = _trained()
    w = fusion.weights()
    assert set(w) == {"ecg", "eeg", "acc"} and sum(w.values()) == pytest.approx(1.0)
    assert w["ecg"] > w["eeg"] > w["acc"]
    assert fusion.losses["ecg"] < fusion.losses["eeg"] < fusion.losses["acc"]
    proba, used = fusion.predict_proba({"ecg": {"hr": 92.0}, "eeg": {"alpha": 0.25},
                                        "acc": {"mag": 1.0}})
    assert max(proba, key=proba.get) == "stress"
    assert sum(proba.values()) == pytest.approx(1.0)
    # the combination is the weighted average of the members' probabilities
    members = {m: fusion.models[m].predict_proba_one(x) for m, x in
               {"ecg": {"hr": 92.0}, "eeg": {"alpha": 0.25}, "acc": {"mag": 1.0}}.items()}
    assert proba["stress"] == pytest.approx(sum(used[m] * members[m]["stress"] for m in used))


def test_missing_modality_still_predicts_renormalises_and_learns_nothing():
    fusion = _trained()
    full = fusion.weights()
    x = {"ecg": {"hr": 95.0}, "acc": {"mag": 1.0}}  # eeg is missing
    proba, used = fusion.predict_proba(x)
    assert set(used) == {"ecg", "acc"} and sum(used.values()) == pytest.approx(1.0)
    ratio = full["ecg"] / full["acc"]
    assert used["ecg"] / used["acc"] == pytest.approx(ratio)
    assert max(proba, key=proba.get) == "stress"
    eeg_before = pickle.dumps(fusion.models["eeg"])
    eeg_loss = fusion.losses["eeg"]
    ecg_before = pickle.dumps(fusion.models["ecg"])
    fusion.learn({**x, "eeg": {}}, "stress")  # an empty dict counts as missing too
    assert pickle.dumps(fusion.models["eeg"]) == eeg_before
    assert fusion.losses["eeg"] == eeg_loss
    assert pickle.dumps(fusion.models["ecg"]) != ecg_before


def test_vote_mode_counts_decisions():
    fusion = _trained("vote", n=300)
    proba, used = fusion.predict_proba({"ecg": {"hr": 95.0}, "eeg": {"alpha": 0.20},
                                        "acc": {"mag": 1.0}})
    assert used == pytest.approx({"ecg": 1 / 3, "eeg": 1 / 3, "acc": 1 / 3})
    assert all(math.isclose(v * 3, round(v * 3)) for v in proba.values())
    assert proba.get("stress", 0) >= 2 / 3


def test_nothing_to_say_before_learning_and_new_modality_starts_fair():
    fusion = LateFusion(
        lambda m: preprocessing.StandardScaler() | linear_model.LogisticRegression()
    )
    assert fusion.predict_proba({"ecg": {"hr": 1.0}}) == ({}, {})
    assert fusion.predict_one({"ecg": {"hr": 1.0}}) is None
    fusion.learn({"ecg": {"hr": 1.0}}, True)
    fusion.learn({"ecg": {"hr": 2.0}}, False)
    fusion.learn({"ecg": {"hr": 2.0}, "eeg": {"a": 0.1}}, False)
    assert fusion.losses["eeg"] != 0.0 and set(fusion.models) == {"ecg", "eeg"}


def test_config_errors_and_doctest():
    with pytest.raises(ConfigError, match="combine"):
        LateFusion(lambda m: None, combine="max")
    with pytest.raises(ConfigError, match="discount"):
        LateFusion(lambda m: None, discount=0.0)
    result = doctest.testmod(late)
    assert result.attempted >= 2 and result.failed == 0
