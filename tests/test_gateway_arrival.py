"""The engine's ``now`` for a message is when the socket yielded its bytes, not when the
engine took it (issue 21): a burst that lay on the gateway's socket all at once while the
gateway was busy reaches the engine with one time, however long processing it takes; the
journal records that same time, so replaying it makes the same predictions.

Against the real broker. The gateway clock is a counter that only moves when the engine takes
a message (one step each), so "the time of the read" and "the time the engine took it" are
different numbers for every message but the first of a read.
"""

from __future__ import annotations

import asyncio
import fcntl
import math
import socket
import termios
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from streamfuse import journal as fmt
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.replay.journal import replay_journal
from streamfuse.types import Prediction, RawMessage
from tests.gateway_configs import gateway_config
from tests.mqtt_packets import publish_packet
from tests.streams import device_messages


def test_the_batched_reader_stamps_each_socket_read_once() -> None:
    """Every message of one ``recv`` carries the clock read once for it (QoS 0 parsed here,
    QoS 1 handed to paho, which reads :attr:`read_at`); a packet split across reads arrived
    with the read that completed it; between reads there is no time."""
    from paho.mqtt.client import CallbackAPIVersion, Client

    from streamfuse.mqtt.fastpath import raw_from_paho
    from streamfuse.mqtt.reader import BatchedReader

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    paho = Client(CallbackAPIVersion.VERSION2)
    paho._sock = ours
    got: list[RawMessage] = []
    readings = [0.0]

    def clock() -> float:
        readings[0] += 1.0
        return readings[0]

    reader = BatchedReader(paho, got.append, clock)
    paho._handle_on_message = lambda m: got.append(raw_from_paho(m, reader.read_at))
    one = publish_packet(b"sf/a/ecg", b"x" * 10)
    two = publish_packet(b"sf/a/acc", b"y" * 10, qos=1, mid=7)
    three = publish_packet(b"sf/a/eeg", b"z" * 50)
    peer.sendall(one + two + three[:20])
    while reader() == 0:
        pass
    assert [(m.payload[:1], m.arrival) for m in got] == [(b"x", 1.0), (b"y", 1.0)]
    assert math.isnan(reader.read_at)
    peer.sendall(three[20:])
    while reader() == 0:
        pass
    assert [(m.payload[:1], m.arrival) for m in got[2:]] == [(b"z", 2.0)]
    assert readings[0] == reader.reads == 2
    peer.close()
    ours.close()


#: the broker keeps at most 20 QoS 1 messages in flight to one client (Mosquitto's default):
#: a QoS 1 burst larger than that would not all be on the socket at once
QOS1_BURST = 12


class NowRecordingEngine(Engine):
    """An engine that notes the ``now`` of every message it is given."""

    def push(self, item: Any, now: float) -> list:
        if isinstance(item, RawMessage):
            self.nows.append((item.payload, now))
        return super().push(item, now)

    @property
    def nows(self) -> list[tuple[bytes, float]]:
        got = self.__dict__.get("_nows")
        if got is None:
            got = self.__dict__["_nows"] = []
        return got


