"""The replay shell: recorded or file-derived items through the engine, or back onto a broker.

Offline replay pushes every item with its recorded (or derived) arrival as ``now``, as fast as
the engine goes, then flushes: same input, same predictions, bit for bit (latency figures are
left empty because no timer is given to the engine). Republishing sends the same messages to an
MQTT broker paced at ``speed`` × real time, for testing a live gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .. import codec, topics
from ..engine import Engine, Item
from ..mqtt.address import parse_broker_url
from ..mqtt.client import open_session
from ..types import Chunk, Label, Prediction, RawMessage, Rejection
from .chunks import chunk_stream
from .mcap_io import read_session
from .readers import Recording

log = logging.getLogger("streamfuse.replay")

Timed = tuple[Item, float]


def session_items(path: str | Path) -> Iterator[Timed]:
    """A session file's messages as ``(RawMessage, arrival)`` in recorded order."""
    for m in read_session(path):
        yield m.message, m.arrival


def recording_items(
    recording: Recording,
    device: str,
    *,
    chunk_s: float = 0.1,
    t_offset: float = 0.0,
    t_stop: float | None = None,
) -> Iterator[Timed]:
    """A recording's chunks as ``(Chunk, arrival)``; arrival = end of the chunk's last sample."""
    for chunk in chunk_stream(recording, device, chunk_s=chunk_s, t_offset=t_offset, t_stop=t_stop):
        yield chunk, chunk.arrival


def replay_offline(
    engine: Engine,
    items: Iterable[Timed],
    *,
    on_item: Callable[[], None] | None = None,
) -> tuple[list[Prediction], list[Rejection]]:
    """Push every ``(item, now)`` into ``engine``, then flush; return predictions and rejections.

    ``on_item`` is called after each item (a progress bar's advance).
    """
    predictions: list[Prediction] = []
    rejections: list[Rejection] = []

    def keep(outputs: list) -> None:
        for out in outputs:
            (predictions if isinstance(out, Prediction) else rejections).append(out)

    for item, now in items:
        keep(engine.push(item, now))
        if on_item is not None:
            on_item()
    keep(engine.flush())
    return predictions, rejections


def to_message(item: Item, prefix: str) -> RawMessage:
    """The MQTT message a device would have published for ``item``."""
    if isinstance(item, RawMessage):
        return item
    if isinstance(item, Chunk):
        return RawMessage(
            topics.data_topic(prefix, item.device, item.modality), codec.encode_chunk(item)
        )
    if isinstance(item, Label):
        return RawMessage(topics.label_topic(prefix, item.device), codec.encode_label(item))
    raise TypeError(f"cannot publish {type(item).__name__}")


async def republish(
    broker_url: str,
    items: Iterable[Timed],
    *,
    prefix: str = topics.DEFAULT_PREFIX,
    speed: float = 1.0,
    skip_predictions: bool = True,
    on_item: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Publish ``items`` to the broker, the gap between two items divided by ``speed``.

    Recorded prediction topics are skipped by default (the gateway under test makes its own).
    Returns how many messages were published.
    """
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    host, port, *_ = parse_broker_url(broker_url)
    sent = 0
    mqtt_log = logging.getLogger("streamfuse.replay.mqtt")
    async with open_session(broker_url, logger=mqtt_log) as client:
        start_wall: float | None = None
        start_rec = 0.0
        for item, now in items:
            msg = to_message(item, prefix)
            if skip_predictions and msg.topic.endswith("/" + topics.PREDICTION):
                continue
            if start_wall is None:
                start_wall, start_rec = clock(), now
            delay = (now - start_rec) / speed - (clock() - start_wall)
            if delay > 0:
                await asyncio.sleep(delay)
            await client.publish(msg.topic, msg.payload, qos=0)
            sent += 1
            if on_item is not None:
                on_item()
    log.info("republished %d messages to %s:%d at %gx", sent, host, port, speed)
    return sent
