"""The sans-IO engine: determinism, test-then-train, and isolation of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamfuse import codec, topics
from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.types import Chunk, Prediction, RawMessage, Rejection
from tests.streams import device_messages, merge


def run(messages: list[tuple[RawMessage, float]], engine: Engine | None = None) -> list:
    engine = engine or Engine()
    out = engine.push_many(messages)
    out.extend(engine.flush())
    return out


def predictions(outputs: list) -> list[Prediction]:
    return [o for o in outputs if isinstance(o, Prediction)]


def test_same_pushes_give_identical_outputs() -> None:
    msgs = merge(device_messages("a", 30, seed=1), device_messages("b", 30, seed=2))
    first, second = run(msgs), run(msgs)
    assert len(predictions(first)) > 40
    assert first == second  # dataclass equality: every field, every probability


def test_windows_are_predicted_and_learned() -> None:
    engine = Engine()
    out = run(device_messages("a", 60, seed=3), engine)
    preds = predictions(out)
    # 2 s windows every 1 s (on the device's own phase) touching 60 s of data: 58 full ones
    # plus partial ones at both ends
    assert 60 <= len(preds) <= 63
    assert all(p.modalities == ("ecg", "eeg", "acc") for p in preds[2:-2])
    assert all(abs(p.t_end - p.t_start - 2.0) < 1e-9 for p in preds)
    assert np.allclose(np.diff([p.t_start for p in preds]), 1.0)
    assert engine.counters["learned"] >= 50
    # the model learns the two states: late predictions are mostly right (the state holding
    # the window's centre covers most of it)
    late = [p for p in preds if p.t_start >= 1000 + 30]
    right = sum(
        p.label == ("calm" if ((p.t_start + 1.0 - 1000) // 10) % 2 == 0 else "busy")
        for p in late
    )
    assert right / len(late) > 0.75


def test_bad_input_is_rejected_counted_and_isolated() -> None:
    good = merge(device_messages("a", 20, seed=4), device_messages("b", 20, seed=5))
    clean = run(good)
    nan = Chunk("evil", "eeg", 9, 0.0, 256.0, np.full((26, 8), np.nan, np.float32))
    frame = codec.encode_chunk(Chunk("evil", "acc", 3, 0.0, 50.0, np.zeros((5, 3), np.float32)))
    junk = [
        (RawMessage(topics.data_topic("streamfuse", "evil", "ecg"), b"\x00garbage\xff"), 1005.0),
        (RawMessage(topics.data_topic("streamfuse", "evil", "acc"), frame[:-7]), 1006.0),
        (
            RawMessage(topics.data_topic("streamfuse", "evil", "eeg"), codec.encode_chunk(nan)),
            1007.0,
        ),
        (RawMessage("streamfuse/evil/spo2", frame), 1008.0),
        (RawMessage("streamfuse/evil/label", b"{oops"), 1009.0),
    ]
    engine = Engine()
    dirty = run(sorted(good + junk, key=lambda m: m[1]), engine)
    rejected = [o for o in dirty if isinstance(o, Rejection)]
    assert [r.reason for r in rejected] == [
        "unknown_format",
        "truncated",
        "nonfinite",
        "unknown_modality",
        "bad_json",
    ]
    assert all(r.device == "evil" for r in rejected)
    assert rejected[2].seq == 9 and rejected[2].modality == "eeg"
    assert engine.rejections == {
        "unknown_format": 1,
        "truncated": 1,
        "nonfinite": 1,
        "unknown_modality": 1,
        "bad_json": 1,
    }
    # the honest devices' predictions are exactly those of the run without the junk
    assert predictions(dirty) == predictions(clean)


def test_prediction_json_is_valid_even_after_flush() -> None:
    out = predictions(run(device_messages("a", 5, seed=6)))
    last = out[-1].to_json_dict()
    assert last["closed_at"] is None or math.isfinite(last["closed_at"])  # type: ignore[arg-type]
    assert codec.encode_prediction(out[-1]).startswith(b"{")


def test_engine_pickles_and_resumes_identically() -> None:
    import pickle

    msgs = device_messages("a", 30, seed=8)
    half = len(msgs) // 2
    engine = Engine()
    engine.push_many(msgs[:half])
    clone = pickle.loads(pickle.dumps(engine))
    rest_a = engine.push_many(msgs[half:]) + engine.flush()
    rest_b = clone.push_many(msgs[half:]) + clone.flush()
    assert predictions(rest_a) == predictions(rest_b) and len(predictions(rest_a)) > 10


def test_idle_devices_are_evicted_after_closing_their_windows() -> None:
    engine = Engine()
    msgs = merge(device_messages("a", 10, seed=9), device_messages("b", 20, seed=10))
    # stop right after a's last chunk: its last windows are still open
    last_a = max(now for m, now in msgs if "/a/" in m.topic and not m.topic.endswith("label"))
    engine.push_many([m for m in msgs if m[1] <= last_a + 0.8])
    assert engine.evict_idle(now=last_a + 0.8, idle_s=1.0) == []  # nobody idle yet
    closed = engine.evict_idle(now=last_a + 0.8, idle_s=0.5)
    assert engine.counters["evicted"] == 1 and set(engine.sessions) == {"b"}
    assert closed and all(p.device == "a" and p.t_end > 1009 for p in closed)


class _VisitAllEngine(Engine):
    """The reference tick: advance every device at every tick (what the deadline heap skips)."""

    def tick(self, now: float) -> list[Prediction]:
        self._last_tick = now
        out: list[Prediction] = []
        for session in self.sessions.values():
            windows = session.aligner.advance(now)
            if windows:
                out.extend(self._on_windows(session, windows, now, {}))
        return out


@pytest.mark.parametrize(
    "config",
    [EngineConfig(), EngineConfig(silence_s=0.25, lateness_s=1.5)],
    ids=["defaults", "silence-before-lateness"],
)
def test_deadline_heap_tick_matches_visiting_every_device(config: EngineConfig) -> None:
    """Devices that stop, a modality that falls silent mid-stream, a device that joins late and
    a stretch with no data at all: the heap tick gives the same outputs, in the same order, as
    advancing every device at every tick (with a silence budget shorter than the lateness
    budget, a tick between chunks is what notices the silence and closes the window)."""
    a = device_messages("a", 30, seed=11)
    b = [m for m in device_messages("b", 30, seed=12) if m[1] < 1000 + 12]  # stops at 12 s
    # c loses its EEG after 8 s (silence_s = 5 s then lets its other streams close windows)
    c = [
        m
        for m in device_messages("c", 30, seed=13)
        if not (m[0].topic.endswith("/eeg") and m[1] > 1000 + 8)
    ]
    d = [(msg, now + 7.3) for msg, now in device_messages("d", 15, seed=14)]  # joins at 7.3 s
    msgs = merge(a, b, c, d)
    ticks = [(t, 1000 + t) for t in np.arange(0.0, 45.0, 0.037)]
    schedule = sorted(
        [(now, 0, i) for i, (_, now) in enumerate(msgs)] + [(now, 1, i) for i, now in ticks]
    )

    def drive(engine: Engine) -> list:
        out = []
        for now, kind, i in schedule:
            out.extend(engine.push(*msgs[i]) if kind == 0 else engine.tick(now))
        out.extend(engine.flush())
        return out

    reference = drive(_VisitAllEngine(config))
    got = drive(Engine(config))
    preds = predictions(got)
    assert len(preds) > 90
    assert {p.device for p in preds} == {"a", "b", "c", "d"}
    # b's tail and c's EEG-less windows were closed by deadlines, not by data
    assert any(p.device == "c" and "eeg" not in p.modalities for p in preds)
    assert got == reference


def _compiled_signatures() -> int:
    import sys

    from numba.core.registry import CPUDispatcher

    total = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("streamfuse") and module is not None:
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher):
                    total += len(obj.signatures)
    return total


def test_warm_up_compiles_everything_the_first_windows_need() -> None:
    """In a fresh interpreter (in this one, earlier tests have compiled kernels already):
    after warm_up, encoded messages through an engine compile nothing more."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "from streamfuse.warmup import warm_up\n"
        "from tests.test_engine import _compiled_signatures, predictions, run\n"
        "from tests.streams import device_messages, merge\n"
        "assert warm_up() >= 0.0\n"
        "before = _compiled_signatures()\n"
        "from tests.test_engine_bundle import _as_bundles, _periods\n"
        "out = run(merge(device_messages('a', 12, seed=12), device_messages('b', 12, seed=13)))\n"
        "out += run(_as_bundles(*_periods(device_messages('c', 12, seed=14))))\n"
        "print(before, _compiled_signatures(), len(predictions(out)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, n = (int(v) for v in done.stdout.split()[-3:])
    assert before > 0 and n > 10
    # a live gateway's first windows would have stalled on any kernel compiled here
    assert after == before


