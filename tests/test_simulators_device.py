"""Simulated devices and fleets: determinism, ordering, labels, MQTT publishing."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from simulators.device import BUNDLE, LABEL, Bundle, Fleet, SimulatedDevice
from simulators.faults import FaultProfile
from streamfuse.codec import (
    decode_bundle,
    decode_chunk,
    decode_label,
    encode_bundle,
    encode_chunk,
    encode_label,
)
from streamfuse.config import DEFAULT_MODALITIES
from streamfuse.types import Chunk, Label


def _wire(events):
    out = []
    for ev in events:
        p = ev.payload
        body = encode_label(p) if ev.kind == LABEL else encode_chunk(p)
        out.append((ev.send_time, ev.kind, p.device, body))
    return out


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = _wire(Fleet(3, seed=42, faults=FaultProfile.harsh()).advance(5.0))
    b = _wire(Fleet(3, seed=42, faults=FaultProfile.harsh()).advance(5.0))
    c = _wire(Fleet(3, seed=43, faults=FaultProfile.harsh()).advance(5.0))
    assert a == b
    assert a != c
    assert len(a) > 400


def test_advance_in_steps_equals_advance_at_once():
    once = _wire(Fleet(2, seed=1, faults=FaultProfile(jitter_mean_s=0.05)).advance(8.0))
    f = Fleet(2, seed=1, faults=FaultProfile(jitter_mean_s=0.05))
    steps = []
    for t in np.arange(0.37, 8.0, 0.37).tolist() + [8.0]:
        steps += _wire(f.advance(t))
    assert steps == once
    with pytest.raises(ValueError):
        f.advance(1.0)


def test_fleet_device_equals_standalone_device_and_is_time_ordered():
    fleet = Fleet(4, seed=5)
    assert fleet.device_ids == ["dev000", "dev001", "dev002", "dev003"]
    events = fleet.advance(6.0)
    times = [e.send_time for e in events]
    assert times == sorted(times)
    alone = SimulatedDevice("dev002", 5).advance(6.0)
    mine = [e for e in events if e.payload.device == "dev002"]
    assert _wire(mine) == _wire(alone)


def test_chunks_and_labels_are_well_formed():
    dev = SimulatedDevice("dev000", 3, schedule=[("rest", 3), ("stress", 2)])
    by_kind = {}
    for ev in dev.advance(10.0):
        by_kind.setdefault(ev.kind, []).append(ev.payload)
    assert set(by_kind) == {"ecg", "eeg", "acc", LABEL}
    for m, spec in DEFAULT_MODALITIES.items():
        chunks = by_kind[m]
        assert all(isinstance(c, Chunk) for c in chunks)
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert all(c.data.dtype == np.float32 and c.data.shape[1] == spec.channels for c in chunks)
        assert all(math.isnan(c.arrival) and c.fs == spec.fs for c in chunks)
        assert sum(c.n for c in chunks) == pytest.approx(spec.fs * 10, abs=spec.fs * 0.15)
    labels = by_kind[LABEL]
    assert all(isinstance(lbl, Label) for lbl in labels)
    assert [lbl.value for lbl in labels] == ["rest"] * 3 + ["stress"] * 2 + ["rest"] * 3 + [
        "stress"
    ] * 1
    starts = [lbl.t_start for lbl in labels]
    assert np.allclose(np.diff(starts), 1.0)
    assert dev.state_at(dev.start_s + 3.5) == "stress"

async def _publish_and_collect(broker_url, prefix, fleet, speed, duration):
    """Publish ``fleet`` through the broker while a subscriber collects every message:
    ``(stats, [(topic, payload), ...])``."""
    import aiomqtt

    from simulators.publisher import run_fleet
    from streamfuse.mqtt.address import parse_broker_url

    host, port, *_ = parse_broker_url(broker_url)
    got = []
    async with aiomqtt.Client(host, port) as sub:
        await sub.subscribe(f"{prefix}/#")
        stats = await run_fleet(broker_url, fleet, prefix=prefix, speed=speed, duration=duration)

        async def collect():
            async for msg in sub.messages:
                got.append((str(msg.topic), bytes(msg.payload)))
                if len(got) == stats.messages:
                    return

        await asyncio.wait_for(collect(), timeout=10.0)
    return stats, got


@pytest.mark.broker
def test_publish_fleet_through_a_real_broker(broker_url, topic_prefix):
    duration = 3.0
    expected = {
        (e.payload.device, e.kind, e.payload.seq if e.kind != LABEL else e.payload.t_start)
        for e in Fleet(3, seed=11).advance(duration)
    }

    stats, got = asyncio.run(
        _publish_and_collect(broker_url, topic_prefix, Fleet(3, seed=11), 6.0, duration)
    )
    assert stats.messages == len(expected)
    assert stats.by_kind[LABEL] == 3 * 2  # labels for seconds 0-1 and 1-2 of each device
    seen = set()
    for topic, payload in got:
        prefix, device, kind = topic.split("/")
        assert prefix == topic_prefix
        if kind == LABEL:
            lbl = decode_label(device, payload)
            seen.add((device, kind, lbl.t_start))
        else:
            c = decode_chunk(device, kind, payload, DEFAULT_MODALITIES)
            assert c.device == device and c.modality == kind
            seen.add((device, kind, c.seq))
    assert seen == expected


def _chunks_by_key(events):
    out = {}
    for ev in events:
        parts = ev.payload.chunks if ev.kind == BUNDLE else (ev.payload,)
        for c in parts:
            if ev.kind != LABEL:
                out[(c.device, c.modality, c.seq)] = c
    return out


def test_bundled_device_sends_the_same_chunks_one_message_per_period():
    plain = Fleet(2, seed=8, faults=FaultProfile.ideal()).advance(4.0)
    bundled = Fleet(2, seed=8, faults=FaultProfile.ideal(), bundle=True).advance(4.0)
    assert {e.kind for e in bundled} == {BUNDLE, LABEL}
    a, b = _chunks_by_key(plain), _chunks_by_key(bundled)
    complete = {k for k in a if all((k[0], m, k[2]) in a for m in DEFAULT_MODALITIES)}
    assert set(b) == complete and len(b) > 200
    for k in b:
        np.testing.assert_array_equal(a[k].data, b[k].data)
        assert (a[k].t0, a[k].fs) == (b[k].t0, b[k].fs)
    sent = {
        (e.payload.device, e.kind, e.payload.seq): e.send_time for e in plain if e.kind != LABEL
    }
    for ev in (e for e in bundled if e.kind == BUNDLE):
        bundle = ev.payload
        assert isinstance(bundle, Bundle)
        assert [c.modality for c in bundle.chunks] == list(DEFAULT_MODALITIES)
        assert {c.seq for c in bundle.chunks} == {bundle.seq}
        assert {c.device for c in bundle.chunks} == {bundle.device}
        # sent when its last part is, as that part would have been on its own
        assert ev.send_time == max(sent[(bundle.device, c.modality, c.seq)] for c in bundle.chunks)
    assert [e.payload for e in plain if e.kind == LABEL] == [
        e.payload for e in bundled if e.kind == LABEL
    ]


def test_bundled_faults_hit_whole_bundles_and_steps_do_not_matter():
    prof = FaultProfile(jitter_mean_s=0.03, loss=0.1, duplicate=0.1, reorder=0.1)

    def wire(events):
        return [(e.send_time, e.kind, e.payload.device,
                 encode_bundle(e.payload.chunks) if e.kind == BUNDLE else
                 encode_label(e.payload)) for e in events]

    once = wire(Fleet(2, seed=3, faults=prof, bundle=True).advance(6.0))
    f = Fleet(2, seed=3, faults=prof, bundle=True)
    steps = []
    for t in np.arange(0.043, 6.0, 0.043).tolist() + [6.0]:
        steps += wire(f.advance(t))
    assert steps == once
    dev = SimulatedDevice("dev001", 3, prof, bundle=True)
    events = dev.advance(20.0)
    counts = dev.stream_faults[BUNDLE].counts
    seqs = [e.payload.seq for e in events if e.kind == BUNDLE]
    assert counts.lost > 0 and counts.duplicated > 0
    in_flight = len(dev._heap)  # sent after 20 s (jitter, held back)
    assert len(seqs) + in_flight == counts.sent - counts.lost + counts.duplicated
    assert len(set(range(counts.sent)) - set(seqs)) >= counts.lost  # whole bundles lost
    assert all(dev.stream_faults[m].counts.sent == 0 for m in DEFAULT_MODALITIES)


@pytest.mark.broker
def test_publish_bundled_fleet_through_a_real_broker(broker_url, topic_prefix):
    duration = 2.0
    expected = _chunks_by_key(Fleet(2, seed=12, bundle=True).advance(duration))

    stats, got = asyncio.run(
        _publish_and_collect(broker_url, topic_prefix, Fleet(2, seed=12, bundle=True), 0, duration)
    )
    assert stats.by_kind[BUNDLE] == len(expected) // 3
    seen = {}
    for topic, payload in got:
        _, device, kind = topic.split("/")
        if kind == BUNDLE:
            parts = decode_bundle(device, payload, DEFAULT_MODALITIES)
            assert parts.rejected == []
            for c in parts.chunks:
                seen[(device, c.modality, c.seq)] = c
        else:
            assert kind == LABEL
    assert set(seen) == set(expected)
    for k, c in seen.items():
        np.testing.assert_array_equal(c.data, expected[k].data)
