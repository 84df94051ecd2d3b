"""Fusion levels side by side in the engine: early input, late fusion with a missing modality
(issue 5 item 4), the selector's choice recomputed on the simulators' stream (item 5), metrics,
neuro-fuzzy rules and a river model at every level."""

from __future__ import annotations

import json
import math
import pickle
from collections import deque
from collections.abc import Mapping

import numpy as np
import pytest
from river import naive_bayes

from simulators import LABEL, FaultProfile, SimulatedDevice
from streamfuse import topics
from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.errors import ConfigError
from streamfuse.features import OnlineNormalizer
from streamfuse.fusion.early import ArrayNormalizer, EarlyFeatures
from streamfuse.types import FusedWindow, Label, Prediction, RawMessage, Window
from tests.streams import device_messages

LEVELS = ("early", "intermediate", "late")


def _preds(outputs: list) -> list[Prediction]:
    return [o for o in outputs if isinstance(o, Prediction)]


def _argmax(p: dict[str, float]) -> str | None:
    return min(p, key=lambda c: (-p[c], c)) if p else None


# --------------------------------------------------------------------------- early input
def _naive_early(x: np.ndarray, m: np.ndarray, segments: int) -> dict[int, list[float]]:
    """Plain loops: per channel, over valid samples only."""
    out: dict[int, list[float]] = {}
    k = x.shape[0]
    edges = [int(v) for v in np.linspace(0, k, segments + 1)]
    for c in range(x.shape[1]):
        valid = [i for i in range(k) if m[i, c]]
        if len(valid) < 2:
            continue
        mean = sum(float(x[i, c]) for i in valid) / len(valid)
        row = []
        for s in range(segments):
            vs = [float(x[i, c]) - mean for i in valid if edges[s] <= i < edges[s + 1]]
            mu = sum(vs) / len(vs)
            row.append(math.log10(sum((v - mu) ** 2 for v in vs) / len(vs) + 1e-12))
        pairs = [i for i in range(1, k) if m[i, c] and m[i - 1, c]]
        d = [float(x[i, c]) - float(x[i - 1, c]) for i in pairs]
        row.append(math.log10(sum(abs(v) for v in d) / len(d) + 1e-12))
        row.append(sum((x[i, c] - mean) * (x[i - 1, c] - mean) < 0 for i in pairs) / len(pairs))
        var_x = sum((float(x[i, c]) - mean) ** 2 for i in valid) / len(valid)
        var_d = sum(v * v for v in d) / len(d)
        row.append(math.log10(math.sqrt(var_d / (var_x + 1e-12)) + 1e-12))
        out[c] = row
    return out


def test_early_statistics_match_plain_loops_and_honour_the_mask() -> None:
    rng = np.random.default_rng(0)
    k = 64
    x = (rng.standard_normal((k, 3)) * [1.0, 50.0, 0.01]).astype(np.float32)
    m = np.ones((k, 3), dtype=bool)
    m[10:30, 0] = False  # a gap in channel 0
    m[:, 2] = False  # channel 2's modality is missing
    x[10:30, 0] = 1e6  # garbage under the mask must not leak in
    w = Window("d", 0.0, 1.0, float(k), {}, {})
    fused = FusedWindow(w, x, ("a:x", "b:y", "c:z"), m)
    got = EarlyFeatures(segments=4)(fused)
    ref = _naive_early(x.astype(np.float64), m, 4)
    assert not any(key.startswith("c:z") for key in got)  # missing modality: no inputs
    names = [f"lv{s}" for s in range(4)] + ["ll", "zc", "mob"]
    for c, ch in ((0, "a:x"), (1, "b:y")):
        for j, n in enumerate(names):
            assert got[f"{ch}.{n}"] == pytest.approx(ref[c][j], rel=1e-9, abs=1e-9), (ch, n)


