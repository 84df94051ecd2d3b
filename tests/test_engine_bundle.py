"""Bundles through the engine: the same data in one message per period or one per modality."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from streamfuse import codec, topics
from streamfuse.config import DEFAULT_MODALITIES
from streamfuse.engine import Engine
from streamfuse.types import Chunk, Prediction, RawMessage, Rejection
from tests.streams import device_messages, merge

MODS = DEFAULT_MODALITIES


def _periods(
    messages: list[tuple[RawMessage, float]],
) -> tuple[list[tuple[list[Chunk], float]], list[tuple[RawMessage, float]]]:
    """Group one stream's chunk messages by (device, seq): the chunks of each period with the
    arrival of the last of them (when a device would send its bundle), and the other messages."""
    groups: dict[tuple[str, int], list[tuple[Chunk, float]]] = defaultdict(list)
    other = []
    for msg, now in messages:
        device, kind = topics.parse(msg.topic, topics.DEFAULT_PREFIX)
        if kind in MODS:
            c = codec.decode_chunk(device, kind, msg.payload, MODS)
            groups[(device, c.seq)].append((c, now))
        else:
            other.append((msg, now))
    periods = []
    for parts in groups.values():
        parts.sort(key=lambda p: list(MODS).index(p[0].modality))
        periods.append(([c for c, _ in parts], max(t for _, t in parts)))
    return periods, other


def _as_bundles(periods, other) -> list[tuple[RawMessage, float]]:
    out = [
        (RawMessage(topics.bundle_topic("streamfuse", cs[0].device), codec.encode_bundle(cs)), t)
        for cs, t in periods
    ]
    return sorted(out + other, key=lambda m: m[1])


def _one_by_one(periods, other) -> list[tuple[RawMessage, float]]:
    """The same chunks, each on its modality topic, all at the bundle's arrival, in its order."""
    out = [
        (RawMessage(topics.data_topic("streamfuse", c.device, c.modality), codec.encode_chunk(c)),
         t)
        for cs, t in periods
        for c in cs
    ]
    return sorted(out + other, key=lambda m: m[1])  # stable: a period's parts stay in order


def _run(messages: list[tuple[RawMessage, float]]) -> tuple[list, Engine]:
    engine = Engine()
    out = engine.push_many(messages)
    out.extend(engine.flush())
    return out, engine


def test_bundled_and_per_modality_publishing_give_identical_outputs() -> None:
    msgs = merge(device_messages("a", 24, seed=1), device_messages("b", 24, seed=2))
    periods, other = _periods(msgs)
    bundled, eb = _run(_as_bundles(periods, other))
    single, es = _run(_one_by_one(periods, other))
    preds = [o for o in bundled if isinstance(o, Prediction)]
    assert len(preds) > 30 and {p.device for p in preds} == {"a", "b"}
    assert any(p.levels for p in preds[-5:])  # labels arrived and models learned
    assert bundled == single  # dataclass equality: every field of every prediction
    assert eb.outcomes == es.outcomes
    assert eb.stats()["align"] == es.stats()["align"]
    counters = dict(eb.counters)
    assert counters.pop("bundles") == len(periods)
    assert counters == dict(es.counters)


def test_a_bad_part_costs_only_itself() -> None:
    msgs = device_messages("a", 12, seed=3)
    periods, other = _periods(msgs)
    k = 40  # spoil the EEG part of one period
    cs, t = periods[k]
    nan = cs[1].data.copy()
    nan[4, 2] = np.nan
    spoilt = Chunk("a", "eeg", cs[1].seq, cs[1].t0, cs[1].fs, nan)
    periods[k] = ([cs[0], spoilt, cs[2]], t)
    bundled, eb = _run(_as_bundles(periods, other))
    single, es = _run(_one_by_one(periods, other))
    rejected = [o for o in bundled if isinstance(o, Rejection)]
    assert [(r.reason, r.device, r.modality, r.seq) for r in rejected] == [
        ("nonfinite", "a", "eeg", cs[1].seq)
    ]
    assert bundled == single
    assert eb.counters["chunks"] == 3 * len(periods) - 1
    assert eb.rejections == es.rejections == {"nonfinite": 1}


def test_broken_framing_keeps_the_parts_before_it_and_counts_the_bytes() -> None:
    msgs = device_messages("a", 12, seed=4)
    periods, other = _periods(msgs)
    good = _as_bundles(periods, other)
    i, (msg, now) = next(
        (i, m) for i, m in enumerate(good) if m[0].topic.endswith("/bundle") and m[1] > 1005
    )
    ecg_len = codec.HEADER_SIZE + 4 * 25
    cut = msg.payload[: ecg_len + 30]  # the EEG part's header is cut short; ACC never came
    broken = [*good[:i], (RawMessage(msg.topic, cut), now), *good[i + 1 :]]
    engine = Engine()
    out = engine.push_many(broken)
    rejected = [o for o in out if isinstance(o, Rejection)]
    assert [(r.reason, r.modality) for r in rejected] == [("truncated", "bundle")]
    assert "the last 30 of" in rejected[0].message
    assert engine.counters["bundle_bytes_lost"] == 30
    assert engine.counters["chunks"] == 3 * len(periods) - 2  # the ECG part got through


