"""Simulated devices and fleets: determinism, ordering, labels, MQTT publishing."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from simulators.device import LABEL, Fleet, SimulatedDevice
from simulators.faults import FaultProfile
from streamfuse.codec import decode_chunk, decode_label, encode_chunk, encode_label
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


@pytest.mark.broker
def test_publish_fleet_through_a_real_broker(broker_url, topic_prefix):
    import aiomqtt

    from simulators.publisher import run_fleet
    from streamfuse.gateway.broker import parse_broker_url

    duration = 3.0
    expected = {
        (e.payload.device, e.kind, e.payload.seq if e.kind != LABEL else e.payload.t_start)
        for e in Fleet(3, seed=11).advance(duration)
    }

    async def main():
        host, port, *_ = parse_broker_url(broker_url)
        got = []
        async with aiomqtt.Client(host, port) as sub:
            await sub.subscribe(f"{topic_prefix}/#")
            stats = await run_fleet(
                broker_url, Fleet(3, seed=11), prefix=topic_prefix, speed=6.0, duration=duration
            )

            async def collect():
                async for msg in sub.messages:
                    got.append((str(msg.topic), bytes(msg.payload)))
                    if len(got) == stats.messages:
                        return

            await asyncio.wait_for(collect(), timeout=10.0)
        return stats, got

    stats, got = asyncio.run(main())
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
