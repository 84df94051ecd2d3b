"""Simulated devices publishing through a real broker, paced, from a background thread.

:class:`Fleet` encodes each device's chunks and labels up front (:func:`tests.streams.
device_messages`, device clocks from 0) and publishes them with a paho client of its own at
QoS 1, devices in real time (about 31 messages a second each), so the offered rate is set by
the number of devices. It counts what the broker acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as paho

from streamfuse.mqtt.address import parse_broker_url
from streamfuse.types import RawMessage
from tests.streams import device_messages, merge

#: data messages a second of one device of tests.streams (3 modalities x 10 chunks)
DATA_RATE = 30.0


class Fleet:
    """``devices`` devices named ``{name}{i}`` publishing ``seconds`` of data under ``prefix``."""

    def __init__(
        self,
        url: str,
        prefix: str,
        devices: int,
        seconds: float,
        *,
        name: str = "dev",
        qos: int = 1,
        speed: float = 1.0,
    ) -> None:
        self.url, self.prefix, self.qos, self.speed = url, prefix, qos, speed
        self.messages: list[tuple[RawMessage, float]] = [
            (m, t - 0.0)
            for m, t in merge(*(
                device_messages(f"{name}{i}", seconds, seed=i, offset=0.0, prefix=prefix)
                for i in range(devices)
            ))
        ]
        self.sent = 0
        self.acked = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        host, port, *_ = parse_broker_url(url)
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        # back within half a second of a broker restart (paho's default backoff grows to 2 min)
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_publish(self, *_: object) -> None:
        self.acked += 1

    def start(self) -> Fleet:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fleet")
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        for msg, at in self.messages:
            if self._stop.is_set():
                return
            wait = t0 + at / self.speed - time.monotonic()
            if wait > 0.002:
                time.sleep(wait)
            self._client.publish(msg.topic, msg.payload, qos=self.qos)
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._client.loop_stop()
        self._client.disconnect()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def publish_all(url: str, messages: Iterable[RawMessage], qos: int = 1) -> int:
    """Publish ``messages`` as fast as the broker takes them; returns how many it acknowledged."""
    host, port, *_ = parse_broker_url(url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    acked = 0
    try:
        batch: list = []
        for m in [*messages, None]:  # in batches, each acknowledged before the next is sent
            if m is not None:
                batch.append(client.publish(m.topic, m.payload, qos=qos))
            if len(batch) >= 5000 or (m is None and batch):
                for info in batch:
                    info.wait_for_publish(30)
                acked += sum(1 for info in batch if info.is_published())
                batch = []
        return acked
    finally:
        client.loop_stop()
        client.disconnect()
