"""Simulated clock jumps and gateway outages (FaultProfile.clock_jump_*, outage_*), and the
engine taking both in its stride: the chaos cases of issue 17 as seeded, offline runs."""

from __future__ import annotations

import math

import pytest

from simulators import Fleet, SimulatedDevice
from simulators.faults import OUTAGE_SQUEEZE, FaultProfile
from streamfuse.config import DEFAULT_MODALITIES, EngineConfig
from streamfuse.engine import Engine
from streamfuse.errors import ConfigError
from streamfuse.types import Chunk, Label, Prediction

ACC = {"acc": DEFAULT_MODALITIES["acc"]}


def test_a_clock_jump_moves_the_stamps_from_its_time_on() -> None:
    plain = SimulatedDevice("d", 1, FaultProfile.ideal(), modalities=ACC, start_s=0.0)
    jumped = SimulatedDevice(
        "d", 1, FaultProfile(jitter_mean_s=0.0, jitter_dist="none", clock_jump_s=-1e5,
                             clock_jump_at_s=5.0),
        modalities=ACC, start_s=0.0,
    )
    for a, b in zip(plain.advance(10.0), jumped.advance(10.0), strict=True):
        assert a.send_time == b.send_time
        pa, pb = a.payload, b.payload
        if isinstance(pa, Chunk) and isinstance(pb, Chunk):
            assert (pa.data == pb.data).all()
            assert pb.t0 == (pa.t0 - 1e5 if a.send_time >= 5.0 else pa.t0)
        else:
            assert isinstance(pa, Label) and isinstance(pb, Label)
            assert pb.t_start == (pa.t_start - 1e5 if a.send_time >= 5.0 else pa.t_start)


def test_an_outage_delivers_its_messages_as_it_ends_in_send_order() -> None:
    base = dict(jitter_mean_s=0.0, jitter_dist="none")
    plain = SimulatedDevice("d", 1, FaultProfile(**base), start_s=0.0)  # type: ignore[arg-type]
    cut = SimulatedDevice(
        "d", 1, FaultProfile(outage_start_s=3.0, outage_end_s=5.0, **base),  # type: ignore[arg-type]
        start_s=0.0,
    )
    a, b = plain.advance(8.0), cut.advance(8.0)
    def key(e: object) -> tuple:
        p = e.payload  # type: ignore[attr-defined]
        return (e.kind, p.seq, p.t0) if isinstance(p, Chunk) else (e.kind, p.t_start)  # type: ignore[attr-defined]

    assert [key(e) for e in a] == [key(e) for e in b]  # same messages, same order
    for x, y in zip(a, b, strict=True):
        if 3.0 <= x.send_time < 5.0:
            assert y.send_time == 5.0 - (5.0 - x.send_time) * OUTAGE_SQUEEZE
        else:
            assert y.send_time == x.send_time


@pytest.mark.parametrize(
    "kwargs",
    [{"clock_jump_s": math.nan}, {"outage_start_s": 5.0, "outage_end_s": 4.0},
     {"clock_jump_at_s": -math.inf}],
)
def test_bad_jump_and_outage_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        FaultProfile(**kwargs)


def run(fleet: Fleet, seconds: float) -> tuple[Engine, list[Prediction]]:
    engine = Engine(EngineConfig(modalities=ACC, classes=("rest", "stress", "exercise")))
    out = []
    for ev in fleet.events(seconds):
        p = ev.payload
        item = p if isinstance(p, Chunk | Label) else None
        assert item is not None
        out += [o for o in engine.push(item, ev.send_time) if isinstance(o, Prediction)]
    return engine, out


def test_the_engine_rides_out_a_simulated_outage_and_a_jump() -> None:
    """Three devices; the gateway is away 20 s for all and one device's clock restarts at 0:
    every device has a prediction for nearly every second after the outage, each window once."""
    prof = FaultProfile(outage_start_s=30.0, outage_end_s=50.0)
    fleet = Fleet(3, 5, faults=prof, modalities=ACC)
    jump = FaultProfile(outage_start_s=30.0, outage_end_s=50.0, clock_jump_s=-60.0,
                        clock_jump_at_s=60.0)  # its clock restarts at 0 a minute in
    fleet.devices[1] = SimulatedDevice(fleet.device_ids[1], 5, jump, modalities=ACC)
    engine, preds = run(fleet, 90.0)
    for device in fleet.device_ids:
        mine = [p for p in preds if p.device == device]
        idx = [p.index for p in mine]
        assert len(idx) == len(set(idx))
        during = [p for p in mine if 30.0 <= p.t_start < 48.0]
        assert len(during) >= 0.95 * 18, (device, len(during))
        late = [p for p in mine if p.t_start >= 65.0]
        assert len(late) >= 20, (device, len(late))
    assert engine.stats()["align"]["clock_resets"] == 1
