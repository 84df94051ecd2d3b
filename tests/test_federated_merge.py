"""Model merging (issue 18): FedAvg of every learner state the engine shares."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamfuse.config import EngineConfig
from streamfuse.features import OnlineNormalizer
from streamfuse.federated.merge import (
    NotMergeable,
    fingerprint,
    hub_state,
    load_hub,
    load_logreg,
    load_normalizer,
    logreg_state,
    merge_hubs,
    merge_logreg,
    merge_normalizers,
    model_state,
    normalizer_state,
    to_wire,
)
from streamfuse.fusion.levels import FusionHub
from streamfuse.learn.linear import ScaledLogisticRegression
from streamfuse.learn.models import make_model


def _stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * [1.0, 2.0, 0.5, 3.0, 1.0] + [0.0, 5.0, -1.0, 2.0, 0.0]
    w = np.array([1.5, -0.8, 2.0, 0.3, 0.0])
    logit = (X - [0.0, 5.0, -1.0, 2.0, 0.0]) @ w
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "a", "b")
    return X, y


def _train(X: np.ndarray, y: np.ndarray, model: ScaledLogisticRegression | None = None):
    m = model or ScaledLogisticRegression()
    for row, label in zip(X, y, strict=True):
        m.learn_one({f"f{j}": float(v) for j, v in enumerate(row)}, str(label))
    return m


def _auc(model: ScaledLogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    s = np.array([model.predict_proba_one({f"f{j}": float(v) for j, v in enumerate(r)})["a"]
                  for r in X])
    pos, neg = s[y == "a"], s[y == "b"]
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def test_two_copies_of_one_model_merge_to_that_model() -> None:
    X, y = _stream(400, 1)
    m = _train(X, y)
    s = logreg_state(m)
    merged = merge_logreg([s, s], [400, 400])
    for k in ("means", "vars", "W", "b"):
        np.testing.assert_allclose(merged[k], s[k], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(merged["counts"], 2 * s["counts"])  # both parties' examples
    # from a shared base (the previous round) and nothing learnt since: exactly the base
    same = merge_logreg([s, s], [0, 0], base=s)
    assert fingerprint(same) == fingerprint(s)
    m2 = ScaledLogisticRegression()
    load_logreg(m2, merged)
    x = {f"f{j}": float(v) for j, v in enumerate(X[0])}
    assert m2.predict_proba_one(x) == pytest.approx(m.predict_proba_one(x), abs=1e-12)


def test_halves_merged_approach_the_model_trained_on_all() -> None:
    X, y = _stream(4000, 2)
    Xt, yt = _stream(2000, 3)
    full = _train(X, y)
    a, b = _train(X[::2], y[::2]), _train(X[1::2], y[1::2])
    merged = merge_logreg([logreg_state(a), logreg_state(b)], [2000, 2000])
    # the scalers merge exactly: the population mean/variance of all 4000 samples
    np.testing.assert_allclose(merged["means"], X.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(merged["vars"], X.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(merged["means"], logreg_state(full)["means"], rtol=1e-9)
    m = ScaledLogisticRegression()
    load_logreg(m, merged)
    wf, wm = logreg_state(full)["W"][0], merged["W"][0]
    cos = float(wf @ wm / np.linalg.norm(wf) / np.linalg.norm(wm))
    auc_full, auc_merged, auc_half = _auc(full, Xt, yt), _auc(m, Xt, yt), _auc(a, Xt, yt)
    print(f"logreg: weights' cosine with the whole stream's {cos:.4f}; held-out AUC whole "
          f"{auc_full:.4f}, halves merged {auc_merged:.4f}, one half {auc_half:.4f}")
    assert cos > 0.99, cos
    assert abs(auc_merged - auc_full) < 0.01, (auc_merged, auc_full, auc_half)


def test_rounds_from_a_shared_base_count_the_base_once() -> None:
    X, _ = _stream(900, 4)
    norms = [OnlineNormalizer(), OnlineNormalizer()]
    base = None
    for r in range(3):  # three rounds, each party learns its own 150 samples per round
        for k, norm in enumerate(norms):
            for row in X[r * 300 + k * 150: r * 300 + (k + 1) * 150]:
                norm.learn_one({f"f{j}": float(v) for j, v in enumerate(row)})
        base = merge_normalizers([normalizer_state(n) for n in norms], base)
        for n in norms:
            load_normalizer(n, base)
    assert base is not None
    np.testing.assert_allclose(base["count"], 900)
    np.testing.assert_allclose(base["mean"], X.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(base["m2"] / 900, X.var(axis=0), rtol=1e-9)
    assert norms[0].count("f0") == 900


def _hub(cfg: EngineConfig) -> FusionHub:
    return FusionHub(cfg, lambda: make_model("logreg"))


def _teach(hub: FusionHub, X: np.ndarray, y: np.ndarray) -> None:
    from streamfuse.fusion.levels import Evidence

    for row, label in zip(X, y, strict=True):
        feats = {"eeg": {f"e{j}": float(v) for j, v in enumerate(row[:3])},
                 "ecg": {f"c{j}": float(v) for j, v in enumerate(row[3:])}}
        ev = Evidence({f"x{j}": float(v) for j, v in enumerate(row)}, feats,
                      {**feats["eeg"], **feats["ecg"]}, "dev")
        hub.learn(ev, hub.decide(ev), str(label))


def test_hub_states_merge_and_load_and_travel_as_json() -> None:
    cfg = EngineConfig(classes=("a", "b"), positive="a", selector_score="log_loss")
    X, y = _stream(600, 5)
    h1, h2 = _hub(cfg), _hub(cfg)
    _teach(h1, X[:300], y[:300])
    _teach(h2, X[300:], y[300:])
    s1, s2 = hub_state(h1), hub_state(h2)
    wire = json.loads(json.dumps(to_wire(s1)))  # plain JSON, no pickle
    merged = merge_hubs([wire, s2], [300, 300])
    assert set(merged["models"]) == {"early", "intermediate"}
    assert set(merged["late"]["models"]) == {"eeg", "ecg"}
    for h in (h1, h2):
        load_hub(h, merged)
    assert fingerprint(hub_state(h1)) == fingerprint(hub_state(h2))
    assert merged["late"]["losses"]["eeg"] == pytest.approx(
        (s1["late"]["losses"]["eeg"] + s2["late"]["losses"]["eeg"]) / 2)
    assert h1.selector.scores()["early"] == pytest.approx(
        (s1["selector"]["mean"]["early"] + s2["selector"]["mean"]["early"]) / 2)


def test_unmergeable_learners_and_bad_states_are_named() -> None:
    with pytest.raises(NotMergeable, match="HoeffdingAdaptiveTreeClassifier"):
        model_state(make_model("hoeffding"), "level 'early'")
    with pytest.raises(NotMergeable, match="level 'early'"):
        hub_state(FusionHub(EngineConfig(selector_score="log_loss"),
                            lambda: make_model("softmax")))
    good = logreg_state(_train(*_stream(50, 6)))
    bad = dict(good, W=np.zeros((3, 3)))
    with pytest.raises(NotMergeable, match="shape"):
        merge_logreg([good, bad], [1, 1])
    with pytest.raises(NotMergeable, match="non-finite"):
        merge_logreg([good, dict(good, b=np.array([np.nan, 0.0]))], [1, 1])
    with pytest.raises(NotMergeable, match="weights"):
        merge_logreg([good, good], [1, -1])
    with pytest.raises(NotMergeable, match="auc"):
        from streamfuse.federated.merge import selector_state

        selector_state(_hub(EngineConfig(selector_score="auc")).selector)


def test_an_untrained_model_travels_as_json() -> None:
    s = json.loads(json.dumps(to_wire(logreg_state(ScaledLogisticRegression()))))
    merged = merge_logreg([s, s], [0, 0])
    assert merged["W"].shape == (0, 0) and merged["classes"] == []


def test_diagonal_lda_halves_merge_to_the_whole_stream_exactly() -> None:
    from streamfuse.federated.merge import lda_state, load_model, merge_lda

    X, y = _stream(3000, 7)
    rows = [({f"f{j}": float(v) for j, v in enumerate(r)}, str(lab)) for r, lab in zip(X, y,
                                                                                     strict=True)]
    full, a, b = make_model("lda"), make_model("lda"), make_model("lda")
    for i, (x, lab) in enumerate(rows):
        full.learn_one(x, lab)
        (a if i % 2 else b).learn_one(x, lab)
    merged = merge_lda([lda_state(a), lda_state(b)], [1500, 1500])
    whole = lda_state(full)
    order = [merged["classes"].index(c) for c in whole["classes"]]
    for k in ("n", "mu", "m2"):
        np.testing.assert_allclose(merged[k][order], whole[k], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(merged["seen"][order], whole["seen"])
    m = make_model("lda")
    load_model(m, json.loads(json.dumps(to_wire(merged))))
    for x, _ in rows[:20]:  # the discriminants (before the learnt temperature) agree
        assert m.decision(x) == pytest.approx(full.decision(x), rel=1e-9)


def test_hedge_losses_merge_as_accumulators_from_the_base() -> None:
    """Late fusion's Hedge loss is a discounted sum, not an estimate: a round in which one
    site learnt gives exactly that site's (the central) state; with two sites the base is
    discounted once and each site's increment added."""
    import copy

    from streamfuse.federated.merge import late_state, merge_late

    cfg = EngineConfig(classes=("a", "b"), positive="a", selector_score="log_loss")
    X, y = _stream(400, 8)
    hub = FusionHub(cfg, lambda: make_model("lda"))
    _teach(hub, X[:200], y[:200])
    base = late_state(hub.late)
    a, idle, central = (copy.deepcopy(hub) for _ in range(3))
    _teach(a, X[200:230], y[200:230])
    _teach(central, X[200:230], y[200:230])
    merged = merge_late([late_state(a.late), late_state(idle.late)], [30, 0], base)
    want = late_state(central.late)
    assert merged["losses"] == pytest.approx(want["losses"], rel=1e-12)
    for m in ("eeg", "ecg"):  # the members too (same class and feature order here)
        for k in ("n", "mu", "m2", "seen"):
            np.testing.assert_allclose(merged["models"][m][k], want["models"][m][k], rtol=1e-12)
        assert merged["models"][m]["log_a"] == pytest.approx(want["models"][m]["log_a"])
    b = copy.deepcopy(hub)
    _teach(b, X[230:250], y[230:250])
    sa, sb = late_state(a.late), late_state(b.late)
    merged = merge_late([sa, sb], [30, 20], base)
    d = base["discount"]
    for m in ("eeg", "ecg"):
        b0 = base["losses"][m]
        assert merged["losses"][m] == pytest.approx(
            d**50 * b0 + (sa["losses"][m] - d**30 * b0) + (sb["losses"][m] - d**20 * b0))
    with pytest.raises(NotMergeable, match="discount"):
        merge_late([sa, dict(sb, discount=0.5)], [1, 1], base)
