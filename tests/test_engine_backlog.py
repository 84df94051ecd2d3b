"""A backlog delivered after an outage is placed by device time (issue 17, item 7, core part).

The gateway is down for 20 s while a device keeps publishing at QoS 1; on restart (engine state
as it was, as a checkpoint restores it) the broker delivers the 20 s of queued messages in one
burst, then live data follows. The burst's chunks all arrive at the same instant, so placed by
arrival they would pile into a window or two (3 predictions instead of ~19 on main, the clock
fit refusing a drift of -0.99); placed by their device time through the clock model, the
outage's windows are made and predicted after the burst, each once.
"""

from __future__ import annotations

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.types import Prediction, RawMessage
from tests.streams import device_messages

CFG = EngineConfig(classes=("calm", "busy"))
DOWN, UP = 1030.0, 1050.0  # the gateway's outage, gateway clock


def run(messages: list[tuple[RawMessage, float]]) -> list[Prediction]:
    engine = Engine(CFG)
    out = []
    for msg, now in messages:
        out += [o for o in engine.push(msg, now) if isinstance(o, Prediction)]
    out += engine.flush()
    return out


def with_outage(messages: list[tuple[RawMessage, float]]) -> list[tuple[RawMessage, float]]:
    """Messages sent while the gateway was down arrive at ``UP`` in one burst (0.5 ms apart,
    in the order they were sent), the ones after them shifted behind the burst."""
    before = [(m, t) for m, t in messages if t < DOWN]
    queued = [m for m, t in messages if DOWN <= t < UP]
    burst = [(m, UP + 0.0005 * i) for i, m in enumerate(queued)]
    after = [(m, t + 0.0005 * len(queued)) for m, t in messages if t >= UP]
    return before + burst + after


def test_the_outage_windows_are_predicted_after_the_burst_each_once() -> None:
    messages = device_messages("patch", 80.0, offset=1000.0)
    reference = run(messages)
    # the outage's windows: those the device's data would have closed while the gateway was down
    outage = {p.index for p in reference if DOWN < p.t_end + CFG.lateness_s <= UP}
    assert len(outage) >= 18
    got = run(with_outage(messages))
    indexes = [p.index for p in got]
    assert len(indexes) == len(set(indexes)), "a window was predicted twice"
    after_burst = {p.index for p in got if p.arrival >= UP}
    assert len(outage & after_burst) >= 0.95 * len(outage)
    assert {p.label for p in got} <= {"calm", "busy", None}  # None: before any label
    # the same windows as without the outage (bounds on the gateway clock), none invented
    bounds = {p.index: (round(p.t_start, 6), round(p.t_end, 6)) for p in reference}
    assert all(bounds.get(p.index) == (round(p.t_start, 6), round(p.t_end, 6)) for p in got)
