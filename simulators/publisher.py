"""Publish a simulated fleet to an MQTT broker, in (scaled) real time.

Each event of :class:`simulators.device.Fleet` goes out at ``send_time / speed`` seconds after
the start on ``{prefix}/{device}/{modality}`` (binary frame, :func:`streamfuse.codec.encode_chunk`)
or ``{prefix}/{device}/label`` (JSON, :func:`streamfuse.codec.encode_label`), with
``{prefix}/{shard}`` in place of ``{prefix}`` when shards are asked for; a fleet built
with ``bundle=True`` sends each device's chunks of one period together on
``{prefix}/{device}/bundle`` (:func:`streamfuse.codec.encode_bundle`). One MQTT connection
carries the whole fleet, with TCP_NODELAY set.

Note the simulated clocks: chunk ``t0`` and label times are simulated device time (seconds since
the simulation start, plus any fault offset/drift); at ``speed`` != 1 they advance ``speed``
times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
import uuid
from dataclasses import dataclass, field

from streamfuse import codec, topics
from streamfuse.mqtt.client import open_session
from streamfuse.types import Chunk, Label

from .device import BUNDLE, LABEL, Bundle, Fleet

log = logging.getLogger("streamfuse.simulators.publisher")


def event_topic(prefix: str, device: str, kind: str) -> str:
    """The topic an event of ``kind`` (a modality, ``"label"`` or ``"bundle"``) goes out on."""
    if kind == LABEL:
        return topics.label_topic(prefix, device)
    if kind == BUNDLE:
        return topics.bundle_topic(prefix, device)
    return topics.data_topic(prefix, device, kind)


def encode_event(payload: Chunk | Label | Bundle) -> bytes:
    """An event's payload as the bytes a device sends."""
    if isinstance(payload, Label):
        return codec.encode_label(payload)
    if isinstance(payload, Bundle):
        return codec.encode_bundle(payload.chunks)
    return codec.encode_chunk(payload)


@dataclass(slots=True)
class PublishStats:
    """What :func:`run_fleet` did."""

    messages: int = 0
    bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    sim_s: float = 0.0  # simulated seconds covered
    wall_s: float = 0.0
    max_behind_s: float = 0.0  # worst lateness of a publish against its schedule (real time)
    stopped: bool = False  # stop_event ended the run early


async def _pause(delay: float, stop_event: asyncio.Event | None) -> None:
    if stop_event is None:
        await asyncio.sleep(delay)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=delay)


async def run_fleet(
    broker_url: str,
    fleet: Fleet,
    prefix: str = "streamfuse",
    speed: float = 1.0,
    duration: float = 30.0,
    qos: int = 0,
    stop_event: asyncio.Event | None = None,
    *,
    step_s: float = 0.05,
    client_id: str | None = None,
    shards: int = 0,
) -> PublishStats:
    """Publish ``fleet``'s events with ``send_time <= duration`` to the broker at ``broker_url``.

    Parameters
    ----------
    broker_url
        ``mqtt://host:port``.
    fleet
        The devices; continues from wherever the fleet was advanced to.
    prefix
        Topic prefix.
    speed
        Simulated seconds per wall second; ``0`` or ``inf`` publishes as fast as possible.
    duration
        Simulated seconds to cover.
    qos
        MQTT QoS for every message (0 keeps latency lowest).
    stop_event
        Set it to stop early (the run returns after the message in flight).
    step_s
        Simulated time the fleet is advanced by at a time (bounds look-ahead work).
    shards
        With ``S`` > 0, each device publishes under ``{prefix}/{shard}`` with
        ``shard = crc32(device) % S`` (:func:`streamfuse.topics.shard_of`); 0: no shard level.

    Returns
    -------
    PublishStats
    """
    if not (speed >= 0 and not math.isnan(speed)):
        raise ValueError(f"speed must be >= 0 (0 or inf: as fast as possible), got {speed}")
    fast = speed == 0 or math.isinf(speed)
    stats = PublishStats()
    known_topics: dict[tuple[str, str], str] = {}
    loop = asyncio.get_running_loop()
    cid = client_id or f"streamfuse-sim-{uuid.uuid4().hex[:8]}"
    async with open_session(broker_url, client_id=cid, logger=log) as client:
        log.info(
            "publishing %d devices to %s (speed %s)", len(fleet.devices), broker_url, speed
        )
        wall0 = loop.time()
        t_wall_start = time.perf_counter()
        t = fleet.now
        sim0 = t
        since_yield = 0
        while t < duration:
            if stop_event is not None and stop_event.is_set():
                stats.stopped = True
                break
            t = min(t + step_s, duration)
            for ev in fleet.advance(t):
                if not fast:
                    target = wall0 + (ev.send_time - sim0) / speed
                    delay = target - loop.time()
                    if delay > 0.0005:
                        await _pause(delay, stop_event)
                        since_yield = 0
                    else:
                        stats.max_behind_s = max(stats.max_behind_s, -delay)
                if stop_event is not None and stop_event.is_set():
                    stats.stopped = True
                    break
                p = ev.payload
                key = (p.device, ev.kind)
                topic = known_topics.get(key)
                if topic is None:
                    under = topics.device_prefix(prefix, p.device, shards)
                    topic = known_topics[key] = event_topic(under, p.device, ev.kind)
                payload = encode_event(p)
                await client.publish(topic, payload, qos=qos)
                stats.messages += 1
                stats.bytes += len(payload)
                stats.by_kind[ev.kind] = stats.by_kind.get(ev.kind, 0) + 1
                since_yield += 1
                if since_yield >= 200:  # let the client's writer and other tasks run
                    await asyncio.sleep(0)
                    since_yield = 0
            if stats.stopped:
                break
        stats.sim_s = t - sim0
        stats.wall_s = time.perf_counter() - t_wall_start
    log.info(
        "published %d messages (%d bytes) over %.1f simulated s in %.2f s",
        stats.messages,
        stats.bytes,
        stats.sim_s,
        stats.wall_s,
    )
    return stats


def simulate(
    broker_url: str,
    *,
    prefix: str = "streamfuse",
    devices: int = 8,
    duration: float = 30.0,
    speed: float = 1.0,
    seed: int = 0,
    bundle: bool = False,
    shards: int = 0,
) -> int:
    """``streamfuse simulate``: publish a fleet on wall-clock device time until ``duration``
    or SIGINT/SIGTERM (a second one exits at once); print what was sent; returns 0."""
    from .faults import FaultProfile

    async def main() -> PublishStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        hits = {"n": 0}

        def on_signal() -> None:
            hits["n"] += 1
            if hits["n"] > 1:
                log.warning("second signal: exiting at once")
                raise SystemExit(130)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        # device clocks read wall-clock time, as NTP-synced wearables would
        fleet = Fleet(
            devices, seed=seed, faults=FaultProfile(clock_offset_s=time.time()), bundle=bundle
        )
        return await run_fleet(
            broker_url, fleet, prefix=prefix, speed=speed, duration=duration, stop_event=stop,
            shards=shards,
        )

    stats = asyncio.run(main())
    print(
        f"published {stats.messages} messages ({stats.bytes} bytes; {dict(stats.by_kind)}) "
        f"covering {stats.sim_s:.1f} simulated s in {stats.wall_s:.1f} s"
        + (" - stopped early" if stats.stopped else "")
    )
    return 0
