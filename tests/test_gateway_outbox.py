"""Predictions at ``publish_qos = 1`` keep flowing while ingest is busy, and every prediction
not published is counted (issue 17, item 9).

Before: QoS 1 predictions went out one awaited publish at a time from their own task, which
got a turn only when the busy read path yielded, and then waited a broker round trip per
prediction: at 400-800 devices close-to-receipt reached 7-15 s and 9,255 predictions were
dropped from a full outbox. Here the engine is slowed (3 ms per data message, a sleep) so
ingest is the bottleneck with 22 devices, as it is with hundreds on a real engine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomqtt
import pytest

from streamfuse import engine as engine_module
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.types import Prediction, RawMessage
from tests.chaos.fleet import Fleet
from tests.gateway_configs import gateway_config

pytestmark = pytest.mark.broker

SLOW_S = 0.003
DEVICES = 22
SECONDS = 5.0
MAX_OUTBOX = 32


@pytest.fixture
def slowed_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    push = engine_module.Engine.push

    def slowed(self: Any, raw: Any, now: float) -> Any:
        if not str(getattr(raw, "topic", "")).endswith("/label"):
            time.sleep(SLOW_S)
        return push(self, raw, now)

    monkeypatch.setattr(engine_module.Engine, "push", slowed)


def test_qos1_predictions_are_handed_over_at_once_and_all_arrive(
    slowed_engine: None, broker_url: str, topic_prefix: str
) -> None:
    config = gateway_config(broker_url=broker_url, prefix=topic_prefix, publish_qos=1,
                            max_outbox=MAX_OUTBOX)
    waiting_at_message: list[int] = []
    made: list[Prediction] = []
    gateway: Gateway | None = None

    def on_message(_raw: RawMessage) -> None:
        assert gateway is not None
        waiting_at_message.append(len(gateway.outbox.queue))

    gateway = Gateway(Engine(config.engine_config(), prefix=topic_prefix), config,
                      on_prediction=made.append, on_message=on_message)
    received: list[str] = []

    async def main() -> None:
        assert gateway is not None
        host, port, *_ = parse_broker_url(broker_url)
        async with aiomqtt.Client(host, port) as sub:
            await sub.subscribe(f"{topic_prefix}/+/prediction", qos=1)

            async def listen() -> None:
                async for message in sub.messages:
                    received.append(str(message.topic))

            listener = asyncio.create_task(listen())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            await asyncio.wait_for(gateway.connected.wait(), 30)
            fleet = Fleet(broker_url, topic_prefix, DEVICES, SECONDS).start()
            await asyncio.to_thread(fleet._thread.join)  # type: ignore[union-attr]
            await asyncio.sleep(1.0)
            stop.set()
            await task
            fleet.stop()
            await asyncio.sleep(0.5)  # the last predictions reach the subscriber
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(main())
    shed = sum(gateway.inbox.shed.values())
    print(f"{gateway.processed} messages, {len(made)} predictions made, {gateway.published} "
          f"published, {gateway.publish_dropped} dropped, {len(received)} received, "
          f"shed {shed}, drain_left {gateway.drain_left}")
    assert len(made) > MAX_OUTBOX  # more predictions than the outbox holds
    # every prediction is handed to the connection before the next message is taken
    assert max(waiting_at_message) == 0
    # none dropped from a full outbox; all acknowledged and received
    assert gateway.publish_dropped == 0
    assert gateway.published == len(made) == len(received)
    assert gateway.metrics.published._value.get() == len(made)


def test_every_prediction_dropped_from_a_full_outbox_is_counted() -> None:
    config = gateway_config(max_outbox=5)
    gateway = Gateway(Engine(config.engine_config()), config)
    preds = [Prediction(f"d{i}", 0.0, 2.0, "selected", "calm", {"calm": 1.0}, "logreg")
             for i in range(12)]
    gateway.outbox.emit(preds)  # not connected: nothing goes out
    assert len(gateway.outbox.queue) == 5
    assert [p.device for p in gateway.outbox.queue] == [f"d{i}" for i in range(7, 12)]
    assert gateway.publish_dropped == 7 == gateway.metrics.publish_dropped._value.get()
    assert gateway.outbox.discard() == 5  # left at shutdown: counted too
    assert gateway.publish_dropped == 12 == gateway.metrics.publish_dropped._value.get()
