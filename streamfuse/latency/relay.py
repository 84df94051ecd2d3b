"""The bench's relay process: a gateway that does nothing, for the broker round trip.

An MQTT client with the gateway's client options (TCP_NODELAY, keepalive, subscription QoS,
handed over by the orchestrator from the gateway's configuration) subscribed to the data
topics of the first ``floor_devices`` devices, which republishes each message's payload
unchanged at QoS 0 to its :func:`~.settings.echo_topic`, from inside the read as the gateway
ingests and publishes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from ..types import RawMessage
from .settings import BenchSettings, echo_topic, floor_topics


async def _relay(settings: BenchSettings, conn: Any, keepalive: int, qos: int) -> dict[str, float]:
    from ..mqtt.client import open_session
    from ..mqtt.fastpath import install_ingest, protocol_of, publish_now

    relayed = 0
    async with open_session(
        settings.broker_url, client_id=f"{settings.prefix}-relay", keepalive=keepalive
    ) as client:
        paho = protocol_of(client)

        def relay(raw: RawMessage) -> None:
            # echoed from inside paho's read, as the gateway ingests and publishes
            nonlocal relayed
            relayed += publish_now(paho, [(echo_topic(raw.topic), raw.payload)])

        install_ingest(client, relay)
        for name in floor_topics(settings):
            await client.subscribe(name, qos=qos)
        conn.send(("ready", None))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while not conn.poll():
            await asyncio.sleep(0.05)
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"messages": relayed, "cpu_s": cpu_s, "wall_s": wall_s}


def relay_main(settings: BenchSettings, conn: Any, keepalive: int = 30, qos: int = 1) -> None:
    """Child process: subscribe (with the gateway's ``keepalive`` and subscription ``qos``),
    report ready, echo until told to stop, send how many it echoed and the CPU time it took
    (from ready to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us in its turn
    logging.basicConfig(level=logging.WARNING)
    try:
        stats = asyncio.run(_relay(settings, conn, keepalive, qos))
        conn.recv()
        conn.send(("done", stats))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
