"""The MQTT gateway shell: subscribe, push every message into the engine, publish predictions.

All decisions live in :class:`~streamfuse.engine.Engine`; this module only moves bytes and
reads the clock. It reconnects with capped, jittered backoff when the broker goes away.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from .. import codec, topics
from ..engine import Engine
from ..errors import ConfigError
from ..types import Prediction, RawMessage
from .broker import parse_broker_url, set_nodelay

log = logging.getLogger("streamfuse.gateway")


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """How the gateway talks to the broker."""

    broker_url: str = "mqtt://127.0.0.1:1883"
    prefix: str = topics.DEFAULT_PREFIX
    client_id: str | None = None
    qos: int = 0
    publish_qos: int = 0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    tick_s: float = 0.1


class Gateway:
    """Hosts an :class:`Engine` behind an aiomqtt consumer.

    ``on_prediction`` (optional) sees every prediction after it is published; the demo's live
    view uses it.
    """

    def __init__(
        self,
        engine: Engine,
        settings: GatewaySettings,
        *,
        clock: Callable[[], float] = time.time,
        on_prediction: Callable[[Prediction], None] | None = None,
        logger: logging.Logger = log,
    ) -> None:
        if engine.prefix != settings.prefix:
            raise ConfigError(
                f"the engine parses topics under {engine.prefix!r} but the gateway subscribes "
                f"under {settings.prefix!r}; give both the same prefix"
            )
        self.engine = engine
        self.settings = settings
        self._clock = clock
        self._on_prediction = on_prediction
        self._log = logger
        self.connected = asyncio.Event()
        self.published = 0
        self.reconnects = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, reconnecting whenever the broker drops us."""
        host, port, username, password, tls = parse_broker_url(self.settings.broker_url)
        backoff = self.settings.backoff_initial_s
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    host,
                    port,
                    username=username,
                    password=password,
                    identifier=self.settings.client_id,
                    logger=logging.getLogger("streamfuse.gateway.mqtt"),
                    tls_params=aiomqtt.TLSParameters() if tls else None,
                ) as client:
                    set_nodelay(client)
                    await client.subscribe(
                        topics.subscription(self.settings.prefix), qos=self.settings.qos
                    )
                    self.connected.set()
                    backoff = self.settings.backoff_initial_s
                    self._log.info(
                        "gateway subscribed to %s on %s:%d",
                        topics.subscription(self.settings.prefix),
                        host,
                        port,
                    )
                    await self._consume(client, stop)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if stop.is_set():
                    break
                self.reconnects += 1
                delay = min(self.settings.backoff_max_s, backoff) * random.uniform(0.5, 1.0)
                self._log.warning("broker connection lost (%s); reconnecting in %.2f s", exc, delay)
                backoff = min(self.settings.backoff_max_s, backoff * 2)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        self.connected.clear()

    async def _consume(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        ticker = asyncio.create_task(self._tick(client, stop), name="streamfuse[gateway].tick")
        stopper = asyncio.create_task(stop.wait(), name="streamfuse[gateway].stop")
        reader = asyncio.create_task(self._read(client), name="streamfuse[gateway].ingest")
        try:
            done, _ = await asyncio.wait(
                {reader, stopper, ticker}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in (reader, stopper, ticker):
                task.cancel()
            await asyncio.gather(reader, stopper, ticker, return_exceptions=True)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                payload = b"" if payload is None else str(payload).encode()
            outputs = self.engine.push(
                RawMessage(str(message.topic), bytes(payload)), self._clock()
            )
            await self._publish(client, outputs)

    async def _tick(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.tick_s)
            await self._publish(client, self.engine.tick(self._clock()))

    async def _publish(self, client: aiomqtt.Client, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, Prediction):
                await client.publish(
                    topics.prediction_topic(self.settings.prefix, out.device),
                    codec.encode_prediction(out),
                    qos=self.settings.publish_qos,
                )
                self.published += 1
                if self._on_prediction is not None:
                    self._on_prediction(out)
