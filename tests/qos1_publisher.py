"""A recorded fleet published at QoS 1, noting each chunk the broker acknowledged.

The tests that hold the gateway to "nothing acknowledged is lost" (a kill -9, an overload, a
shard moved between owners) publish hand-made device streams (:mod:`tests.streams`) and keep
the key of every chunk whose PUBACK came back: those the broker now holds for the gateway's
session until the gateway acknowledges them, so each must turn up in its journal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiomqtt

from streamfuse import codec
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.types import RawMessage
from tests.streams import device_messages, merge

#: (device, modality, sequence number) of a chunk
ChunkKey = tuple[str, str, int]


def chunk_key(msg: RawMessage) -> ChunkKey | None:
    """The chunk a binary data message carries (None for a label or a JSON message)."""
    _, device, kind = msg.topic.rsplit("/", 2)
    if kind == "label" or not msg.payload.startswith(codec.MAGIC):
        return None
    return device, kind, codec.HEADER.unpack_from(msg.payload)[7]


def fleet_messages(
    devices: list[str], seconds: float, prefix: str | Callable[[str], str]
) -> list[tuple[RawMessage, float]]:
    """Every device's messages (device ``i`` seeded ``i``) merged in the order they are due,
    each with when it is due in seconds from the start; ``prefix``: the topic prefix, or the
    prefix of each device (a shard's)."""
    return merge(*(
        device_messages(d, seconds, seed=i, offset=0.0,
                        prefix=prefix(d) if callable(prefix) else prefix)
        for i, d in enumerate(devices)
    ))  # fmt: skip


async def publish_acked(
    url: str,
    messages: list[tuple[RawMessage, float]],
    acked: set[ChunkKey],
    *,
    start: float | None = None,
    max_inflight: int = 200,
) -> None:
    """Publish ``messages`` at QoS 1 on one connection; ``acked`` gets the key of each chunk
    the broker acknowledged.

    With ``start`` (wall-clock seconds, ``time.time()``), each goes out when it is due,
    ``start`` plus its time, after the previous one was acknowledged (devices in real time);
    without, all at once, up to ``max_inflight`` unacknowledged (as fast as QoS 1 goes).
    """
    host, port, *_ = parse_broker_url(url)
    async with aiomqtt.Client(host, port, max_inflight_messages=max_inflight) as client:
        if start is None:
            await asyncio.gather(*(client.publish(m.topic, m.payload, qos=1) for m, _ in messages))
            acked.update(k for m, _ in messages if (k := chunk_key(m)) is not None)
            return
        for msg, due in messages:
            wait = start + due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await client.publish(msg.topic, msg.payload, qos=1)  # returns on the PUBACK
            key = chunk_key(msg)
            if key is not None:
                acked.add(key)
