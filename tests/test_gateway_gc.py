"""The gateway keeps the devices' long-lived state out of the garbage collector's view
(``GatewaySettings.gc_refreeze_s``) without leaking what dies."""

from __future__ import annotations

import gc
import weakref

from streamfuse.engine import Engine
from streamfuse.gateway.housekeeping import refrozen
from tests.streams import device_messages


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_refreezing_collects_dead_cycles_first_and_freezes_the_living() -> None:
    frozen_before = gc.get_freeze_count()
    try:
        dead_a, dead_b = _Node(), _Node()
        dead_a.other, dead_b.other = dead_b, dead_a
        died = []
        weakref.finalize(dead_a, died.append, "cycle")
        del dead_a, dead_b  # a cycle: only the collector can free it
        living = _Node()
        freed = []
        weakref.finalize(living, freed.append, "living")
        found = refrozen()
        assert died == ["cycle"] and found >= 2
        assert gc.get_freeze_count() > frozen_before
        assert not any(o is living for o in gc.get_objects())  # out of the collector's view
        del living  # frozen objects still die by reference counting
        assert freed == ["living"]
    finally:
        gc.unfreeze()
        gc.collect()


def test_what_the_engine_drops_dies_without_the_collector() -> None:
    """Evicted device sessions (and the windows, labels and predictions of a live device) are
    freed by reference counting alone: freezing them while alive leaks nothing later."""
    msgs = sorted(device_messages("a", 20, seed=1) + device_messages("b", 20, seed=2),
                  key=lambda m: m[1])
    warm = Engine()  # one-time set-up (caches, first models) before serving, as warm_up does
    for msg, now in msgs:
        warm.push(msg, now)
    engine = Engine()
    gc.collect()
    gc.disable()
    try:
        for msg, now in msgs:
            engine.push(msg, now)
        engine.evict_idle(msgs[-1][1] + 100.0, 1.0)
        assert engine.counters["evicted"] == 2 and not engine.sessions
        assert gc.collect() == 0
    finally:
        gc.enable()
