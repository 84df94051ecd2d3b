"""An in-process gateway for chaos tests, with what they measure: when (on the gateway's own
clock) each device's predictions were made, every message handed to the engine, and the
process's resident memory."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psutil

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.types import Prediction, RawMessage
from tests.gateway_configs import gateway_config


class Live:
    """A :class:`Gateway` on ``url`` under ``prefix``; ``run()`` starts it on the running loop."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        engine: Engine | None = None,
        engine_config: EngineConfig | None = None,
        keep: Callable[[RawMessage], bool] | None = None,
        **settings: Any,
    ) -> None:
        """``keep``: which messages handed to the engine :attr:`messages` keeps (default
        all); the others are only counted in :attr:`not_kept` (a 100k hostile mix kept whole
        was 1 GB of this process's memory, which the test measures as the gateway's)."""
        settings.setdefault("backoff_max_s", 0.5)
        settings.setdefault("backoff_initial_s", 0.1)
        self.config = gateway_config(broker_url=url, prefix=prefix, **settings)
        if engine is None:
            engine = Engine(engine_config or self.config.engine_config(), prefix=prefix)
        #: device -> gateway-clock times of its predictions, and their windows' starts
        self.made: dict[str, list[float]] = defaultdict(list)
        self.windows: dict[str, list[float]] = defaultdict(list)
        self.indices: dict[str, list[int]] = defaultdict(list)  # window indices predicted
        #: the loop-lag probe: (wall time, how late a 5 ms sleep woke up) for every wake-up
        self.lags: list[tuple[float, float]] = []
        self.messages: list[RawMessage] = []
        self.not_kept = 0
        self.keep = keep
        self.gateway = Gateway(engine, self.config, clock=time.time,
                               on_prediction=self._prediction, on_message=self._message)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _message(self, message: RawMessage) -> None:
        if self.keep is None or self.keep(message):
            self.messages.append(message)
        else:
            self.not_kept += 1

    def _prediction(self, out: Prediction) -> None:
        self.made[out.device].append(self.gateway.clock())
        self.windows[out.device].append(out.t_start)
        self.indices[out.device].append(out.index)

    async def run(self) -> Live:
        self.task = asyncio.create_task(self.gateway.run(self.stop))
        self.probe = asyncio.create_task(self._probe())
        await asyncio.wait_for(self.gateway.connected.wait(), 30)
        return self

    async def _probe(self) -> None:
        """Sleep 5 ms at a time on the gateway's loop and note how late each wake-up is: how
        long the loop was held by something else (the gateway's work, or the machine)."""
        clock = time.perf_counter
        while not self.stop.is_set():
            t0 = clock()
            await asyncio.sleep(0.005)
            self.lags.append((time.time(), clock() - t0 - 0.005))

    def loop_stall(self, after: float, before: float) -> float:
        """The longest loop lag seen between ``after`` and ``before`` (wall clock)."""
        return max((lag for t, lag in self.lags if after <= t <= before), default=0.0)

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.probe

    def longest_silence(
        self, device: str, after: float = 0.0, before: float = float("inf")
    ) -> float:
        """The longest time between two predictions of ``device`` made between ``after`` and
        ``before``, on the gateway's clock."""
        times = [t for t in self.made[device] if after <= t <= before]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def rss() -> int:
    return int(psutil.Process().memory_info().rss)
