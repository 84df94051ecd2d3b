"""The record shell: subscribe to everything under a prefix and store it in an MCAP session.

Each message is stamped on arrival with the recorder's clock (the gateway clock, ``time.time``
by default) and appended by :class:`~streamfuse.replay.mcap_io.SessionWriter`, which flushes a
completed chunk at least once a second. Data messages are also decoded into per-sample signal
channels (:mod:`.signal_plot`) that MCAP viewers plot; ``plot_hz=None`` leaves them out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .. import topics
from ..config import DEFAULT_MODALITIES, ModalitySpec
from ..mqtt.address import parse_broker_url
from ..mqtt.client import open_session
from .mcap_io import SessionWriter
from .signal_plot import DEFAULT_MAX_HZ, SignalPlotter

log = logging.getLogger("streamfuse.replay.recorder")


async def record(
    broker_url: str,
    prefix: str,
    out: str | Path,
    *,
    stop: asyncio.Event,
    duration: float | None = None,
    clock: Callable[[], float] = time.time,
    flush_s: float = 1.0,
    ready: asyncio.Event | None = None,
    client_id: str | None = None,
    on_message: Callable[[str, bytes, float], None] | None = None,
    modalities: Mapping[str, ModalitySpec] = DEFAULT_MODALITIES,
    plot_hz: float | None = DEFAULT_MAX_HZ,
) -> int:
    """Record every message under ``prefix`` (``{prefix}/#``) until ``stop`` or ``duration``.

    Parameters
    ----------
    broker_url
        ``mqtt://host:port`` of the broker.
    prefix
        Topic prefix; every topic below it is recorded, predictions included.
    out
        The MCAP file to write.
    stop
        Set it to end the recording cleanly (summary and footer are written).
    duration
        Stop by itself after this many seconds (of ``clock``) from subscribing.
    ready
        Set once the subscription is in place (so a test can start publishing).
    on_message
        Called with ``(topic, payload, arrival)`` after each message is written: a live
        engine fed from here sees exactly the ``now`` that replay will push.
    modalities
        Channel names of the data topics, for the signal channels (the gateway's
        ``[modalities]``); a modality not listed is recorded but not decoded.
    plot_hz
        Signal channels at most this many samples per second per stream (every k-th sample);
        None: no signal channels.

    Returns
    -------
    int
        How many messages were recorded.
    """
    topics.check_prefix(prefix)
    host, port, *_ = parse_broker_url(broker_url)
    meta = {"broker": f"{host}:{port}", "prefix": prefix, "clock": "gateway (time.time)"}
    plotter = None
    if plot_hz is not None:
        plotter = SignalPlotter(prefix, modalities, max_hz=plot_hz)
        plotter.warm_up()  # before subscribing: no message waits for the decoders' kernels
        meta["signal_max_hz"] = f"{plot_hz:g}"
    # connect first: a broker that cannot be reached leaves no empty recording behind
    async with open_session(
        broker_url,
        client_id=client_id,
        logger=logging.getLogger("streamfuse.replay.recorder.mqtt"),
    ) as client:
        with SessionWriter(out, flush_s=flush_s, metadata=meta, plotter=plotter) as writer:
            await client.subscribe(f"{prefix}/#", qos=0)
            log.info("recording %s/# from %s:%d into %s", prefix, host, port, out)
            if ready is not None:
                ready.set()
            if duration is not None:
                asyncio.get_running_loop().call_later(duration, stop.set)

            async def consume() -> None:
                async for message in client.messages:
                    payload = message.payload
                    if not isinstance(payload, bytes | bytearray):
                        payload = b"" if payload is None else str(payload).encode()
                    topic, data, now = str(message.topic), bytes(payload), clock()
                    writer.write(topic, data, now)
                    if on_message is not None:
                        on_message(topic, data, now)

            async def flusher() -> None:
                # a quiet broker still gets its last messages onto disk
                while True:
                    await asyncio.sleep(flush_s)
                    writer.flush()

            tasks = [
                asyncio.create_task(consume(), name="streamfuse[record].ingest"),
                asyncio.create_task(flusher(), name="streamfuse[record].flush"),
                asyncio.create_task(stop.wait(), name="streamfuse[record].stop"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.get_name() == "streamfuse[record].stop":
                        continue
                    exc = task.exception()
                    if exc:
                        raise exc
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        log.info("recorded %d messages into %s", writer.count, out)
        if plotter is not None and plotter.skipped:
            log.warning(
                "%d data messages did not decode and have no signal channel samples: %s",
                sum(plotter.skipped.values()), dict(plotter.skipped),
            )  # fmt: skip
        return writer.count