def test_array_normalizer_equals_online_normalizer() -> None:
    rng = np.random.default_rng(1)
    arr, ref = ArrayNormalizer(warmup=3), OnlineNormalizer(warmup=3)
    for _ in range(30):
        v = rng.standard_normal(4) * [1, 10, 100, 0]
        v[rng.random(4) < 0.2] = np.nan
        z = arr.update_transform(("layout",), v)
        d = {f"k{i}": float(v[i]) for i in range(4) if np.isfinite(v[i])}
        ref.learn_one(d)
        zr = ref.transform_one(d)
        for i in range(4):
            if np.isfinite(v[i]):
                assert z[i] == pytest.approx(zr[f"k{i}"], abs=1e-9)
            else:
                assert np.isnan(z[i])


# --------------------------------------------------------------------------- config
def test_config_rejects_unknown_levels_and_pins() -> None:
    with pytest.raises(ConfigError, match="levels"):
        EngineConfig(levels=("early", "middle"))
    with pytest.raises(ConfigError, match="level="):
        EngineConfig(levels=("early",), level="late")
    with pytest.raises(ConfigError, match="selector_score"):
        EngineConfig(selector_score="brier")


# --------------------------------------------------------------------------- issue 5 item 4
def _without(msgs, modality: str, t0: float, t1: float):
    """Drop ``modality``'s messages arriving in [t0, t1) (the device stopped sending it)."""
    return [
        (m, now) for m, now in msgs if not (m.topic.endswith("/" + modality) and t0 <= now < t1)
    ]


def test_late_fusion_skips_a_missing_modality_in_the_engine() -> None:
    msgs = _without(device_messages("a", 60, seed=11), "acc", 1025.0, 1045.0)
    engine = Engine()
    late = engine.hub.late
    kinds: dict[int, tuple[str, ...]] = {}
    checked_combination = checked_frozen = 0
    for msg, now in msgs:
        is_label = msg.topic.endswith("/" + topics.LABEL)
        before = pickle.dumps(late.models.get("acc")), late.losses.get("acc")
        ecg_before = pickle.dumps(late.models.get("ecg"))
        learned = engine.counters["learned"]
        out = _preds(engine.push(msg, now))
        new = engine.counters["learned"] - learned
        if is_label and new:
            windows = [idx for _, idx, _ in list(engine.outcomes)[-new:]]
            if all("acc" not in kinds[i] for i in windows):
                # the missing model learned nothing from those windows; the others did
                assert pickle.dumps(late.models["acc"]) == before[0]
                assert late.losses["acc"] == before[1]
                assert pickle.dumps(late.models["ecg"]) != ecg_before
                checked_frozen += 1
        for p in out:
            kinds[p.index] = p.modalities
            if "acc" in p.modalities or not p.levels["late"]:
                continue
            # still predicts from the rest, weights renormalised over them (Hedge, eta = 1)
            assert set(p.modality_proba) == {"ecg", "eeg"}
            assert p.levels["intermediate"]
            best = min(late.losses[m] for m in ("ecg", "eeg"))
            raw = {m: math.exp(-(late.losses[m] - best)) for m in ("ecg", "eeg")}
            w = {m: v / sum(raw.values()) for m, v in raw.items()}
            for c, v in p.levels["late"].items():
                mix = sum(w[m] * p.modality_proba[m].get(c, 0.0) for m in w)
                assert v == pytest.approx(mix, abs=1e-12)
            checked_combination += 1
    assert checked_combination >= 10 and checked_frozen >= 10
    # acc came back and learned again
    assert "acc" in kinds[max(kinds)] or "acc" in kinds[max(kinds) - 2]


# --------------------------------------------------------------------------- issue 5 item 5
def _log_loss(p: dict[str, float], y: str) -> float:
    return -math.log(max(p.get(y, 0.0), 1e-15))


