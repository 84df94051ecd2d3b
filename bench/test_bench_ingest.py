"""The gateway's MQTT ingest per message: aiomqtt's conversion (the baseline) against ours.

Both variants take the same pre-built messages of a simulated fleet (20 devices, per-modality
chunks and labels, 5 s) through a real (unconnected) paho client owned by an ``aiomqtt.Client``
whose queue is the gateway's :class:`~streamfuse.mqtt.queue.SheddingQueue`, and then off the
queue the way :meth:`Gateway._read` takes them, up to the :class:`RawMessage` handed to
``Engine.push`` (the engine itself is not run):

- **baseline** (before): aiomqtt's ``on_message`` behind paho's ``_handle_on_message`` (topic
  matcher, callback locks), an ``aiomqtt.Message`` with its validated ``Topic`` queued; the
  reader reads the topic twice (label check, then the message) and copies the payload;
- **fast**: :func:`~streamfuse.mqtt.fastpath.install_ingest`, a ``RawMessage`` queued directly.

Three groups: from paho's ``MQTTMessage`` (``_handle_on_message`` on), from the raw PUBLISH
packet (paho's ``_handle_publish``: decoding and its debug log call, unchanged by us, included),
so the saving can be read against the whole paho receive path, and from the bytes on a socket
(a socketpair; paho's own packet reader against :class:`~streamfuse.mqtt.reader.BatchedReader`,
``recv`` calls included). QoS 0 (no PUBACK to send).
``extra_info``: microseconds per message.

Run: ``cd /tmp && /work/venv/bin/pytest /work/main/bench/test_bench_ingest.py -p no:cacheprovider``
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.client import MQTTMessage
from timing import median_s

from simulators import FaultProfile, Fleet
from simulators.publisher import encode_event, event_topic
from streamfuse import topics
from streamfuse.gateway.ingest import _topic
from streamfuse.mqtt.fastpath import install_ingest
from streamfuse.mqtt.queue import SheddingQueue
from streamfuse.types import RawMessage
from tests.mqtt_packets import publish_packet

PREFIX = topics.DEFAULT_PREFIX
LABEL_SUFFIX = "/" + topics.LABEL


def _fleet_messages() -> list[tuple[bytes, bytes]]:
    fleet = Fleet(20, seed=0, faults=FaultProfile(jitter_dist="none", jitter_mean_s=0.0))
    return [
        (event_topic(PREFIX, ev.payload.device, ev.kind).encode(), encode_event(ev.payload))
        for ev in fleet.advance(5.0)
    ]


MESSAGES = _fleet_messages()
N = len(MESSAGES)


def _paho_message(topic: bytes, payload: bytes) -> MQTTMessage:
    message = MQTTMessage(0, topic)
    message.payload = payload  # bytes, as paho's decode_publish gives it
    return message


PAHO_MESSAGES = [_paho_message(t, p) for t, p in MESSAGES]
PACKETS = [struct.pack("!H", len(t)) + t + p for t, p in MESSAGES]  # PUBLISH body, QoS 0


def _take_baseline(message: Any) -> RawMessage:
    """What ``Gateway._read`` / ``_process`` did with each aiomqtt message before."""
    _topic(message).endswith(LABEL_SUFFIX)
    payload = message.payload
    if not isinstance(payload, bytes | bytearray):
        payload = b"" if payload is None else str(payload).encode()
    return RawMessage(_topic(message), bytes(payload))


def _take_fast(message: Any) -> RawMessage:
    """What ``Gateway._read`` does with each queued message now."""
    if type(message) is not RawMessage:
        raise AssertionError("the fast path queued something else than a RawMessage")
    message.topic.endswith(LABEL_SUFFIX)
    return message


def _client(fast: bool) -> tuple[Any, SheddingQueue]:
    """An aiomqtt client (never connected) whose queue is a gateway-like SheddingQueue."""
    inbox = SheddingQueue(10 * N)

    async def build() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", queue_type=lambda maxsize=0: inbox)  # type: ignore[arg-type,misc]

    client = asyncio.run(build())
    if fast:
        assert install_ingest(client, inbox.put_nowait)
    return client._client, inbox


def _run(feed: Callable[[], None], inbox: SheddingQueue, take: Callable[[Any], RawMessage]) -> None:
    feed()
    get = inbox.get_nowait
    last = None
    for _ in range(inbox.qsize()):
        last = take(get())
    assert last is not None and inbox.empty()


def _bench(benchmark, fast: bool, from_packets: bool) -> None:
    paho, inbox = _client(fast)
    take = _take_fast if fast else _take_baseline
    if from_packets:
        handle = paho._handle_publish

        def feed() -> None:
            packet = paho._in_packet
            for body in PACKETS:
                packet["command"] = 0x30
                packet["packet"] = body
                handle()
    else:
        handle = paho._handle_on_message

        def feed() -> None:
            for message in PAHO_MESSAGES:
                handle(message)

    _run(feed, inbox, take)  # once untimed, and check what arrives
    got: list[RawMessage] = []

    def capture(message: Any) -> RawMessage:
        got.append(take(message))
        return got[-1]

    _run(feed, inbox, capture)
    assert [(r.topic.encode(), r.payload) for r in got] == MESSAGES
    assert inbox.puts == 2 * N and not inbox.shed
    benchmark.pedantic(_run, args=(feed, inbox, take), rounds=15, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(messages=N, us_per_message=round(median_s(benchmark) / N * 1e6, 3))


@pytest.mark.benchmark(group="ingest per message, from paho MQTTMessage")
def test_ingest_from_message_baseline_aiomqtt(benchmark) -> None:
    _bench(benchmark, fast=False, from_packets=False)


@pytest.mark.benchmark(group="ingest per message, from paho MQTTMessage")
def test_ingest_from_message_fast(benchmark) -> None:
    _bench(benchmark, fast=True, from_packets=False)


@pytest.mark.benchmark(group="ingest per message, from the PUBLISH packet")
def test_ingest_from_packet_baseline_aiomqtt(benchmark) -> None:
    _bench(benchmark, fast=False, from_packets=True)


@pytest.mark.benchmark(group="ingest per message, from the PUBLISH packet")
def test_ingest_from_packet_fast(benchmark) -> None:
    _bench(benchmark, fast=True, from_packets=True)


# ------------------------------------------------------------------ from the socket's bytes
STREAM = b"".join(publish_packet(t, p) for t, p in MESSAGES)  # whole QoS 0 packets


def _bench_socket(benchmark, batched: bool) -> None:
    """The fleet's PUBLISH packets written to a socketpair, read by paho's ``loop_read`` until
    drained: paho's own ``_packet_read`` (one ``recv`` for the command, one per length byte,
    then the body; an ``MQTTMessage`` each) with our ``_handle_on_message``, or the
    :class:`~streamfuse.mqtt.reader.BatchedReader`. Both end in the same queue."""
    import socket

    paho, inbox = _client(True)
    if not batched:
        del paho._packet_read  # the instance's reader: back to paho's method
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    paho._sock = ours

    def feed() -> None:
        theirs.sendall(STREAM)
        while paho.loop_read(64) == 0 and inbox.qsize() < N:
            pass

    got: list[RawMessage] = []

    def capture(message: Any) -> RawMessage:
        got.append(_take_fast(message))
        return got[-1]

    _run(feed, inbox, capture)
    assert [(r.topic.encode(), r.payload) for r in got] == MESSAGES
    benchmark.pedantic(
        _run, args=(feed, inbox, _take_fast), rounds=15, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info.update(messages=N, us_per_message=round(median_s(benchmark) / N * 1e6, 3))
    theirs.close()
    ours.close()


@pytest.mark.benchmark(group="ingest per message, from the socket")
def test_ingest_from_socket_paho_reader(benchmark) -> None:
    _bench_socket(benchmark, batched=False)


@pytest.mark.benchmark(group="ingest per message, from the socket")
def test_ingest_from_socket_batched_reader(benchmark) -> None:
    _bench_socket(benchmark, batched=True)


# ------------------------------------------------------------------ publishing predictions
PREDICTIONS = [(f"{PREFIX}/dev{k:03d}/prediction", bytes(2600)) for k in range(50)]


def _bench_publish(benchmark, direct: bool) -> None:
    """50 prediction-sized QoS 0 messages (2.6 KB) onto a socketpair, emptied between rounds
    (untimed): ``publish_now`` writing its own packets, or paho's ``publish`` and
    ``loop_write`` (its message info, locks, queue and ``on_publish`` call) as the gateway
    published before."""
    import socket

    from paho.mqtt.client import CallbackAPIVersion, Client
    from paho.mqtt.enums import _ConnectionState

    from streamfuse.mqtt.fastpath import publish_now

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    paho = Client(CallbackAPIVersion.VERSION2)
    paho._sock = ours
    paho._state = _ConnectionState.MQTT_CS_CONNECTED
    # aiomqtt always sets one: paho then builds a reason code and properties per QoS 0 write
    paho.on_publish = lambda *_: None
    total = sum(len(t) + len(p) + 5 for t, p in PREDICTIONS)
    received = [0]

    def empty() -> None:
        while True:
            try:
                received[0] += len(theirs.recv(1 << 20))
            except BlockingIOError:
                return

    rounds = [0]

    def run() -> None:
        rounds[0] += 1
        for message in PREDICTIONS:
            if direct:
                publish_now(paho, [message])
            else:
                paho.publish(message[0], message[1], 0)
                paho.loop_write()

    def setup() -> None:
        while paho._out_packet:  # what the socket refused last round, written now
            empty()
            paho.loop_write()
        empty()

    benchmark.pedantic(run, setup=setup, rounds=300, iterations=1, warmup_rounds=2)
    setup()
    assert received[0] >= rounds[0] * total > 0  # every packet reached the peer
    benchmark.extra_info.update(
        messages=len(PREDICTIONS),
        us_per_message=round(median_s(benchmark) / len(PREDICTIONS) * 1e6, 3),
    )
    ours.close()
    theirs.close()


@pytest.mark.benchmark(group="publish per prediction (QoS 0, 2.6 KB)")
def test_publish_paho(benchmark) -> None:
    _bench_publish(benchmark, direct=False)


@pytest.mark.benchmark(group="publish per prediction (QoS 0, 2.6 KB)")
def test_publish_direct(benchmark) -> None:
    _bench_publish(benchmark, direct=True)