def test_decode_time_is_shared_by_the_parts() -> None:
    msgs = device_messages("a", 8, seed=5)
    periods, other = _periods(msgs)

    def clocked() -> Engine:
        ticks = itertools.count()
        return Engine(timer=lambda: float(next(ticks)))  # every reading 1 s after the last

    for messages, share in ((_as_bundles(periods, other), 1 / 3), (_one_by_one(periods, other), 1)):
        engine = clocked()
        preds = [o for o in engine.push_many(messages) if isinstance(o, Prediction)]
        on_data = [p for p in preds if "decode" in p.latency]
        assert on_data
        assert all(p.latency["decode"] == share for p in on_data)


class _PartByPartEngine(Engine):
    """Each bundle part looked up, synced and scheduled on its own (as before bundles were
    handled as one device's batch)."""

    def _on_parts(self, chunks, now, out, share):  # type: ignore[no-untyped-def]
        for chunk in chunks:
            self._on_chunk(chunk, now, out, share)


def test_a_bundle_schedules_its_device_once_with_the_same_outputs() -> None:
    """A bundle's device is synced once and scheduled for its next deadline once, after its
    last part; windows closed by ticks (lateness budgets, a device gone silent, one joining
    late) come out exactly as when every part is handled and scheduled on its own."""
    a = device_messages("a", 30, seed=3)
    b = [(m, t) for m, t in device_messages("b", 30, seed=4) if t < 1011.0]  # silent at 11 s
    c = [(m, t + 9.0) for m, t in device_messages("c", 12, seed=5)]  # joins at ~9 s
    bundles = _as_bundles(*_periods(merge(a, merge(b, c))))
    fast, ref = Engine(), _PartByPartEngine()
    got = fast.push_many(bundles) + fast.flush()
    want = ref.push_many(bundles) + ref.flush()
    preds = [o for o in got if isinstance(o, Prediction)]
    assert {p.device for p in preds} == {"a", "b", "c"} and len(preds) > 40
    assert got == want
    assert fast.outcomes == ref.outcomes and dict(fast.counters) == dict(ref.counters)


def test_a_frame_on_a_modality_topic_the_scan_refuses_is_the_decoders_to_refuse() -> None:
    """A binary frame on a modality topic takes the bundle scan only when it is exactly one
    good frame of that modality; anything else is refused by the decoder, for its reason."""
    acc = DEFAULT_MODALITIES["acc"]
    c = Chunk("a", "acc", 7, 1.0, acc.fs, np.zeros((5, acc.channels), np.float32))
    frame = codec.encode_chunk(c)
    ecg = codec.encode_chunk(Chunk("a", "ecg", 8, 1.0, 250.0, np.zeros((25, 1), np.float32)))
    topic = topics.data_topic(topics.DEFAULT_PREFIX, "a", "acc")
    cases = {
        "modality_mismatch": ecg,
        "trailing_bytes": frame + frame,
    }
    for reason, payload in cases.items():
        engine = Engine()
        out = engine.push(RawMessage(topic, payload), 2.0)
        assert [(r.reason, r.modality) for r in out if isinstance(r, Rejection)] == [
            (reason, "acc")
        ]
        assert engine.counters["chunks"] == 0 and "bundles" not in engine.counters
    engine = Engine()
    assert engine.push(RawMessage(topic, frame), 2.0) == []
    assert engine.counters["chunks"] == 1 and "bundles" not in engine.counters


def _used(scan) -> np.ndarray:
    """The samples a scan's parts own (the rest of its array is not written)."""
    end = max(pos + n * ch for _, n, ch, pos, _ in scan.ints)
    return scan.samples[:end].copy()


def test_threads_decoding_bundles_at_once_each_get_their_own_results() -> None:
    """The bundle scan's kernel releases the GIL and writes its per-part figures into scratch
    kept with the plan; each thread has its own, so engines decoding on two threads at once
    read back their own bundle's figures (a shared scratch gave one thread the other's)."""
    import threading

    from streamfuse.codec import bundle

    periods, _ = _periods(device_messages("dev0", 3.0))
    payloads = [codec.encode_bundle(cs) for cs, _ in periods]
    want = [bundle.scan_parts(p, MODS) for p in payloads]
    want = [(s.names, s.ints, s.floats, _used(s)) for s in want if s is not None]
    assert len(want) == len(payloads) > 20
    plans: list[object] = []
    bad: list[int] = []

    def decode() -> None:
        plans.append(bundle._bundle_plan(MODS, 3).meta_i)
        for _ in range(200):
            for p, w in zip(payloads, want, strict=True):
                s = bundle.scan_parts(p, MODS)
                assert s is not None
                if (s.names, s.ints, s.floats) != w[:3] or not np.array_equal(_used(s), w[3]):
                    bad.append(1)

    threads = [threading.Thread(target=decode) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert plans[0] is not plans[1]
    assert bad == []