def test_selector_publishes_the_level_with_the_best_recent_score_on_the_simulators() -> None:
    horizon = 15
    # figures refreshed after every label, so the published selector scores are current
    config = EngineConfig(selector_horizon=horizon, positive="stress", metrics_refresh_s=0.0)
    engine = Engine(config)
    device = SimulatedDevice("dev000", seed=3, faults=FaultProfile())
    said: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    recent = {lv: deque(maxlen=horizon) for lv in LEVELS}
    history: list[tuple[dict[str, dict[str, float]], str]] = []
    published: list[str] = []
    seen = 0
    for ev in device.events(300.0):
        out = _preds(engine.push(ev.payload, ev.send_time))
        if ev.kind == LABEL:  # labels resolve windows before the tick closes new ones
            new = engine.counters["learned"] - seen
            seen += new
            for dev, idx, y in list(engine.outcomes)[len(engine.outcomes) - new :]:
                levels = said[(dev, idx)]
                history.append((levels, y))
                for lv in LEVELS:
                    if levels[lv]:
                        recent[lv].append(_log_loss(levels[lv], y))
        else:
            assert engine.counters["learned"] == seen
        for p in out:
            said[(p.device, p.index)] = {lv: dict(v) for lv, v in p.levels.items()}
            means = {lv: (sum(q) / len(q) if q else math.nan) for lv, q in recent.items()}
            ranked = [lv for lv in LEVELS if not math.isnan(means[lv])]
            expected = (
                min(ranked, key=lambda lv: (means[lv], LEVELS.index(lv))) if ranked else (LEVELS[0])
            )
            assert p.level == expected, (p.index, means)
            assert p.proba == p.levels[p.level]
            for lv in ranked:
                assert p.metrics[f"selector.{lv}"] == pytest.approx(means[lv], rel=1e-12)
            published.append(p.level)
    assert len(history) > 250
    # the choice is a real one: the levels' scores differed and the published level changed
    assert len(set(published[40:])) >= 2
    # per-level prequential accuracy in the metrics equals the recomputation
    final = engine.metrics()
    for lv in LEVELS:
        scored = [(levels[lv], y) for levels, y in history if levels[lv]]
        acc = sum(_argmax(p) == y for p, y in scored) / len(scored)
        assert final[f"{lv}.accuracy"] == pytest.approx(acc, abs=1e-12)
        assert final[f"{lv}.n"] == len(scored)
    assert {"ecg.auc", "eeg.auc", "acc.auc", "selected.auc", "late.f1"} <= set(final)


# --------------------------------------------------------------------------- models
def _run(engine: Engine, msgs) -> list[Prediction]:
    out = _preds(engine.push_many(msgs))
    return out + engine.flush()


