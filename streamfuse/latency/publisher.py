"""The bench's publisher process: a simulated fleet played at real rates, every publish logged.

Every chunk is pre-generated and encoded before the start, then published when its span ends
on the wall clock, and the wall time just before each ``publish`` call is logged per
(device, modality, seq). Each device has its own chunk phase (seeded, uniform in one chunk
period), so the fleet's messages spread over each 100 ms as a real fleet's would;
``lockstep`` puts every device on phase 0 (the worst case). With ``bundle`` each device sends
its three chunks of a period as one bundle when the last of them is complete; the log then
holds one row per part, all with the bundle's publish time.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import topics
from ..codec import HEADER_SIZE
from ..errors import BrokerError
from .settings import (
    _CODES,
    _T0_OFFSET,
    BUNDLE_CODE,
    LABEL_CODE,
    LOG_DTYPE,
    MODALITIES,
    BenchSettings,
    device_topic_prefix,
)

#: longest sleep between looks for a stop request while waiting for a message's time
STOP_CHECK_S = 0.05


def _fleet_messages(
    devices: int, duration: float, seed: int, *, bundle: bool = False, lockstep: bool = False
) -> tuple[list[tuple[float, int, int, Any]], float]:
    """Pre-generate the fleet's messages: ``(due, device, kind, payload)`` sorted by ``due``.

    ``due`` is seconds after the start: a chunk is due when its span ends (``t0 + n / fs``, the
    first moment a real device could send it), a bundle when the span of its last part ends; a
    label one second after the second it covers. Device time is the publisher's clock: each
    device's chunks start at its own phase (seeded, uniform in ``[0, 0.1)`` s; 0 for every
    device with ``lockstep``) and ``t0`` carries that phase. ``kind`` is the modality's index
    in MODALITIES, LABEL_CODE or BUNDLE_CODE; a data payload is ``(chunks, frame)``, the frame
    a ``bytearray`` whose ``t0`` fields :func:`_stamp` sets at publish time.
    """
    from simulators import FaultProfile, Fleet
    from simulators.device import Bundle

    from ..codec import encode_bundle, encode_chunk
    from ..types import Label

    began = time.perf_counter()
    fleet = Fleet(
        devices,
        seed=seed,
        faults=FaultProfile(jitter_dist="none", jitter_mean_s=0.0),
        bundle=bundle,
        start_s=0.0 if lockstep else None,
    )
    codes = {m: i for i, m in enumerate(MODALITIES)}
    index = {d: i for i, d in enumerate(fleet.device_ids)}
    out: list[tuple[float, int, int, Any]] = []
    for ev in fleet.advance(duration):
        p = ev.payload
        dev = index[p.device]
        if isinstance(p, Label):
            out.append((ev.send_time, dev, LABEL_CODE, p))
        elif isinstance(p, Bundle):
            due = max(c.t0 + c.n / c.fs for c in p.chunks)
            if due <= duration:
                out.append((due, dev, BUNDLE_CODE, (p.chunks, bytearray(encode_bundle(p.chunks)))))
        else:
            due = p.t0 + p.n / p.fs
            if due <= duration:
                out.append((due, dev, codes[ev.kind], ((p,), bytearray(encode_chunk(p)))))
    out.sort(key=lambda m: m[0])
    return out, time.perf_counter() - began


def _stamp(chunks: tuple[Any, ...], frame: bytearray, t_base: float) -> list[float]:
    """Write each part's ``t0 + t_base`` into ``frame`` (device time = wall time); return them."""
    t0s = []
    offset = 0
    for c in chunks:
        t0 = c.t0 + t_base
        struct.pack_into("<d", frame, offset + _T0_OFFSET, t0)
        t0s.append(t0)
        offset += HEADER_SIZE + 4 * c.n * c.channels
    return t0s


async def _publish_all(
    settings: BenchSettings,
    messages: list[tuple[float, int, int, Any]],
    t_base: float,
    stopped: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """Publish ``messages`` on schedule from ``t_base``; the log of what was sent. Ends early,
    with the log so far, once ``stopped()`` (asked while waiting, and every 64 messages)."""
    from ..codec import encode_label
    from ..mqtt.client import open_session
    from ..mqtt.fastpath import protocol_of, publish_now
    from ..types import Label

    ids = [f"dev{i:03d}" for i in range(settings.devices)]
    names = (*MODALITIES, topics.LABEL, topics.BUNDLE)
    topic = {
        (d, k): f"{device_topic_prefix(settings, d)}/{ids[d]}/{names[k]}"
        for d in range(settings.devices)
        for k in range(len(names))
    }
    rows = sum(1 if kind == LABEL_CODE else len(payload[0]) for _, _, kind, payload in messages)
    rec = np.zeros(rows, dtype=LOG_DTYPE)
    async with open_session(
        settings.broker_url,
        client_id=f"{settings.prefix}-publisher",
        max_queued_outgoing_messages=0,
    ) as client:
        paho = protocol_of(client)

        def send(name: str, payload: bytes) -> None:
            # written to the socket now, as the gateway publishes (no loop turn per message)
            if not publish_now(paho, [(name, payload)]):
                raise BrokerError(f"the bench publisher lost its broker connection ({name})")

        now = time.time
        r = 0
        for i, (due, dev, kind, payload) in enumerate(messages):
            target = t_base + due
            delay = target - now()
            while delay > 0.0005:
                if stopped():
                    return rec[:r]
                await asyncio.sleep(min(delay, STOP_CHECK_S))
                delay = target - now()
            if kind == LABEL_CODE:
                label = Label(
                    payload.device, payload.t_start + t_base, payload.t_end + t_base, payload.value
                )
                sent = now()
                send(topic[dev, kind], encode_label(label))
                rec[r] = (dev, kind, -1, label.t_start, 0, 0.0, target, sent, i)
                r += 1
            else:
                chunks, frame = payload
                t0s = _stamp(chunks, frame, t_base)
                sent = now()
                send(topic[dev, kind], bytes(frame))
                for c, t0 in zip(chunks, t0s, strict=True):
                    rec[r] = (dev, _CODES[c.modality], c.seq, t0, c.n, c.fs, target, sent, i)
                    r += 1
            if i % 64 == 63:
                if stopped():
                    return rec[:r]
                await asyncio.sleep(0)  # let paho's writer (for what the socket refused) run
    return rec


def publisher_main(settings: BenchSettings, conn: Any) -> None:
    """Child process: pre-generate, report ready, wait for ``("go", t_base)``, publish, send log.
    Anything sent while publishing (``("stop", None)``) ends it early: the log so far is sent.
    Ctrl-C (SIGINT to the whole process group) is the parent's to handle: it stops this
    process in its turn, and wants the log."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    try:
        messages, gen_s = _fleet_messages(
            settings.devices,
            settings.duration,
            settings.seed,
            bundle=settings.bundle,
            lockstep=settings.lockstep,
        )
        conn.send(("ready", {"messages": len(messages), "generate_s": gen_s}))
        command, t_base = conn.recv()
        if command != "go":
            return
        rec = asyncio.run(_publish_all(settings, messages, t_base, conn.poll))
        conn.send(("done", rec))
    except Exception as exc:  # reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
