"""Simulated wearables pushed into an in-process Engine in real time (web view tests, bench).

The devices keep wall-clock time (as NTP-synced wearables would, like the demo's); every
``tick_s`` the fleet is advanced to now and each event due is pushed with its send time as
arrival, then the engine is ticked. Predictions go to ``on_prediction``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from simulators.device import Fleet
from simulators.faults import FaultProfile
from streamfuse.engine import Engine
from streamfuse.types import Prediction


class LiveFeed:
    def __init__(
        self,
        engine: Engine,
        devices: int,
        *,
        seed: int = 0,
        on_prediction: Callable[[Prediction], None] | None = None,
        tick_s: float = 0.05,
    ) -> None:
        self.engine = engine
        self.wall0 = time.time()
        self.fleet = Fleet(devices, seed=seed, faults=FaultProfile(clock_offset_s=self.wall0))
        self.on_prediction = on_prediction
        self.tick_s = tick_s
        self.predictions = 0
        self.pushed = 0
        self.busy_s = 0.0  # thread CPU seconds spent pushing, ticking and in on_prediction

    def step(self) -> None:
        """Push everything due by now, then tick."""
        started = time.thread_time()
        engine = self.engine
        outputs = []
        for event in self.fleet.advance(time.time() - self.wall0):
            outputs.extend(engine.push(event.payload, self.wall0 + event.send_time))
            self.pushed += 1
        outputs.extend(engine.tick(time.time()))
        for out in outputs:
            if isinstance(out, Prediction):
                self.predictions += 1
                if self.on_prediction is not None:
                    self.on_prediction(out)
        self.busy_s += time.thread_time() - started

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.step()
            try:
                await asyncio.wait_for(stop.wait(), self.tick_s)
            except TimeoutError:
                pass
