"""The bench's subscriber process: every prediction, the floor devices' data and the relay's
echoes of it, each stamped with its receipt time inside the read of its packet."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from .. import topics
from ..types import RawMessage
from .settings import (
    _ECHO_SUFFIX,
    _NAME_OFFSET,
    _SEQ,
    _SEQ_OFFSET,
    BenchSettings,
    any_device,
    echo_topic,
    floor_topics,
)


async def _subscribe(settings: BenchSettings, conn: Any) -> tuple[list, list, list]:
    from ..mqtt.client import open_session
    from ..mqtt.fastpath import install_ingest

    prefix = settings.prefix
    predictions: list[tuple[str, bytes, float]] = []
    floor: list[tuple[str, bytes, float]] = []
    echoes: list[tuple[str, bytes, float]] = []
    pred_filter = f"{prefix}/{any_device(settings)}/{topics.PREDICTION}"
    async with open_session(settings.broker_url, client_id=f"{prefix}-subscriber") as client:
        now = time.time
        suffix = "/" + topics.PREDICTION

        def receive(raw: RawMessage) -> None:
            # stamped inside paho's read of the packet (the gateway's ingest path), so the
            # subscriber's own queueing is not in the figures
            t = now()
            name, payload = raw.topic, raw.payload
            if name.endswith(suffix):
                predictions.append((name, payload, t))
            elif name.endswith(_ECHO_SUFFIX):  # the (first) frame's modality .. seq
                echoes.append((name, payload[_NAME_OFFSET : _SEQ_OFFSET + 8], t))
            else:
                floor.append((name, payload[_NAME_OFFSET : _SEQ_OFFSET + 8], t))

        install_ingest(client, receive)
        await client.subscribe(pred_filter)
        for name in floor_topics(settings):
            await client.subscribe(name)
        await client.subscribe(echo_topic(f"{prefix}/{any_device(settings)}/+"))
        conn.send(("ready", None))
        while not conn.poll():
            await asyncio.sleep(0.05)
    return predictions, floor, echoes


def _frame_ids(
    received: list[tuple[str, bytes, float]], device_level: int
) -> list[tuple[str, str, int, float]]:
    """``(device, modality, seq, receipt)`` of each data message (or echo) the subscriber got:
    the device is the topic's ``device_level``-th level from the end, modality and seq come
    from the (first) frame's header."""
    out = []
    for name, head, t in received:
        device = name.rsplit("/", device_level)[1]
        modality = head[:12].rstrip(b"\0").decode("ascii", "replace")
        seq = _SEQ.unpack_from(head, _SEQ_OFFSET - _NAME_OFFSET)[0]
        out.append((device, modality, seq, t))
    return out


def subscriber_main(settings: BenchSettings, conn: Any) -> None:
    """Child process: subscribe, report ready, record until told to stop, send what it saw."""
    import json

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us, wants our record
    logging.basicConfig(level=logging.WARNING)
    try:
        raw_pred, raw_floor, raw_echoes = asyncio.run(_subscribe(settings, conn))
        conn.recv()
        preds = []
        for _name, payload, t in raw_pred:
            obj = json.loads(payload)
            preds.append(
                (obj["device"], int(obj["index"]), obj.get("closed_at"), obj["latency_ms"], t)
            )
        floor = _frame_ids(raw_floor, 2)  # {prefix}/{device}/{kind}
        echoes = _frame_ids(raw_echoes, 3)  # {prefix}/{device}/{kind}/echo
        conn.send(("done", (preds, floor, echoes)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
