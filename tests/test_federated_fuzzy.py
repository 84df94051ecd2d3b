"""The evolving neuro-fuzzy model's merge (issue 18): rule bases merged by centre distance,
consequents averaged (streamfuse/federated/fuzzy.py)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from streamfuse.config import EngineConfig
from streamfuse.federated.fuzzy import _check, _expand, _frame, _reframe, ets_state, load_ets
from streamfuse.federated.merge import (
    NotMergeable,
    hub_state,
    load_hub,
    load_model,
    merge_hubs,
    merge_model_states,
    model_state,
    to_wire,
)
from streamfuse.fusion.levels import FusionHub
from streamfuse.learn.models import make_model
from streamfuse.learn.neurofuzzy import EvolvingFuzzyClassifier

Row = tuple[dict[str, float], str]


def _rows(n: int, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 5.0, -1.0, 2.0]
    logit = (X - [0.0, 5.0, -1.0, 2.0]) @ np.array([1.5, -0.8, 2.0, 0.3])
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "a", "b")
    return [({f"f{j}": float(v) for j, v in enumerate(r)}, str(lab))
            for r, lab in zip(X, y, strict=True)]


def _auc(model: Any, rows: list[Row]) -> float:
    s = np.array([model.predict_proba_one(x).get("a", 0.5) for x, _ in rows])
    y = np.array([lab for _, lab in rows])
    pos, neg = s[y == "a"], s[y == "b"]
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


@pytest.fixture(scope="module")
def halves() -> tuple[Any, Any, Any, list[Row]]:
    """Pipelines (the engine's ``"neurofuzzy"``) trained on a stream's odd and even samples,
    and on all of it; held-out rows."""
    full, a, b = (make_model("neurofuzzy") for _ in range(3))
    for i, (x, lab) in enumerate(_rows(1200, 2)):
        full.learn_one(x, lab)
        (a if i % 2 else b).learn_one(x, lab)
    return a, b, full, _rows(600, 3)


def test_two_copies_of_one_model_merge_to_that_model(halves) -> None:
    a, _, _, test = halves
    s = model_state(a)
    assert s["kind"] == "neurofuzzy" and s["ets"]["centers"].shape[0] >= 2
    merged = merge_model_states([s, s], [600, 600])
    for k in ("ref_mean", "ref_std", "mean", "centers", "radii", "scatter", "theta", "cov",
              "support", "birth", "usum"):
        np.testing.assert_allclose(merged["ets"][k], s["ets"][k], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(merged["ets"]["cnt"], 2 * s["ets"]["cnt"])  # both parties'
    np.testing.assert_allclose(merged["scaler"]["var"], s["scaler"]["var"], rtol=1e-12)
    # from a shared base and nothing learnt since: the base
    same = merge_model_states([s, s], [0, 0], base=s)
    for k in ("cnt", "centers", "theta", "cov"):
        np.testing.assert_allclose(same["ets"][k], s["ets"][k], rtol=1e-12, atol=1e-12)
    m = make_model("neurofuzzy")
    load_model(m, json.loads(json.dumps(to_wire(merged))))  # travels as plain JSON
    for x, _ in test[:100]:
        assert m.predict_proba_one(x) == pytest.approx(a.predict_proba_one(x), abs=1e-12)


def test_a_rule_base_rewritten_in_another_frame_is_the_same_function(halves) -> None:
    a, b, _, test = halves
    sa, sb = _check(ets_state(a["EvolvingFuzzyClassifier"])), _check(
        ets_state(b["EvolvingFuzzyClassifier"]))
    feats, classes = sa["features"], sa["classes"]
    pa, pb = _expand(sa, feats, classes), _expand(sb, feats, classes)
    ref_mean, ref_std = _frame([pa, pb])
    assert not np.allclose(ref_mean, sa["ref_mean"])  # a different frame: the test can fail
    _reframe(pa, ref_mean, ref_std)
    moved = EvolvingFuzzyClassifier()
    load_ets(moved, {**ets_state(a["EvolvingFuzzyClassifier"]),
                     **{k: pa[k] for k in ("ref_mean", "ref_std", "centers", "radii",
                                           "scatter", "theta", "cov")}})
    scaler = a["StandardScaler"]
    for x, _ in test[:100]:
        z = scaler.transform_one(x)
        assert moved.predict_proba_one(z) == pytest.approx(
            a["EvolvingFuzzyClassifier"].predict_proba_one(z), abs=1e-9)


def test_halves_merged_approach_the_model_trained_on_all(halves) -> None:
    a, b, full, test = halves
    merged = merge_model_states([model_state(a), model_state(b)], [600, 600])
    whole = model_state(full)
    # the running statistics merge exactly
    np.testing.assert_allclose(merged["scaler"]["mean"], whole["scaler"]["mean"], rtol=1e-9)
    np.testing.assert_allclose(merged["scaler"]["var"], whole["scaler"]["var"], rtol=1e-9)
    np.testing.assert_allclose(merged["ets"]["cnt"], whole["ets"]["cnt"])
    m = make_model("neurofuzzy")
    load_model(m, merged)
    rules = m["EvolvingFuzzyClassifier"].n_rules
    assert 1 <= rules <= m["EvolvingFuzzyClassifier"].max_rules
    auc_full, auc_merged = _auc(full, test), _auc(m, test)
    auc_halves = (_auc(a, test), _auc(b, test))
    print(f"neuro-fuzzy AUC: whole stream {auc_full:.4f}, halves merged {auc_merged:.4f} "
          f"({rules} rules), halves alone {auc_halves[0]:.4f} / {auc_halves[1]:.4f}")
    assert abs(auc_merged - auc_full) < 0.02, (auc_merged, auc_full, auc_halves)
    for x, lab in test[:30]:  # the merged model goes on learning
        m.learn_one(x, lab)
    assert m["EvolvingFuzzyClassifier"].n_rules >= 1


def test_hubs_of_neurofuzzy_models_merge_and_load() -> None:
    from streamfuse.fusion.levels import Evidence

    cfg = EngineConfig(classes=("a", "b"), positive="a", selector_score="log_loss",
                       levels=("early", "intermediate", "late"))
    hubs = [FusionHub(cfg, lambda: make_model("neurofuzzy")) for _ in range(2)]
    for k, hub in enumerate(hubs):
        for x, lab in _rows(120, 10 + k):
            feats = {"eeg": {"e0": x["f0"], "e1": x["f1"]}, "ecg": {"c0": x["f2"], "c1": x["f3"]}}
            ev = Evidence(dict(x), feats, {**feats["eeg"], **feats["ecg"]}, "dev")
            hub.learn(ev, hub.decide(ev), lab)
    merged = merge_hubs([json.loads(json.dumps(to_wire(hub_state(h)))) for h in hubs], [120, 120])
    for h in hubs:
        load_hub(h, merged)
    x = {"e0": 0.1, "e1": 5.0, "c0": -1.0, "c1": 2.0}
    assert hubs[0].models["intermediate"].predict_proba_one(x) == pytest.approx(
        hubs[1].models["intermediate"].predict_proba_one(x), abs=1e-12)
    from streamfuse.federated.protocol import privatize

    with pytest.raises(ValueError, match="neuro-fuzzy"):  # DP covers logreg only: says so
        privatize(hub_state(hubs[0]), None, 1.0, 1.0, np.random.default_rng(0))


def test_what_cannot_be_merged_says_so(halves) -> None:
    a, b, _, _ = halves
    with pytest.raises(NotMergeable, match="StandardScaler | SoftmaxRegression"):
        model_state(make_model("softmax"), "level 'early'")
    with pytest.raises(NotMergeable, match="level 'late'.*HoeffdingAdaptiveTreeClassifier"):
        model_state(make_model("hoeffding"), "level 'late'")
    other = EvolvingFuzzyClassifier(max_rules=5)
    other.learn_one({"f0": 1.0}, "a")
    with pytest.raises(NotMergeable, match="hyperparameters"):
        merge_model_states([ets_state(a["EvolvingFuzzyClassifier"]), ets_state(other)], [1, 1])
    with pytest.raises(NotMergeable, match="hyperparameters"):
        load_ets(other, ets_state(a["EvolvingFuzzyClassifier"]))
    s = ets_state(a["EvolvingFuzzyClassifier"])
    with pytest.raises(NotMergeable, match="shape"):
        merge_model_states([s, dict(s, theta=s["theta"][:, :2])], [1, 1])
    with pytest.raises(NotMergeable, match="non-finite"):
        merge_model_states([s, dict(s, radii=s["radii"] * np.nan)], [1, 1])
    with pytest.raises(NotMergeable, match="cannot load"):
        load_model(make_model("lda"), model_state(b))