def test_required_modalities_drop_windows_without_them() -> None:
    from streamfuse.config import EngineConfig
    from streamfuse.errors import ConfigError

    msgs = [m for m in device_messages("a", 12, seed=14) if not m[0].topic.endswith("/acc")]
    free = predictions(run(msgs, Engine()))
    assert free and all("acc" not in p.modalities for p in free)
    strict = Engine(EngineConfig(required_modalities=("acc",)))
    assert predictions(run(msgs, strict)) == []
    assert strict.stats()["align"]["windows_dropped"] == len(free)
    with pytest.raises(ConfigError, match="spo2"):
        EngineConfig(required_modalities=("spo2",))


class _KeepAllLabelsEngine(Engine):
    """The engine as it was before labels were forgotten: every label kept (up to 512)."""

    def _forget_spent_labels(self, session):  # type: ignore[no-untyped-def]
        pass


def test_forgetting_spent_labels_changes_nothing() -> None:
    """Labels that can no longer overlap a window are dropped; what is learnt, and every
    prediction, stay those of an engine that keeps them all; labels arrive out of order,
    duplicated and late here."""
    from simulators import FaultProfile, SimulatedDevice

    faults = FaultProfile(reorder=0.2, duplicate=0.05, loss=0.02, label_delay_s=3.0,
                          jitter_mean_s=0.05)
    events = sorted(
        (ev for d in range(3)
         for ev in SimulatedDevice(f"d{d}", seed=d, faults=faults).events(120.0)),
        key=lambda ev: ev.send_time,
    )
    fast, ref = Engine(EngineConfig()), _KeepAllLabelsEngine(EngineConfig())
    most = 0
    for ev in events:
        a = fast.push(ev.payload, ev.send_time)
        b = ref.push(ev.payload, ev.send_time)
        assert [(p.device, p.index, p.proba, p.metrics) for p in predictions(a)] == [
            (p.device, p.index, p.proba, p.metrics) for p in predictions(b)
        ]
        most = max(most, max((len(s.labels) for s in fast.sessions.values()), default=0))
    assert list(fast.outcomes) == list(ref.outcomes) and len(fast.outcomes) > 300
    assert max(len(s.labels) for s in ref.sessions.values()) > 100  # the reference kept them
    assert most <= 5


def test_parsed_topics_are_remembered_boundedly_and_bad_ones_refused_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pickle

    from streamfuse import topics as topics_mod

    msgs = merge(*(device_messages(d, 6, seed=20 + i) for i, d in enumerate("abcde")))
    junk = [(RawMessage("streamfuse/bad device/ecg", b"x"), 1000.5)] * 3 + [
        (RawMessage("elsewhere/a/ecg", b"x"), 1000.6)
    ] * 2
    want = run(msgs + junk)
    monkeypatch.setattr(topics_mod, "TOPICS_KEPT", 8)  # 5 devices x 4 topics: 20 to remember
    small = Engine()
    got = run(msgs + junk, small)
    assert got == want
    assert 0 < len(small._topics) <= 8
    bad = [o for o in got if isinstance(o, Rejection)]
    assert [r.reason for r in bad] == ["bad_device"] * 3 + ["bad_topic"] * 2
    assert all(" " not in t and t.startswith("streamfuse/") for t in small._topics)
    # a checkpoint does not carry the memory
    assert pickle.loads(pickle.dumps(small))._topics == {}
