"""The gateway's timers: window ticks, idle-device eviction, metrics, GC re-freezes, checkpoints.

They run whether or not the broker is reachable: a window whose lateness budget runs out
closes on a tick, and state is saved on schedule even while disconnected.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine import Engine
    from .app import Gateway


def refrozen() -> int:
    """Collect the objects made since the last :func:`gc.freeze` (the frozen ones are not
    looked at), then freeze the survivors; returns how many unreachable objects were found."""
    found = gc.collect()
    gc.freeze()
    return found


class Housekeeping:
    """The periodic work of one gateway, and the device bookkeeping it needs."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.retired_align: Counter[str] = Counter()  # align counters of evicted devices

    async def run(self, stop: asyncio.Event) -> None:
        """Tick, evict, refresh, re-freeze and checkpoint on their schedules until ``stop``."""
        gateway = self.gateway
        r = gateway.config.resources
        interval = gateway.config.checkpoint.interval_s
        refresh = gateway.config.metrics.refresh_s
        mono = time.monotonic
        next_ckpt = mono() + interval
        next_evict = mono() + r.evict_every_s
        next_refresh = mono() + refresh
        refreeze = r.gc_refreeze_s if r.gc_freeze and r.gc_refreeze_s > 0 else None
        next_freeze = mono() + (refreeze or 0.0)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), r.tick_s)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            gateway.outbox.emit(gateway.durable.tick(gateway.ingest.horizon()))
            gateway.checkpoint_done()
            t = mono()
            if t >= next_evict:
                next_evict = t + r.evict_every_s
                self.evict_idle()
            if t >= next_refresh:
                next_refresh = t + refresh
                self.refresh_metrics()
            if refreeze is not None and t >= next_freeze:
                next_freeze = t + refreeze
                refrozen()
            if gateway.store is not None and t >= next_ckpt:
                next_ckpt = t + interval
                gateway.checkpoint(background=True)

    def evict_idle(self) -> None:
        """Forget devices silent for ``resources.idle_evict_s`` (their counters are kept)."""
        gateway = self.gateway
        gateway.outbox.emit(
            gateway.durable.evict(gateway.ingest.horizon(), gateway.config.resources.idle_evict_s)
        )

    def evict_from(self, engine: Engine, now: float, idle_s: float) -> list:
        """``engine.evict_idle(now, idle_s)``, keeping the evicted devices' align counters."""
        before = dict(engine.sessions)
        out = engine.evict_idle(now, idle_s)
        for device, session in before.items():
            if device not in engine.sessions:
                self.retired_align.update(session.aligner.counters)
        return out

    def align_totals(self, live: Mapping[str, int] | None = None) -> Counter[str]:
        """Alignment counters of live devices (``live``: the engine's ``stats()["align"]``
        if already at hand) plus those of evicted ones."""
        total: Counter[str] = Counter(self.retired_align)
        total.update(self.gateway.engine.stats()["align"] if live is None else live)
        return total

    def refresh_metrics(self) -> None:
        """Copy the engine's counters into the Prometheus metrics (and the read path's
        message counts, which it adds once per burst)."""
        gateway = self.gateway
        gateway.ingest.flush_counts()
        engine = gateway.engine
        stats = dict(engine.stats())  # once: it walks every device
        stats["align"] = dict(self.align_totals(stats["align"]))
        gateway.metrics.refresh(
            stats, len(engine.sessions), engine.metrics(), gateway.durable.figures()
        )