@pytest.mark.parametrize("level", LEVELS)
def test_neurofuzzy_runs_at_every_level_and_publishes_its_rules(level: str) -> None:
    engine = Engine(EngineConfig(model="neurofuzzy", level=level))
    preds = _run(engine, device_messages("a", 40, seed=21))
    late = preds[-15:-1]
    assert all(p.level == level and p.model == "neurofuzzy" for p in late)
    assert all(p.levels[lv] for p in late for lv in LEVELS)  # the other levels run too
    assert all(1 <= len(p.rules) <= 3 and p.rules[0].startswith(("IF ", "[")) for p in late)
    if level == "late":
        assert all(p.rules[0].split("]")[0][1:] in ("ecg", "eeg", "acc") for p in late)
    right = sum(
        p.label == ("calm" if ((p.t_start - 1000) // 10) % 2 == 0 else "busy") for p in late
    )
    assert right / len(late) > 0.6


def test_any_river_classifier_can_be_configured() -> None:
    engine = Engine(model_factory=naive_bayes.GaussianNB)
    preds = _run(engine, device_messages("a", 40, seed=22))
    assert {p.model for p in preds} == {"GaussianNB"}
    assert isinstance(engine.hub.models["early"], naive_bayes.GaussianNB)
    assert all(isinstance(m, naive_bayes.GaussianNB) for m in engine.hub.late.models.values())
    assert set(engine.hub.late.models) == {"ecg", "eeg", "acc"}
    assert all(p.rules == () for p in preds)
    m = engine.metrics()
    assert all(m[f"{lv}.accuracy"] > 0.6 for lv in LEVELS)


def test_prediction_json_carries_every_level_and_finite_metrics() -> None:
    preds = _run(Engine(), device_messages("a", 30, seed=23))
    d = preds[-3].to_json_dict()
    text = json.dumps(d, allow_nan=False)  # strict JSON: no NaN in metrics
    back = json.loads(text)
    assert set(back["levels"]) == set(LEVELS)
    assert set(back["modality_proba"]) == {"ecg", "eeg", "acc"}
    assert back["proba"] == back["levels"][back["level"]]
    assert {"early.accuracy", "intermediate.auc", "late.n", "selected.accuracy"} <= set(
        back["metrics"]
    )


def test_label_on_raw_topic_and_unlabelled_windows_teach_nothing() -> None:
    msgs = [m for m in device_messages("a", 20, seed=24) if not m[0].topic.endswith("label")]
    engine = Engine()
    preds = _run(engine, msgs)
    assert preds and all(not any(p.levels.values()) for p in preds)
    assert engine.metrics() == {}
    # one late label covering everything teaches every window once, in order
    lab = Label("a", -5.0, 30.0, "calm")
    from streamfuse import codec

    engine2 = Engine()
    engine2.push_many(msgs)
    engine2.push(RawMessage(topics.label_topic("streamfuse", "a"), codec.encode_label(lab)), 1030.0)
    idx = [i for _, i, _ in engine2.outcomes]
    assert idx == sorted(idx) and len(idx) >= 15


def test_published_metrics_refresh_at_most_once_per_metrics_refresh_s() -> None:
    """The figures in each prediction (rolling AUCs, which cost ~0.1 ms each after every label
    of a whole fleet, and the selector's scores) are recomputed together at most once per
    ``metrics_refresh_s`` of gateway time, by the labels learnt: when they are, they equal an
    engine that recomputes after every label, and until the next refresh every prediction
    carries that same mapping. The published level itself is always current."""
    device = SimulatedDevice("dev000", seed=4, faults=FaultProfile())
    events = list(device.events(90.0))
    every = Engine(EngineConfig(metrics_refresh_s=0.0))
    lazy = Engine(EngineConfig(metrics_refresh_s=5.0))

    changes: list[float] = []
    last: Mapping[str, float] | None = None
    every_changes, every_last = 0, None
    for ev in events:
        a = _preds(every.push(ev.payload, ev.send_time))
        b = _preds(lazy.push(ev.payload, ev.send_time))
        assert [(p.device, p.index, p.level, p.proba) for p in a] == [
            (p.device, p.index, p.level, p.proba) for p in b
        ]
        for pa, pb in zip(a, b, strict=True):
            if pa.metrics != every_last:
                every_changes, every_last = every_changes + 1, pa.metrics
            if pb.metrics != last:
                assert pb.metrics == pa.metrics  # recomputed now: the current figures
                changes.append(ev.send_time)
                last = pb.metrics
    assert len(changes) >= 10
    # refreshed by labels >= 5 s apart; a prediction shows it within one hop (1 s) of its label
    assert min(np.diff(changes)) >= 4.0
    assert every_changes >= 3 * len(changes)
    assert lazy.metrics() == every.metrics()  # asked directly: always current


def test_normalised_evidence_equals_learn_then_transform() -> None:
    """FusionHub's shared learn+transform (one lookup, slices per modality) gives what
    learn_one then transform_one give, window after window, with keys coming and going and
    with a key present in two modalities (the fallback)."""
    from streamfuse.features import concat
    from streamfuse.fusion.lane import normalised

    rng = np.random.default_rng(5)
    fast, ref = OnlineNormalizer(warmup=3), OnlineNormalizer(warmup=3)
    for t in range(60):
        feats: dict[str, dict[str, float]] = {
            "eeg": {f"eeg_b{i}": float(rng.normal(i, 1)) for i in range(4)},
            "ecg": {"ecg_hr": float(rng.normal(70, 5))} if t % 7 else {},
            "acc": {"acc_mag": float(rng.normal(1, 0.1)), "acc_dom": float("nan")},
        }
        if t % 11 == 0:
            feats["acc"]["eeg_b0"] = 9.0  # same key in two modalities
        got_feats, got_flat = normalised(feats, fast)
        flat = concat({m: f for m, f in feats.items() if f})
        ref.learn_one(flat)
        want_flat = ref.transform_one(flat)
        want = {m: {k: want_flat[k] for k in f} for m, f in feats.items() if f}
        assert got_flat == want_flat and list(got_flat) == list(want_flat)
        assert got_feats == want and list(got_feats) == list(want)
        assert all(list(got_feats[m]) == list(want[m]) for m in want)
