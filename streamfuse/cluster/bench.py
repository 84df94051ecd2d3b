"""``streamfuse bench --cluster``: the latency bench's gateway under test as a fleet on Ray.

:class:`FleetUnderBench` has what the bench asks of the gateway it measures (see
:class:`streamfuse.latency.orchestration.HostedGateway`): a lifecycle (``serve``,
``should_exit``, ``started``), the settings, and once started a view with ``connected``,
``published`` and ``engine.stats()``, here summed over every shard of every owner; and
``cpu_time``, the CPU seconds of the owners' processes, since they are not the bench's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ..gateway.config import ShardsSection
from .commands import launch
from .runtime import join


class _Engine:
    def __init__(self, stats: dict[str, dict[str, int]]) -> None:
        self._stats = stats

    def stats(self) -> dict[str, dict[str, int]]:
        return self._stats


class FleetView:
    """The fleet as the bench reads a gateway: connected, predictions published, counters."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.published = 0
        self.engine = _Engine({})

    def add(self, totals: list[dict[str, Any]]) -> None:
        sums: dict[str, Counter[str]] = {}
        for owner in totals:
            self.published += owner["published"]
            for part, counts in owner["stats"].items():
                sums.setdefault(part, Counter()).update(counts)
        self.engine = _Engine({part: dict(c) for part, c in sums.items()})


class FleetUnderBench:
    """A fleet of ``actors`` owners serving ``shards`` shards with the bench's gateway
    settings (:func:`streamfuse.gateway.server.bench_server`)."""

    def __init__(self, settings: Any, *, actors: int, shards: int) -> None:
        from ..gateway.server import bench_server

        base = bench_server(settings).config
        self.config = dataclasses.replace(base, shards=ShardsSection(count=shards))
        self.actors = actors
        self.name = f"bench-{settings.prefix}"
        self.should_exit = asyncio.Event()
        self.started = asyncio.Event()
        self.gateway: FleetView | None = None
        self._handle: Any = None

    async def serve(self) -> int:
        import ray

        self._handle = await asyncio.to_thread(launch, self.config, self.actors, name=self.name)
        view = FleetView()
        view.connected.set()
        self.gateway = view
        self.started.set()
        try:
            await self.should_exit.wait()
        finally:
            view.add(await asyncio.to_thread(ray.get, self._handle.totals.remote()))
            await asyncio.to_thread(ray.get, self._handle.stop.remote())
            ray.kill(self._handle)
        return 0

    def cpu_time(self) -> float:
        """CPU seconds used so far by every owner's process."""
        import ray

        return float(sum(t["cpu_s"] for t in ray.get(self._handle.totals.remote())))


@contextlib.contextmanager
def fleet_hosts(counts: tuple[int, ...], shards: int) -> Iterator[dict[int, Callable]]:
    """A local Ray for the bench, and per owner count a builder of the fleet under test."""
    ray = join(None, num_cpus=max(2, *counts))
    try:
        yield {n: functools.partial(FleetUnderBench, actors=n, shards=shards) for n in counts}
    finally:
        ray.shutdown()
