"""The array lane of the fusion levels: FeatureVector, ScaledLogisticRegression's ``*_vector``
methods against its dict API, and FusionHub.decide_many against decide one window at a time."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from streamfuse.config import EngineConfig
from streamfuse.fusion.levels import Evidence, FusionHub
from streamfuse.learn.linear import ScaledLogisticRegression
from streamfuse.learn.models import make_model
from streamfuse.learn.vector import FeatureVector

CLASSES = ("rest", "stress", "exercise")


def test_feature_vector_reads_as_the_dict_it_stands_for() -> None:
    x = FeatureVector(("b", "a", "c"), np.array([1.5, -2.0, 0.25]))
    assert list(x) == ["b", "a", "c"] and len(x) == 3
    assert x == {"b": 1.5, "a": -2.0, "c": 0.25} and list(x.items())[0] == ("b", 1.5)
    assert "a" in x and "z" not in x and x.get("z") is None
    back = pickle.loads(pickle.dumps(x))
    assert back == x and back.names == x.names and type(back) is FeatureVector
    assert FeatureVector((), np.zeros(0)) == {} and not FeatureVector((), np.zeros(0))


def _stream(n: int, seed: int = 0):
    """Samples over mostly one layout, some with a feature missing, a class that first
    appears late and a feature that only exists after a while."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        y = CLASSES[rng.integers(3 if t > n // 3 else 2)]
        names = [f"f{i}" for i in range(12) if not (t % 7 == 3 and i == 5)]
        if t > n // 2:
            names.append("late")
        v = rng.normal(CLASSES.index(y) * 0.5, 1.0, len(names))
        yield FeatureVector(tuple(names), v), y


def test_the_lane_is_the_dict_api_bit_for_bit() -> None:
    lane, ref = ScaledLogisticRegression(), ScaledLogisticRegression()
    twin = ScaledLogisticRegression()  # trained by predict_learn_vector
    for x, y in _stream(300):
        want = ref.predict_proba_one(x.as_dict())
        assert lane.predict_proba_vector(x) == want
        assert lane.predict_proba_named(x) == {str(c): p for c, p in want.items()}
        rows = lane.predict_proba_named_rows(x.names, np.stack([x.array, x.array]))
        assert rows == [lane.predict_proba_named(x)] * 2
        p_y = twin.predict_learn_vector(x, y)
        assert p_y == (float(want.get(y, 0.0)) if want else None)
        ref.learn_one(dict(x.as_dict()), y)
        lane.learn_vector(x, y)
    for name in ("_W", "_b", "_means", "_vars", "_counts"):
        np.testing.assert_array_equal(getattr(lane, name), getattr(ref, name))
        np.testing.assert_array_equal(getattr(twin, name), getattr(ref, name))
    assert lane.classes == ref.classes == twin.classes


def _evidence(rng: np.random.Generator, device: str, t: int) -> Evidence:
    """One window's inputs as the hub makes them: a modality missing now and then, a device
    whose ECG has a feature the others lack, one plain-dict window."""
    shift = (t // 5) % 3
    layout = {
        "acc": [f"acc_{i}" for i in range(4)],
        "ecg": [f"ecg_{i}" for i in range(3)] + (["ecg_x"] if device == "d3" else []),
        "eeg": [] if (t + int(device[1:])) % 6 == 0 else [f"eeg_{i}" for i in range(6)],
    }
    feats = {
        m: FeatureVector(tuple(k), rng.normal(shift, 1.0, len(k))) for m, k in layout.items() if k
    }
    names = tuple(n for m in sorted(feats) for n in feats[m].names)
    flat = FeatureVector(names, np.concatenate([feats[m].array for m in sorted(feats)]))
    early = FeatureVector(tuple(f"e{i}" for i in range(5)), rng.normal(shift, 1.0, 5))
    if device == "d5":  # the river dict API at the edge: plain dicts decide as well
        return Evidence(
            early.as_dict(), {m: f.as_dict() for m, f in feats.items()}, flat.as_dict(), device
        )
    return Evidence(early, dict(feats), flat, device)


@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(),
        EngineConfig(member_smoothing=3.0, levels=("early", "intermediate", "late", "bayes")),
        EngineConfig(late_combine="vote", conformal_target=None),
    ],
    ids=["default", "smoothing-bayes", "vote"],
)
def test_decide_many_equals_deciding_one_window_at_a_time(config: EngineConfig) -> None:
    rng = np.random.default_rng(3)
    hub = FusionHub(config, lambda: make_model(config.model))
    devices = [f"d{i}" for i in range(7)]
    for t in range(40):  # trained on some windows first
        for d in devices[:4]:
            e = _evidence(rng, d, t)
            hub.learn(e, hub.decide(e), CLASSES[(t // 5) % 3], float(t))
    batch = [_evidence(rng, d, t) for t in range(40, 46) for d in devices]
    one, many = copy.deepcopy(hub), copy.deepcopy(hub)
    want = [one.decide(e) for e in batch]
    got = many.decide_many(batch)
    assert got == want
    assert [list(v.members) for v in got] == [list(v.members) for v in want]
    assert any(v.levels["early"] for v in got) and any(not v.members.get("eeg") for v in got)
    # and the two hubs stay the same afterwards (the smoother's per-device state included)
    e = _evidence(rng, "d1", 46)
    assert one.decide(e) == many.decide(e)
    assert many.decide_many([]) == []
