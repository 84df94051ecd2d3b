"""An outside observer of a running gateway: scores published predictions against labels.

It subscribes like any client would, so what it reports (accuracy, latency) is what a user of
the prediction stream sees. :class:`Scoreboard` is the pure part; :func:`watch` the MQTT part.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import topics
from ..labelling import window_truth
from ..mqtt.client import open_session


@dataclass(slots=True)
class DeviceBoard:
    latest: dict[str, Any] | None = None  # the last prediction, as decoded from JSON
    waiting: deque[tuple[float, float, str | None]] = field(default_factory=deque)
    labels: deque[tuple[float, float, str]] = field(default_factory=lambda: deque(maxlen=256))
    predictions: int = 0
    scored: int = 0
    correct: int = 0


class Scoreboard:
    """Online accuracy of published predictions against the label stream (pure, no IO).

    Label times must be on the same clock as window bounds (true for the demo, whose simulated
    devices use the gateway's wall clock); a window is scored by the label that overlaps it most,
    once labels cover its end.
    """

    def __init__(self, latency_window: int = 10_000) -> None:
        self.devices: dict[str, DeviceBoard] = {}
        self.latencies: deque[float] = deque(maxlen=latency_window)
        self.truth: Counter[str] = Counter()

    def _board(self, device: str) -> DeviceBoard:
        return self.devices.setdefault(device, DeviceBoard())

    def on_prediction(self, device: str, msg: dict[str, Any], received: float) -> None:
        board = self._board(device)
        board.latest = msg
        board.predictions += 1
        closed = msg.get("closed_at")
        if isinstance(closed, int | float):
            self.latencies.append(received - float(closed))
        label = msg.get("label")
        board.waiting.append(
            (float(msg["t_start"]), float(msg["t_end"]), label if isinstance(label, str) else None)
        )
        self._score(board)

    def on_label(self, device: str, t_start: float, t_end: float, value: str) -> None:
        board = self._board(device)
        board.labels.append((t_start, t_end, value))
        self._score(board)

    def _score(self, board: DeviceBoard) -> None:
        if not board.labels:
            return
        horizon = board.labels[-1][1]
        while board.waiting and board.waiting[0][1] <= horizon:
            t_start, t_end, predicted = board.waiting.popleft()
            truth = window_truth(board.labels, t_start, t_end)
            if truth is None:
                continue
            self.truth[truth] += 1
            board.scored += 1
            board.correct += int(predicted == truth)

    @property
    def scored(self) -> int:
        return sum(b.scored for b in self.devices.values())

    @property
    def accuracy(self) -> float:
        n = self.scored
        return sum(b.correct for b in self.devices.values()) / n if n else float("nan")

    @property
    def majority_rate(self) -> float:
        n = sum(self.truth.values())
        return max(self.truth.values()) / n if n else float("nan")

    def latency_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(np.fromiter(self.latencies, float), q)) * 1e3


async def watch(
    broker_url: str,
    prefix: str,
    board: Scoreboard,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Subscribe to every device's predictions and labels under ``prefix`` until ``stop``."""
    mqtt_log = logging.getLogger("streamfuse.monitor.mqtt")
    async with open_session(broker_url, logger=mqtt_log) as client:
        await client.subscribe(f"{prefix}/+/{topics.PREDICTION}")
        await client.subscribe(f"{prefix}/+/{topics.LABEL}")
        if ready is not None:
            ready.set()

        async def consume() -> None:
            async for message in client.messages:
                received = clock()
                device, kind = topics.parse(str(message.topic), prefix)
                obj = json.loads(message.payload)
                if kind == topics.PREDICTION:
                    board.on_prediction(device, obj, received)
                else:
                    board.on_label(device, obj["t_start"], obj["t_end"], obj["value"])

        task = asyncio.create_task(consume(), name="streamfuse[monitor].consume")
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
