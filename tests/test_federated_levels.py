"""Merge rules of the review's levels (issue 18): attention gate, Bayesian fusion, MKL
(streamfuse/federated/levels.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from streamfuse.config import EngineConfig
from streamfuse.federated.merge import NotMergeable, hub_state, load_hub, merge_hubs, to_wire
from streamfuse.fusion.levels import Evidence, FusionHub
from streamfuse.learn.models import make_model

LEVELS = ("late", "attention", "bayes", "mkl")


def _hub(model: str = "lda") -> FusionHub:
    cfg = EngineConfig(classes=("a", "b"), positive="a", selector_score="log_loss",
                       levels=LEVELS)
    return FusionHub(cfg, lambda: make_model(model))


def _teach(hub: FusionHub, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        y = "a" if rng.random() < 0.5 else "b"
        s = 1.0 if y == "a" else -1.0
        feats = {"eeg": {"e0": s * 0.3 + rng.normal(), "e1": rng.normal()},
                 "ecg": {"c0": s + rng.normal(), "c1": rng.normal() + 2.0}}
        quality = {"eeg": {"flat": float(rng.random()), "clipped": float(rng.random() * 0.1)},
                   "ecg": {"flat": float(rng.random() * 0.2), "clipped": 0.0}}
        ev = Evidence({}, feats, {}, "dev", quality)
        hub.learn(ev, hub.decide(ev), y)


def _flat(x: Any, out: dict[str, float], path: str = "") -> dict[str, float]:
    if isinstance(x, dict):
        for k, v in x.items():
            _flat(v, out, f"{path}.{k}")
    elif isinstance(x, list | tuple | np.ndarray):
        for i, v in enumerate(np.asarray(x, dtype=object).ravel()):
            _flat(v, out, f"{path}[{i}]")
    elif isinstance(x, int | float) and not isinstance(x, bool):
        out[path] = float(x)
    return out


def test_a_round_where_one_site_learnt_gives_the_central_levels() -> None:
    base_hub = _hub()
    _teach(base_hub, 150, 1)
    base = hub_state(base_hub)
    assert set(base["levels"]) == {"attention", "bayes", "mkl"}
    a, idle, central = (copy.deepcopy(base_hub) for _ in range(3))
    _teach(a, 40, 2)
    _teach(central, 40, 2)
    merged = merge_hubs([json.loads(json.dumps(to_wire(hub_state(a)))), hub_state(idle)],
                        [40, 0], base)
    load_hub(idle, merged)
    got, want = (_flat(to_wire(hub_state(h))["levels"], {}) for h in (idle, central))
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
    assert got != _flat(to_wire(base)["levels"], {})  # the round moved them: the test can fail


def test_two_copies_merge_to_that_model_and_two_sites_to_one() -> None:
    h = _hub()
    _teach(h, 120, 3)
    s = hub_state(h)
    merged = merge_hubs([s, s], [120, 120])["levels"]
    gate, bayes, mkl = s["levels"]["attention"], s["levels"]["bayes"], s["levels"]["mkl"]
    assert merged["attention"]["bias"] == pytest.approx(gate["bias"])
    assert merged["attention"]["coef"]["eeg"] == pytest.approx(gate["coef"]["eeg"])
    n, mean, m2 = merged["attention"]["moments"]["ecg"]["flat"]
    assert (n, mean, m2) == pytest.approx((2 * gate["moments"]["ecg"]["flat"][0],
                                           gate["moments"]["ecg"]["flat"][1],
                                           2 * gate["moments"]["ecg"]["flat"][2]))
    for got, want in zip(merged["bayes"]["calibrators"], bayes["calibrators"], strict=True):
        assert got[:2] == want[:2] and got[2:] == pytest.approx(want[2:], rel=1e-12)
    assert merged["bayes"]["counts"] == pytest.approx({c: 2 * v for c, v in
                                                       bayes["counts"].items()})
    for m in ("eeg", "ecg"):
        np.testing.assert_allclose(merged["mkl"]["modalities"][m]["W"],
                                   mkl["modalities"][m]["W"], rtol=1e-12)
        np.testing.assert_allclose(merged["mkl"]["losses"][m], mkl["losses"][m], rtol=1e-12)
    other = _hub()
    _teach(other, 80, 4)
    both = merge_hubs([s, hub_state(other)], [120, 80])
    load_hub(other, both)
    load_hub(h, both)  # the two hubs now decide alike on every level (class orders may differ)
    ev = Evidence({}, {"eeg": {"e0": 0.2, "e1": -1.0}, "ecg": {"c0": 0.7, "c1": 2.5}}, {},
                  "dev", {"eeg": {"flat": 0.3, "clipped": 0.01}, "ecg": {"flat": 0.1,
                                                                        "clipped": 0.0}})
    va, vb = h.decide(ev), other.decide(ev)
    for lv in LEVELS:
        assert va.levels[lv] == pytest.approx(vb.levels[lv], abs=1e-12), lv


def test_levels_that_cannot_merge_say_so_and_dp_keeps_them_local() -> None:
    from streamfuse.federated.levels import merge_bayes, merge_mkl
    from streamfuse.federated.protocol import privatize

    h = _hub()
    _teach(h, 60, 5)
    s = hub_state(h)["levels"]
    with pytest.raises(NotMergeable, match="seed"):
        merge_mkl([s["mkl"], dict(s["mkl"], hyper=[1, *s["mkl"]["hyper"][1:]])], [1, 1])
    with pytest.raises(NotMergeable, match="forget"):
        merge_bayes([s["bayes"], dict(s["bayes"], forget=0.5)], [1, 1])
    with pytest.raises(NotMergeable, match="shape"):
        bad = copy.deepcopy(s["mkl"])
        bad["modalities"]["eeg"]["mean"] = bad["modalities"]["eeg"]["mean"][:1]
        merge_mkl([s["mkl"], bad], [1, 1])
    with pytest.raises(NotMergeable, match="unknown level"):
        merge_hubs([dict(hub_state(h), levels={"nope": {}})], [1])
    # DP covers the members and the Hedge losses only: the review's levels are not sent
    lr = _hub("logreg")
    _teach(lr, 30, 6)
    assert "levels" in hub_state(lr)
    priv = privatize(hub_state(lr), None, 1.0, 1.0, np.random.default_rng(0))
    assert "levels" not in priv


def test_a_sites_update_with_every_level_holds_no_sample_and_no_device() -> None:
    """The message-inspection check of only parameters leaving a site, for a hub running the
    review's levels too: no device id, and no number equal to a feature or quality value the
    site learnt from."""
    from types import SimpleNamespace

    from streamfuse.federated.client import ClientSettings, FederatedClient

    hub = _hub()
    rng = np.random.default_rng(7)
    taught: set[float] = set()
    for _ in range(50):
        y = "a" if rng.random() < 0.5 else "b"
        feats = {"eeg": {"e0": float(rng.normal()), "e1": float(rng.normal())},
                 "ecg": {"c0": float(rng.normal()), "c1": float(rng.normal())}}
        quality = {m: {"flat": float(rng.random()), "clipped": float(rng.random())}
                   for m in feats}
        taught.update(v for f in (*feats.values(), *quality.values()) for v in f.values())
        ev = Evidence({}, feats, {}, "dev-secret-7", quality)
        hub.learn(ev, hub.decide(ev), y)
    site = SimpleNamespace(hub=hub, counters={"learned": 50})
    payload = FederatedClient(site, ClientSettings("mqtt://x", "f", "s1")).update(1)
    text = payload.decode()
    msg = json.loads(text)
    assert set(msg["state"]["levels"]) == {"attention", "bayes", "mkl"}
    assert "dev-secret-7" not in text
    numbers = set(_flat(msg, {}).values())
    assert not taught & numbers
