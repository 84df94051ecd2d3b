"""What the fleet tests share: a real local Ray, a fleet's settings, sharded devices publishing
at QoS 1 in real time, a prediction listener, and the accounting of every chunk through the
shards' journals and final checkpoints."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from streamfuse import codec
from streamfuse import journal as fmt
from streamfuse.gateway.checkpoint import CheckpointStore
from streamfuse.gateway.loading import from_mapping
from streamfuse.mqtt.address import parse_broker_url
from tests.qos1_publisher import chunk_key, fleet_messages, publish_acked

SHARDS = 8


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    """A real local Ray (no dashboard), shut down after the module: no process left behind."""
    try:
        import ray
    except ImportError:
        msg = "the fleet tests need Ray: pip install -e '.[test]' (or the 'cluster' extra)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from streamfuse.cluster.runtime import NAMESPACE

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        namespace=NAMESPACE,
        log_to_driver=False,
        _system_config={"worker_niceness": 0},
    )  # as streamfuse.cluster.runtime.join
    try:
        yield ray
    finally:
        ray.shutdown()


def fleet_config(broker: str, prefix: str, store: Path):
    """A deployment of :data:`SHARDS` shards: QoS 1 both ways, checkpoints every second, the
    whole journal kept (the test reads it)."""
    return from_mapping(
        {
            "mqtt": {
                "broker": broker,
                "prefix": prefix,
                "client_id": f"fl-{prefix}",
                "qos": 1,
                "publish_qos": 1,
            },
            "checkpoint": {"dir": str(store), "interval_s": 1.0},
            "journal": {"prune": False},
            "shards": {"count": SHARDS},
        },
        where="the fleet test",
    )


def shard_of(device: str) -> int:
    """Independent of streamfuse: the rule device makers follow (zlib's CRC-32 modulo S)."""
    import zlib

    return zlib.crc32(device.encode("utf-8")) % SHARDS


async def publish(url: str, prefix: str, devices: list[str], seconds: float, start: float,
                  acked: set) -> None:  # fmt: skip
    """Every device in real time from ``start`` at QoS 1 under its shard; ``acked`` gets the
    key of each chunk the broker acknowledged."""
    msgs = fleet_messages(devices, seconds, lambda d: f"{prefix}/{shard_of(d)}")
    await publish_acked(url, msgs, acked, start=start)


async def listen(url: str, prefix: str, ready: asyncio.Event, seen: list) -> None:
    """Every prediction of every shard, with the wall-clock time it arrived."""
    host, port, *_ = parse_broker_url(url)
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"{prefix}/+/+/prediction", qos=1)
        ready.set()
        async for message in client.messages:
            seen.append((time.time(), json.loads(bytes(message.payload))))


def account(store: Path, devices: list[str], acked: set) -> dict[str, dict[str, int]]:
    """Check every acknowledged chunk reached an engine (a journal ``P`` record in its
    shard's journal) and was counted by its device's aligner, redeliveries as duplicates;
    returns each device's aligner counters."""
    given: list[tuple[str, str, int]] = []
    for shard in range(SHARDS):
        scan = fmt.Scan()
        accepted: dict[int, bytes] = {}
        for pos, kind, body in fmt.records(store / f"shard-{shard}" / "journal", 0, scan):
            if kind == b"R":
                accepted[pos] = body
            elif kind == b"P":
                raw = fmt.decode_recv(accepted[fmt.PUSH.unpack_from(body)[0]])
                if raw.payload.startswith(codec.MAGIC):
                    key = chunk_key(raw)
                    if key is not None:
                        given.append(key)
        assert scan.missing == [], (shard, scan.missing)
    lost = acked - set(given)
    assert not lost, f"{len(lost)} acknowledged chunks never reached an engine: {sorted(lost)[:5]}"
    out = {}
    for device in devices:
        final, _ = CheckpointStore.read(
            CheckpointStore(store / f"shard-{shard_of(device)}").files()[0]
        )
        c = final["engine"].sessions[device].aligner.counters
        mine = [k for k in given if k[0] == device]
        assert c["chunks"] == len(mine), (device, c)
        assert c["duplicates"] == len(mine) - len(set(mine)), (device, c)
        out[device] = dict(c)
    return out


def per_device(seen: list, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
    return Counter(p["device"] for t, p in seen if since <= t < until)
