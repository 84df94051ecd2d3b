"""The review's techniques as engine levels (issue 16): attention, mkl and bayes beside the
classic levels, conformal sets on the published decision, explanations, the quality limits
that leave a damaged modality out, checkpoints, and the damaged streams of the evaluation."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from streamfuse import topics
from streamfuse.config import DEFAULT_LEVELS, FUSION_LEVELS, EngineConfig, ModalitySpec
from streamfuse.engine import Engine
from streamfuse.errors import ConfigError, DataSourceError
from streamfuse.fusion.levels import Evidence, FusionHub
from streamfuse.fusion.trust import LIMITS, damage, unusable
from streamfuse.learn.models import make_model
from streamfuse.replay import artefacts
from streamfuse.replay.readers import Recording, Stream
from streamfuse.types import Prediction
from tests.streams import device_messages

NEW = ("attention", "mkl", "bayes")


def _preds(outputs: list) -> list[Prediction]:
    return [o for o in outputs if isinstance(o, Prediction)]


def _run(engine: Engine, msgs) -> list[Prediction]:
    return _preds(engine.push_many(msgs)) + engine.flush()


# --------------------------------------------------------------------------- config
def test_config_levels_and_conformal_settings() -> None:
    assert EngineConfig().levels == DEFAULT_LEVELS == ("early", "intermediate", "late")
    assert set(NEW) <= set(FUSION_LEVELS)
    EngineConfig(levels=FUSION_LEVELS, level="bayes")
    for bad in (0.0, 1.0, 1.5, -0.1, "0.9"):
        with pytest.raises(ConfigError, match="conformal_target"):
            EngineConfig(conformal_target=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="conformal_gamma"):
        EngineConfig(conformal_gamma=math.nan)
    with pytest.raises(ConfigError, match="conformal_window"):
        EngineConfig(conformal_window=0)
    with pytest.raises(ConfigError, match="reserved"):
        EngineConfig(modalities={"conformal": ModalitySpec("conformal", ("x",), 10.0)})


# --------------------------------------------------------------------------- engine
@pytest.mark.parametrize("level", NEW)
def test_each_technique_publishes_its_explanation_and_a_set(level: str) -> None:
    engine = Engine(EngineConfig(levels=FUSION_LEVELS, level=level))
    preds = _run(engine, device_messages("a", 40, seed=31))
    late = preds[-15:-1]
    assert all(p.level == level and p.proba == p.levels[level] for p in late)
    assert all(p.levels[lv] for p in late for lv in FUSION_LEVELS)  # every level runs
    for p in late:
        assert set(p.prediction_set) <= {"calm", "busy"}
        e = dict(p.explanation)
        if level == "attention":
            assert set(e) == {"weight.ecg", "weight.eeg", "weight.acc"}
            assert sum(e.values()) == pytest.approx(1.0)
        elif level == "mkl":
            assert {k.split(":")[0] for k in e} == {"weight.ecg", "weight.eeg", "weight.acc"}
            assert len(e) == 9 and sum(e.values()) == pytest.approx(1.0)
        else:
            assert set(e) == {"logodds.ecg", "logodds.eeg", "logodds.acc", "logodds.prior"}
            assert set(p.interval) == {"calm", "busy"}
            for c, (lo, hi) in p.interval.items():
                assert 0.0 <= lo <= p.proba[c] <= hi <= 1.0
            # the product of experts: prior once plus each modality's term, in log-odds
            pos = "calm"  # the largest class name: the calibrated one
            z = sum(e.values())
            assert p.proba[pos] == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-9)
    back = json.loads(json.dumps(late[-1].to_json_dict(), allow_nan=False))
    assert back["prediction_set"] == list(late[-1].prediction_set)
    assert back["explanation"] == dict(late[-1].explanation)
    m = engine.metrics()
    assert {f"{lv}.auc" for lv in NEW} <= set(m)
    assert 0.0 <= m["conformal.coverage"] <= 1.0 and 0.0 <= m["conformal.abstain_rate"] <= 1.0
    assert 0.0 <= m["conformal.mean_set_size"] <= 2.0
    right = sum(p.label == ("calm" if ((p.t_start - 1000) // 10) % 2 == 0 else "busy")
                for p in late)  # fmt: skip
    assert right / len(late) > 0.6


def test_running_coverage_counts_the_published_sets_against_their_labels() -> None:
    engine = Engine(EngineConfig(levels=FUSION_LEVELS, metrics_refresh_s=0.0))
    preds = _run(engine, device_messages("a", 60, seed=32))
    by_index = {p.index: p for p in preds}
    n = covered = size = 0
    for _, index, y in engine.outcomes:
        p = by_index[index]
        if not p.proba:
            continue
        n += 1
        covered += y in p.prediction_set
        size += len(p.prediction_set)
    got = engine.hub.conformal.metrics()  # type: ignore[union-attr]
    assert n > 30 and got["n"] == n
    assert got["coverage"] == pytest.approx(covered / n)
    assert got["mean_set_size"] == pytest.approx(size / n)


def test_conformal_off_gives_no_sets_and_no_figures() -> None:
    engine = Engine(EngineConfig(levels=FUSION_LEVELS, conformal_target=None))
    preds = _run(engine, device_messages("a", 30, seed=33))
    assert all(p.prediction_set == () for p in preds)
    assert not any(k.startswith("conformal.") for k in engine.metrics())


def test_techniques_predict_every_window_while_a_modality_is_missing() -> None:
    msgs = device_messages("a", 60, seed=34)
    gone = [(m, now) for m, now in msgs
            if not (m.topic.endswith("/eeg") and 1020.0 <= now < 1040.0)]  # fmt: skip
    preds = _run(Engine(EngineConfig(levels=FUSION_LEVELS)), gone)
    missing = [p for p in preds if "eeg" not in p.modalities]
    assert len(missing) >= 10
    for p in missing:
        for lv in FUSION_LEVELS:
            assert p.levels[lv], (lv, p.index)
    att = [p for p in preds if "eeg" not in p.modalities]
    assert all("weight.eeg" not in p.explanation for p in att)


def test_checkpoint_with_every_level_resumes_identically() -> None:
    msgs = device_messages("a", 50, seed=35)
    cut = len(msgs) // 2
    engine = Engine(EngineConfig(levels=FUSION_LEVELS, level="attention"))
    _preds(engine.push_many(msgs[:cut]))
    copy = pickle.loads(pickle.dumps(engine))
    a = _run(engine, msgs[cut:])
    b = _run(copy, msgs[cut:])
    assert len(a) == len(b) > 10
    for x, y in zip(a, b, strict=True):
        assert x.levels == y.levels and x.prediction_set == y.prediction_set
        assert x.explanation == y.explanation


# --------------------------------------------------------------------------- quality limits
def test_damage_names_every_index_past_its_limit() -> None:
    for name, (limit, above) in LIMITS.items():
        worse = limit + 0.01 if above else limit - 0.01
        better = limit - 0.01 if above else limit + 0.01
        assert damage({name: worse}) == (name,)
        assert damage({name: better}) == ()
        assert damage({name: math.nan}) == ()
    # no limit: soft trust only (the template is 0 in any window with fewer than two beats)
    assert damage({"line_noise": 1.0, "motion": 1.0, "template": 0.0}) == ()
    assert unusable({"eeg": {"flat_channels": 1.0}, "ecg": {"template": 0.0}}) == ("eeg",)


def _evidence(rng: np.random.Generator, y: str, quality: dict) -> Evidence:
    s = 1.0 if y == "busy" else -1.0
    views = {"ecg": {"ecg_hr": s + rng.normal(0, 0.5)}, "eeg": {"eeg_a": s + rng.normal(0, 0.5)}}
    flat = {k: v for f in views.values() for k, v in f.items()}
    return Evidence({}, views, flat, "d", quality, unusable(quality))


def test_an_unusable_modality_is_left_out_and_its_member_learns_nothing() -> None:
    cfg = EngineConfig(levels=FUSION_LEVELS, conformal_target=0.9)
    hub = FusionHub(cfg, lambda: make_model("logreg"))
    rng = np.random.default_rng(0)
    clean = {"ecg": {"flat": 0.0, "template": 0.95}, "eeg": {"flat_channels": 0.0}}
    for i in range(60):
        y = ("calm", "busy")[i % 2]
        e = _evidence(rng, y, clean)
        hub.learn(e, hub.decide(e), y)
    bad = {"ecg": {"flat": 1.0, "template": 0.0}, "eeg": {"flat_channels": 0.0}}  # lead off
    e = _evidence(rng, "busy", bad)
    assert e.unusable == ("ecg",)
    v = hub.decide(e)
    assert set(v.members) == {"ecg", "eeg"}  # the unimodal decisions are still published
    assert set(v.explanations["attention"]) == {"weight.eeg", "unusable.ecg"}
    assert v.levels["attention"] == pytest.approx(v.members["eeg"])
    assert "logodds.ecg" not in v.explanations["bayes"]
    assert "weight.ecg" in v.explanations["late"]  # the classic late level still hears it
    ecg_before, eeg_before = pickle.dumps(hub.late.models["ecg"]), pickle.dumps(
        hub.late.models["eeg"]
    )
    cal_before = pickle.dumps(hub.bayes.calibrators)  # type: ignore[union-attr]
    gate_before = dict(hub.gate.bias)  # type: ignore[union-attr]
    hub.learn(e, v, "busy")
    assert pickle.dumps(hub.late.models["ecg"]) == ecg_before
    assert pickle.dumps(hub.late.models["eeg"]) != eeg_before
    # one member speaking: the gate has nothing to weigh, bayes calibrates eeg only
    assert hub.gate.bias == gate_before  # type: ignore[union-attr]
    cal = hub.bayes.calibrators  # type: ignore[union-attr]
    assert pickle.dumps({k: c for k, c in cal.items() if k[0] == "ecg"}) == pickle.dumps(
        {k: c for k, c in pickle.loads(cal_before).items() if k[0] == "ecg"}
    )


def test_with_smoothing_an_unusable_modality_speaks_with_its_held_decision() -> None:
    """With member smoothing the quality-aware levels hear an unusable modality's decision
    held from its earlier usable windows (the damaged window's own decision is not heard, the
    gate scores the held one by its bias), and still nothing learns from the damaged ECG."""
    cfg = EngineConfig(levels=FUSION_LEVELS, member_smoothing=1.0)
    hub = FusionHub(cfg, lambda: make_model("logreg"))
    rng = np.random.default_rng(0)
    clean = {"ecg": {"flat": 0.0, "template": 0.95}, "eeg": {"flat_channels": 0.0}}
    for i in range(60):
        y = ("calm", "busy")[i % 2]
        q = {"ecg": {"flat": rng.uniform(0, 0.2), "template": rng.uniform(0.9, 1.0)},
             "eeg": {"flat_channels": 0.0}}  # indices that vary, so the gate learns them
        e = _evidence(rng, y, q)
        v = hub.decide(e)
        hub.learn(e, v, y)
    before = v.members["ecg"]  # the ECG's smoothed decision after its last usable window
    bad = {"ecg": {"flat": 1.0, "template": 0.0}, "eeg": {"flat_channels": 0.0}}
    e = _evidence(rng, "busy", bad)
    e.x_modalities["ecg"] = {"ecg_hr": -50.0}  # what a damaged window's features might say
    v = hub.decide(e)
    assert v.members["ecg"] == pytest.approx(before, abs=1e-12)  # held, not this window's
    att = v.explanations["attention"]
    assert {"weight.ecg", "weight.eeg", "unusable.ecg", "held.ecg"} <= set(att)
    gate = hub.gate
    assert gate is not None
    w = gate.weights({"eeg": bad["eeg"]}, ["ecg", "eeg"])  # the ECG at its bias
    assert w != gate.weights(bad, ["ecg", "eeg"])  # the damaged indices would move it
    assert att == pytest.approx(
        {f"weight.{m}": x for m, x in w.items()} | {"unusable.ecg": 1.0, "held.ecg": 1.0}
    )
    assert "logodds.ecg" in v.explanations["bayes"]
    ecg_before = pickle.dumps(hub.late.models["ecg"])
    gate_before = (dict(gate.bias), {m: dict(c) for m, c in gate.coef.items()})
    hub.learn(e, v, "busy")
    assert pickle.dumps(hub.late.models["ecg"]) == ecg_before
    assert (gate.bias, gate.coef) == gate_before  # one member left to learn from: no step
    # without smoothing nothing is held: the ECG is left out as before
    plain = FusionHub(EngineConfig(levels=FUSION_LEVELS), lambda: make_model("logreg"))
    for i in range(20):
        y = ("calm", "busy")[i % 2]
        e0 = _evidence(rng, y, clean)
        plain.learn(e0, plain.decide(e0), y)
    v0 = plain.decide(_evidence(rng, "busy", bad))
    assert set(v0.explanations["attention"]) == {"weight.eeg", "unusable.ecg"}


def test_every_modality_unusable_still_gives_a_decision() -> None:
    hub = FusionHub(EngineConfig(levels=FUSION_LEVELS), lambda: make_model("logreg"))
    rng = np.random.default_rng(1)
    for i in range(20):
        y = ("calm", "busy")[i % 2]
        e = _evidence(rng, y, {})
        hub.learn(e, hub.decide(e), y)
    e = _evidence(rng, "busy", {"ecg": {"gap": 0.9}, "eeg": {"gap": 0.9}})
    v = hub.decide(e)
    assert v.levels["attention"] and v.levels["bayes"]
    assert {"unusable.ecg", "unusable.eeg"} <= set(v.explanations["attention"])


def test_evidence_from_before_the_quality_fields_still_decides_and_learns() -> None:
    hub = FusionHub(EngineConfig(levels=FUSION_LEVELS), lambda: make_model("logreg"))
    rng = np.random.default_rng(2)
    for i in range(10):
        y = ("calm", "busy")[i % 2]
        e = _evidence(rng, y, {})
        del e.quality, e.unusable  # as an Evidence pickled by an older version
        hub.learn(e, hub.decide(e), y)
    assert hub.decide(e).levels["attention"]


# --------------------------------------------------------------------------- damaged streams
def _recording(seconds: float, fs: float = 100.0, ch: int = 4) -> Recording:
    rng = np.random.default_rng(3)
    data = (20.0 * rng.standard_normal((int(seconds * fs), ch))).astype(np.float32)
    return Recording(__import__("pathlib").Path("x.edf"),
                     {"eeg": Stream("eeg", tuple(f"c{i}" for i in range(ch)), fs, data),
                      "ecg": Stream("ecg", ("ecg",), fs, data[:, :1].copy())})  # fmt: skip


def test_damage_hits_a_seeded_share_of_segments_and_leaves_the_inputs_alone() -> None:
    a, b = _recording(80.0), _recording(40.0)
    before = a.streams["eeg"].data.copy()
    played = [(a, 100.0, 80.0), (b, 180.0, 40.0)]
    recs, spans = artefacts.damage(played, "eeg", "drop", 8.0, 0.3, 0, "Subject07")
    assert len(spans) == round(0.3 * 15)  # 10 + 5 segments of 8 s
    assert np.array_equal(a.streams["eeg"].data, before)
    again = artefacts.damage(played, "eeg", "drop", 8.0, 0.3, 0, "Subject07")[1]
    assert again == spans
    assert artefacts.damage(played, "eeg", "drop", 8.0, 0.3, 1, "Subject07")[1] != spans
    for (t0, t1) in spans:
        rec, start = (recs[0], 100.0) if t0 < 180.0 else (recs[1], 180.0)
        i0, i1 = int((t0 - start) * 100), int((t1 - start) * 100)
        assert np.isnan(rec.streams["eeg"].data[i0:i1]).all()
        assert np.isfinite(rec.streams["ecg"].data[i0:i1]).all()  # the other modality intact
    nan_rows = sum(int(np.isnan(r.streams["eeg"].data).any(axis=1).sum()) for r in recs)
    assert nan_rows == len(spans) * 800
    assert artefacts.overlap(spans, spans[0][0] + 4.0, spans[0][0] + 12.0) >= 0.5


@pytest.mark.parametrize("modality", ["eeg", "ecg"])
def test_corruption_changes_only_the_chosen_segments(modality: str) -> None:
    a = _recording(80.0)
    recs, spans = artefacts.damage([(a, 0.0, 80.0)], modality, "corrupt", 8.0, 0.3, 0, "S")
    x, y = a.streams[modality].data, recs[0].streams[modality].data
    changed = np.flatnonzero((x != y).any(axis=1))
    inside = np.zeros(x.shape[0], dtype=bool)
    for t0, t1 in spans:
        inside[int(t0 * 100) : int(t1 * 100)] = True
    assert len(spans) == 3 and changed.size > 0 and inside[changed].all()
    assert np.isfinite(y).all()


def test_damage_refuses_what_it_cannot_do() -> None:
    played = [(_recording(16.0), 0.0, 16.0)]
    with pytest.raises(DataSourceError, match="cannot damage"):
        artefacts.damage(played, "acc", "drop", 8.0, 0.3, 0, "S")
    with pytest.raises(DataSourceError, match="how"):
        artefacts.damage(played, "eeg", "smash", 8.0, 0.3, 0, "S")
    with pytest.raises(DataSourceError, match="fraction"):
        artefacts.damage(played, "eeg", "drop", 8.0, 1.5, 0, "S")


def test_prediction_topic_round_trip_keeps_the_new_fields() -> None:
    preds = _run(Engine(EngineConfig(levels=FUSION_LEVELS, level="bayes")),
                 device_messages("a", 30, seed=36))  # fmt: skip
    from streamfuse import codec

    d = json.loads(codec.encode_prediction(preds[-2]))
    assert d["level"] == "bayes" and set(d["interval"]) == {"calm", "busy"}
    assert all(len(v) == 2 for v in d["interval"].values())
    assert topics.PREDICTION  # the payload goes out on the prediction topic
