"""Gateway read path without a broker: burst draining, labels held back while data waits,
QoS 0 predictions written through paho at once, shedding of held labels."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway, GatewaySettings
from streamfuse.types import RawMessage
from tests.streams import device_messages


@dataclass
class _Message:
    topic: str
    payload: bytes


@dataclass
class _Info:
    rc: int = 0


class _FakePaho:
    """What the gateway uses of paho: publish, loop_read, loop_write, the write-watch flag."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int]] = []
        self.flags_seen: list[bool] = []
        self.writes = 0
        self.reads = 0
        self._registered_write = False

    def publish(self, topic: str, payload: bytes, qos: int) -> _Info:
        self.flags_seen.append(self._registered_write)
        self.published.append((topic, payload, qos))
        return _Info()

    def want_write(self) -> bool:
        return False

    def loop_write(self) -> int:
        self.writes += 1
        return 0

    def loop_read(self) -> int:
        self.reads += 1  # nothing more on the socket: no message is queued
        return 0


class _FakeClient:
    """The aiomqtt surface the read path uses: ``messages`` over the gateway's own queue."""

    def __init__(self, inbox: asyncio.Queue) -> None:
        self._client = _FakePaho()
        self._inbox = inbox

    @property
    def messages(self) -> Any:
        inbox = self._inbox

        class _It:
            def __aiter__(self) -> _It:
                return self

            async def __anext__(self) -> Any:
                return await inbox.get()

        return _It()


def _run(gateway: Gateway, client: _FakeClient, until: Any) -> None:
    async def main() -> None:
        reader = asyncio.create_task(gateway._read(client))  # type: ignore[arg-type]
        for _ in range(2000):
            await asyncio.sleep(0)
            if until():
                break
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    asyncio.run(main())


def test_labels_wait_for_queued_data_and_predictions_go_out_at_once() -> None:
    msgs = device_messages("a", 6, seed=2)
    seen: list[str] = []
    arrival = {raw.payload: now for raw, now in msgs}
    now = [0.0]

    def hand_over(raw: RawMessage) -> None:  # the gateway's clock reads each message's arrival
        seen.append(raw.topic.rpartition("/")[2])
        now[0] = arrival[raw.payload]

    engine = Engine()
    gateway = Gateway(
        engine, GatewaySettings(publish_qos=0), clock=lambda: now[0], on_message=hand_over
    )
    client = _FakeClient(gateway.inbox)
    for raw, _now in msgs:  # one burst: everything queued before the reader wakes
        gateway.inbox.put_nowait(_Message(raw.topic, raw.payload))
    n_labels = sum(raw.topic.endswith("/label") for raw, _ in msgs)
    assert n_labels == 6
    _run(gateway, client, lambda: gateway.processed == len(msgs))
    assert gateway.processed == len(msgs)
    # every label was handed to the engine after every data message of the burst, in order
    assert seen[-n_labels:] == ["label"] * n_labels and "label" not in seen[:-n_labels]
    assert engine.counters["labels"] == n_labels
    paho = client._client
    preds = engine.counters["predictions"]
    assert preds >= 3 and len(paho.published) == gateway.published == preds
    assert all(qos == 0 and topic.endswith("/a/prediction") for topic, _, qos in paho.published)
    # aiomqtt's per-publish write watch was suppressed, and paho wrote at once
    assert all(paho.flags_seen) and not paho._registered_write and paho.writes >= 1
    assert paho.reads >= len(msgs) - n_labels  # the socket was read on between messages


def test_held_labels_are_bounded_and_shed_then_drained_at_shutdown() -> None:
    gateway = Gateway(Engine(), GatewaySettings(max_queued_incoming=3))
    label = [
        (raw, now) for raw, now in device_messages("b", 5, seed=3) if raw.topic.endswith("/label")
    ]
    for raw, _ in label:
        gateway._defer(_Message(raw.topic, raw.payload))
    assert len(gateway._labels) == 3 and gateway.inbox.shed["label"] == 2
    handed: list[RawMessage] = []
    gateway._on_message = handed.append
    asyncio.run(gateway._drain(deadline=float("inf")))
    assert [m.payload for m in handed] == [raw.payload for raw, _ in label[:3]]
    assert not gateway._labels


def test_idle_devices_are_evicted_and_their_counters_kept() -> None:
    from tests.streams import merge

    now = {"t": 0.0}
    engine = Engine()
    gateway = Gateway(engine, GatewaySettings(idle_evict_s=2.0), clock=lambda: now["t"])
    msgs = merge(device_messages("a", 10, seed=1), device_messages("b", 20, seed=2))
    last_a = max(t for m, t in msgs if "/a/" in m.topic)

    def feed_until(t_end: float) -> None:
        for m, t in msgs:
            if now["t"] < t <= t_end:
                engine.push(m, t)
        now["t"] = t_end

    feed_until(last_a + 1.0)
    gateway.evict_idle()
    assert set(engine.sessions) == {"a", "b"}  # a has been silent 1 s < 2 s
    feed_until(last_a + 2.5)
    chunks_before = gateway.align_totals()["chunks"]
    gateway.evict_idle()
    assert set(engine.sessions) == {"b"} and engine.counters["evicted"] == 1
    # the evicted device's counters still count for /metrics
    assert gateway.align_totals()["chunks"] == chunks_before
    feed_until(1000 + 20.5)
    gateway.evict_idle()
    assert set(engine.sessions) == {"b"}  # b sent its last chunk about 0.5 s ago