def _socket_holds(sock: Any) -> int:
    """Bytes received on ``sock`` and not yet read."""
    buf = bytearray(4)
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def _publish_in_thread(
    broker_url: str,
    first: RawMessage,
    burst: list[RawMessage],
    qos: int,
    busy: threading.Event,
) -> threading.Thread:
    """Publish ``first``, then (once the gateway is busy with it) ``burst``, from a thread:
    the gateway's event loop is blocked meanwhile."""
    host, port, *_ = parse_broker_url(broker_url)

    async def publish() -> None:
        async with aiomqtt.Client(host, port) as client:
            await client.publish(first.topic, first.payload, qos=1)
            if not await asyncio.to_thread(busy.wait, 20):
                return
            for m in burst:
                await client.publish(m.topic, m.payload, qos=qos)

    thread = threading.Thread(target=lambda: asyncio.run(publish()), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("qos", [0, 1])
def test_a_burst_on_the_socket_reaches_the_engine_at_its_read_time_and_replays_alike(
    broker_url: str, topic_prefix: str, tmp_path: Path, qos: int
) -> None:
    blocker = device_messages("blk", 1, seed=1, prefix=topic_prefix)[0][0]
    stream = [raw for raw, _ in device_messages("a", 6, seed=3, prefix=topic_prefix)]
    # QoS 0: six seconds (windows close on the burst's data, labels among it are held back);
    # QoS 1: handed to paho's handler within the batched read, as many as the broker sends at once
    burst = stream if qos == 0 else stream[:QOS1_BURST]
    expected = sum(len(publish_packet(m.topic.encode(), m.payload, qos)) for m in burst)
    ckpt = tmp_path / "ckpt"
    settings = gateway_config(
        broker_url=broker_url, prefix=topic_prefix, qos=qos, checkpoint_dir=str(ckpt),
        journal_fsync="never", journal_prune=False, arrival="read",
    )  # fmt: skip
    clock = [1000.0]
    taken: dict[bytes, float] = {}  # payload -> the clock when the engine took it
    busy = threading.Event()
    clients: list[Any] = []
    made: list[Prediction] = []
    full = [False]

    def on_message(raw: RawMessage) -> None:
        taken.setdefault(raw.payload, clock[0])
        if raw.payload == blocker.payload and not busy.is_set():
            # a slow step: the whole burst reaches the gateway's socket meanwhile
            busy.set()
            end = time.monotonic() + 20
            while time.monotonic() < end and not full[0]:
                full[0] = _socket_holds(clients[-1]._client.socket()) >= expected
                time.sleep(0.005)
        clock[0] += 1.0  # the engine's work: the clock moves on with every message taken

    engine = NowRecordingEngine(settings.engine_config(), prefix=topic_prefix)
    gateway = Gateway(
        engine, settings, clock=lambda: clock[0], on_message=on_message, on_prediction=made.append
    )
    make_client = gateway._client

    def client() -> Any:
        c = make_client()
        clients.append(c)
        return c

    gateway._client = client  # type: ignore[method-assign]
    payloads = {m.payload for m in burst}

    def done() -> bool:
        return payloads <= {p for p, _ in engine.nows}

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.connected.wait(), 10)
            thread = _publish_in_thread(broker_url, blocker, burst, qos, busy)
            end = asyncio.get_running_loop().time() + 30
            while not done() and asyncio.get_running_loop().time() < end:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(thread.join, 10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    asyncio.run(main())
    assert full[0], "the burst never lay on the gateway's socket all at once"
    assert done(), "not every message of the burst reached the engine"
    now_of = dict(engine.nows)
    read_at = taken[burst[0].payload]  # nothing moved the clock between the read and this
    times = [now_of[m.payload] for m in burst]
    assert times == [read_at] * len(burst)  # one read, one time, for every message of it
    # ... while the engine took them one after another (the old ``now``)
    assert len({taken[m.payload] for m in burst}) == len(burst)
    if qos == 0:
        # held-back labels came after data taken later, and still kept their arrival
        labels = [m for m in burst if m.topic.endswith("/label")]
        assert labels and all(taken[m.payload] > read_at + 1 for m in labels)

    # the journal holds those same times, and replaying it makes the same predictions
    journal_dir = settings.journal.dir or ckpt / "journal"
    messages: dict[int, bytes] = {}
    journalled: list[tuple[bytes, float]] = []
    for pos, kind, body in fmt.records(journal_dir, 0, fmt.Scan()):
        if kind == b"R":
            messages[pos] = fmt.decode_recv(body).payload
        elif kind == b"P":
            ref, now = fmt.PUSH.unpack_from(body)
            journalled.append((messages[ref], now))
    assert journalled == engine.nows
    replayed, _, applied, scan = replay_journal(
        journal_dir, lambda: Engine(settings.engine_config(), prefix=topic_prefix)
    )
    assert scan.torn == [] and applied.pushed == len(engine.nows)
    if qos == 0:
        assert len(made) >= 3  # windows closed on the burst's data
    assert [p.to_json_dict() | {"latency_ms": None} for p in replayed] == [
        p.to_json_dict() | {"latency_ms": None} for p in made
    ]
