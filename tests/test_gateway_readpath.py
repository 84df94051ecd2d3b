"""Gateway read path: burst draining, labels held back while data waits, QoS 0 predictions
written through paho at once, shedding of held labels (without a broker); and the ingest fast
path (paho -> RawMessage -> bounded queue) against the real broker: exact topics and bytes,
junk, shedding when full, a dropped connection."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import MQTTMessage
from paho.mqtt.matcher import MQTTMatcher

from streamfuse import topics
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.ingest import READ_EVERY as _READ_EVERY
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.mqtt.fastpath import raw_from_paho
from streamfuse.types import Prediction, RawMessage
from tests.gateway_configs import gateway_config
from tests.mqtt_packets import publish_packet
from tests.streams import device_messages


@dataclass
class _Message:
    topic: str
    payload: bytes


@dataclass
class _Info:
    rc: int = 0


class _FakePaho:
    """What the gateway uses of paho: publish, loop_read, loop_write, the write-watch flag."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int]] = []
        self.flags_seen: list[bool] = []
        self.writes = 0
        self.reads = 0
        self._registered_write = False

    def publish(self, topic: str, payload: bytes, qos: int) -> _Info:
        self.flags_seen.append(self._registered_write)
        self.published.append((topic, payload, qos))
        return _Info()

    def want_write(self) -> bool:
        return False

    def loop_write(self) -> int:
        self.writes += 1
        return 0

    def loop_read(self) -> int:
        self.reads += 1  # nothing more on the socket: no message is queued
        return 0


class _FakeClient:
    """The aiomqtt surface the read path uses: ``messages`` over the gateway's own queue."""

    def __init__(self, inbox: asyncio.Queue) -> None:
        self._client = _FakePaho()
        self._inbox = inbox

    @property
    def messages(self) -> Any:
        inbox = self._inbox

        class _It:
            def __aiter__(self) -> _It:
                return self

            async def __anext__(self) -> Any:
                return await inbox.get()

        return _It()


def _run(gateway: Gateway, client: _FakeClient, until: Any) -> None:
    async def main() -> None:
        reader = asyncio.create_task(gateway.ingest.read(client))  # type: ignore[arg-type]
        for _ in range(2000):
            await asyncio.sleep(0)
            if until():
                break
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    asyncio.run(main())


def test_labels_wait_for_queued_data_and_predictions_go_out_at_once() -> None:
    msgs = device_messages("a", 6, seed=2)
    seen: list[str] = []
    arrival = {raw.payload: now for raw, now in msgs}
    now = [0.0]

    def hand_over(raw: RawMessage) -> None:  # the gateway's clock reads each message's arrival
        seen.append(raw.topic.rpartition("/")[2])
        now[0] = arrival[raw.payload]

    engine = Engine()
    gateway = Gateway(
        engine, gateway_config(publish_qos=0), clock=lambda: now[0], on_message=hand_over
    )
    client = _FakeClient(gateway.inbox)
    for raw, _now in msgs:  # one burst: everything queued before the reader wakes
        gateway.inbox.put_nowait(_Message(raw.topic, raw.payload))
    n_labels = sum(raw.topic.endswith("/label") for raw, _ in msgs)
    assert n_labels == 6
    _run(gateway, client, lambda: gateway.processed == len(msgs))
    assert gateway.processed == len(msgs)
    # every label was handed to the engine after every data message of the burst, in order
    assert seen[-n_labels:] == ["label"] * n_labels and "label" not in seen[:-n_labels]
    assert engine.counters["labels"] == n_labels
    paho = client._client
    preds = engine.counters["predictions"]
    assert preds >= 3 and len(paho.published) == gateway.published == preds
    assert all(qos == 0 and topic.endswith("/a/prediction") for topic, _, qos in paho.published)
    # aiomqtt's per-publish write watch was suppressed, and paho wrote at once
    assert all(paho.flags_seen) and not paho._registered_write and paho.writes >= 1
    # the socket was read between messages, every _READ_EVERY of them while the burst was
    # queued (not after each: a read takes all the socket holds)
    data = len(msgs) - n_labels
    assert data // _READ_EVERY <= paho.reads < data // 2


def test_held_labels_are_bounded_and_shed_then_drained_at_shutdown() -> None:
    gateway = Gateway(Engine(), gateway_config(max_queued_incoming=3))
    label = [
        (raw, now) for raw, now in device_messages("b", 5, seed=3) if raw.topic.endswith("/label")
    ]
    for raw, _ in label:
        gateway.ingest.defer(_Message(raw.topic, raw.payload))
    assert len(gateway.ingest.labels) == 3 and gateway.inbox.shed["label"] == 2
    handed: list[RawMessage] = []
    gateway.ingest.on_message = handed.append
    asyncio.run(gateway.ingest.drain(deadline=float("inf")))
    assert [m.payload for m in handed] == [raw.payload for raw, _ in label[:3]]
    assert not gateway.ingest.labels


def test_idle_devices_are_evicted_and_their_counters_kept() -> None:
    from tests.streams import merge

    now = {"t": 0.0}
    engine = Engine()
    gateway = Gateway(engine, gateway_config(idle_evict_s=2.0), clock=lambda: now["t"])
    msgs = merge(device_messages("a", 10, seed=1), device_messages("b", 20, seed=2))
    last_a = max(t for m, t in msgs if "/a/" in m.topic)

    def feed_until(t_end: float) -> None:
        for m, t in msgs:
            if now["t"] < t <= t_end:
                engine.push(m, t)
        now["t"] = t_end

    feed_until(last_a + 1.0)
    gateway.house.evict_idle()
    assert set(engine.sessions) == {"a", "b"}  # a has been silent 1 s < 2 s
    feed_until(last_a + 2.5)
    chunks_before = gateway.align_totals()["chunks"]
    gateway.house.evict_idle()
    assert set(engine.sessions) == {"b"} and engine.counters["evicted"] == 1
    # the evicted device's counters still count for /metrics
    assert gateway.align_totals()["chunks"] == chunks_before
    feed_until(1000 + 20.5)
    gateway.house.evict_idle()
    assert set(engine.sessions) == {"b"}  # b sent its last chunk about 0.5 s ago


# ---------------------------------------------------------------- ingest fast path, real broker
def test_a_paho_message_becomes_a_raw_message_without_copying_its_payload() -> None:
    message = MQTTMessage(0, b"sf/dev1/ecg")
    message.payload = payload = b"\x01\x02frame"
    raw = raw_from_paho(message)
    assert type(raw) is RawMessage and raw.topic == "sf/dev1/ecg" and raw.payload is payload
    message.payload = bytearray(b"abc")  # not immutable: copied into bytes
    assert type(raw_from_paho(message).payload) is bytes
    # a topic that is not UTF-8 stays readable (and is then rejected as a bad topic)
    assert raw_from_paho(MQTTMessage(0, b"sf/\xff/ecg")).topic == "sf/\\xff/ecg"


@pytest.fixture
def slow_paths(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts calls of aiomqtt's per-message conversion and of paho's topic matcher."""
    calls: Counter[str] = Counter()

    def counted(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        aiomqtt.Client, "_on_message", counted("aiomqtt", aiomqtt.Client._on_message)
    )
    monkeypatch.setattr(MQTTMatcher, "iter_match", counted("matcher", MQTTMatcher.iter_match))
    return calls


async def _publish(broker_url: str, messages: list[RawMessage]) -> None:
    host, port, *_ = parse_broker_url(broker_url)
    async with aiomqtt.Client(host, port) as client:
        for m in messages:
            await client.publish(m.topic, m.payload, qos=1)


async def _until(condition: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    """Wait for ``condition``; the generous limit only makes a lost message fail, not hang."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def test_broker_messages_reach_the_engine_as_sent_and_again_after_the_connection_drops(
    broker_url: str, topic_prefix: str, slow_paths: Counter[str]
) -> None:
    first = [raw for raw, _ in device_messages("a", 2, seed=4, prefix=topic_prefix)]
    second = [raw for raw, _ in device_messages("b", 2, seed=5, prefix=topic_prefix)]
    good = first[0].payload
    junk = [
        RawMessage(f"{topic_prefix}/a/ecg", b"\xde\xad\xbe\xef" * 5),  # not a frame
        RawMessage(f"{topic_prefix}/a/spo2", good),  # unknown modality
        RawMessage(f"{topic_prefix}/a/eeg", b""),  # empty payload
    ]
    client_id = f"{topic_prefix}-gw"
    seen: list[RawMessage] = []
    engine = Engine(prefix=topic_prefix)
    settings = gateway_config(
        broker_url=broker_url, prefix=topic_prefix, client_id=client_id, backoff_initial_s=0.05
    )
    gateway = Gateway(engine, settings, on_message=seen.append)
    host, port, *_ = parse_broker_url(broker_url)

    def heard() -> list[RawMessage]:
        # the gateway also hears its own predictions once the lateness budget closes a window
        # (a loaded machine gets there within the test): only what the devices sent counts
        return [m for m in seen if not m.topic.endswith("/prediction")]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.connected.wait(), 10)
            await _publish(broker_url, first + junk)
            await _until(lambda: len(heard()) == len(first) + len(junk), "the first batch")
            # another connection with the gateway's client id: the broker drops the gateway's
            async with aiomqtt.Client(host, port, identifier=client_id, clean_session=True):
                await _until(lambda: gateway.reconnects >= 1, "the dropped connection")
            await _until(gateway.connected.is_set, "the reconnect")
            await _publish(broker_url, second)
            await _until(lambda: len(heard()) == len(first) + len(junk) + len(second), "batch 2")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            # leave no persistent session behind on the shared broker
            async with aiomqtt.Client(host, port, identifier=client_id, clean_session=True):
                pass

    asyncio.run(main())
    assert all(type(m) is RawMessage for m in seen)
    sent = first + junk + second
    # every message exactly as published (labels are taken after waiting data: compare as sets)
    assert Counter((m.topic, m.payload) for m in heard()) == Counter(
        (m.topic, m.payload) for m in sent
    )
    own = engine.counters["own_output_ignored"]  # our predictions heard back, ignored
    assert own == len(seen) - len(heard())
    assert gateway.processed == len(sent) + own and gateway.reconnects >= 1
    assert engine.rejections["unknown_modality"] == 1 and sum(engine.rejections.values()) == 3
    n_data = sum(not m.topic.endswith("/label") for m in first + second)
    n_labels = len(first) + len(second) - n_data
    assert engine.counters["chunks"] == n_data and engine.counters["labels"] == n_labels
    assert slow_paths["aiomqtt"] == 0 and slow_paths["matcher"] == 0  # the fast path was taken


def test_a_full_queue_sheds_and_counts_what_a_real_connection_delivers(
    broker_url: str, topic_prefix: str, slow_paths: Counter[str]
) -> None:
    sent = [raw for raw, _ in device_messages("c", 1, seed=6, prefix=topic_prefix)]
    sent = [m for m in sent if not m.topic.endswith("/label")][:10] + [
        m for m in sent if m.topic.endswith("/label")
    ]
    n_labels = sum(m.topic.endswith("/label") for m in sent)
    assert len(sent) == 10 + n_labels and n_labels >= 1
    gateway = Gateway(
        Engine(prefix=topic_prefix),
        gateway_config(broker_url=broker_url, prefix=topic_prefix, max_queued_incoming=3),
    )
    hook = gateway.inbox.on_shed
    shed_seen: list[str] = []

    def on_shed(kind: str) -> None:
        shed_seen.append(kind)
        assert hook is not None
        hook(kind)  # the metrics counter still counts

    gateway.inbox.on_shed = on_shed

    async def main() -> None:
        # connected and subscribed, but nothing takes from the queue
        async with gateway._client() as client:
            await client.subscribe(topics.subscription(topic_prefix), qos=1)
            await _publish(broker_url, sent)
            await _until(lambda: gateway.inbox.puts == len(sent), "every message offered")

    asyncio.run(main())
    inbox = gateway.inbox
    queued = [inbox.get_nowait() for _ in range(inbox.qsize())]
    assert queued == sent[:3] and all(type(m) is RawMessage for m in queued)
    assert inbox.high_water == 3
    assert inbox.shed == {"data": 7, "label": n_labels}
    assert shed_seen == ["data"] * 7 + ["label"] * n_labels
    shed_metric = gateway.metrics.shed.labels("data")._value.get()
    assert shed_metric == 7
    assert slow_paths["aiomqtt"] == 0 and slow_paths["matcher"] == 0


# ---------------------------------------------------------------- batched packet reader
def _reader_on_socketpair() -> tuple[Any, Any, Any, list[RawMessage]]:
    import socket

    from paho.mqtt.client import CallbackAPIVersion, Client

    from streamfuse.mqtt.reader import BatchedReader

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    paho = Client(CallbackAPIVersion.VERSION2)
    paho._sock = ours
    got: list[RawMessage] = []
    paho._handle_on_message = lambda m: got.append(raw_from_paho(m))  # QoS 1/2 via paho
    assert BatchedReader.fits(paho)
    return BatchedReader(paho, got.append), paho, theirs, got


@settings(max_examples=40, deadline=None)
@given(
    packets=st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=40),
            st.binary(max_size=3000),
            st.sampled_from([0, 0, 0, 1]),
            st.integers(0, 9),
        ),
        min_size=1,
        max_size=25,
    ),
    cuts=st.lists(st.integers(1, 4000), max_size=12),
)
def test_batched_reader_gives_every_publish_in_order_however_the_bytes_arrive(
    packets: list[tuple[bytes, bytes, int, int]], cuts: list[int]
) -> None:
    """QoS 0 PUBLISH packets parsed here, QoS 1 ones (and a PINGRESP) handed to paho, which
    acknowledges them; bytes split anywhere, including inside a length field; every message
    arrives once, in order, as paho itself would have given it."""
    reader, paho, peer, got = _reader_on_socketpair()
    stream = bytearray()
    expected = []
    for k, (topic, payload, qos, flags) in enumerate(packets):
        stream += publish_packet(topic, payload, qos, mid=k + 1, flags=flags & 0b1001)
        expected.append((topic.decode("utf-8", "backslashreplace"), payload))
        if k % 7 == 3:
            stream += b"\xd0\x00"  # PINGRESP
    pieces, last = [], 0
    for c in sorted({min(c, len(stream)) for c in cuts}):
        pieces.append(bytes(stream[last:c]))
        last = c
    pieces.append(bytes(stream[last:]))
    for piece in pieces:
        if piece:
            peer.sendall(piece)
        while reader() == 0:  # MQTT_ERR_SUCCESS: read something; AGAIN (nonzero) when empty
            pass
    assert [(m.topic, m.payload) for m in got] == expected
    assert reader.parsed == sum(1 for p in packets if p[2] == 0)
    acks = sum(1 for p in packets if p[2] == 1)
    assert reader.handed == acks + sum(1 for k in range(len(packets)) if k % 7 == 3)
    if acks:  # paho wrote a PUBACK for each QoS 1 message to its socket
        paho.loop_write()
        peer.settimeout(2)
        data = b""
        while len(data) < 4 * acks:
            data += peer.recv(4096)
        assert data[0] == 0x40 and len(data) == 4 * acks
    peer.close()
    paho._sock.close()


def test_batched_reader_reports_a_closed_or_broken_stream() -> None:
    from paho.mqtt.client import MQTTErrorCode

    reader, paho, peer, got = _reader_on_socketpair()
    peer.sendall(b"\x30\xff\xff\xff\xff\x01")  # a length field longer than four bytes
    assert reader() == MQTTErrorCode.MQTT_ERR_PROTOCOL and got == []
    peer.close()
    assert reader() == MQTTErrorCode.MQTT_ERR_CONN_LOST
    paho._sock.close()


def test_batched_reader_small_reads_across_length_field_sizes() -> None:
    """Reads of 1, 2, 3 and 5 bytes: every cut point, including inside one-, two- and
    three-byte length fields (remaining lengths around 127/128 and 16383/16384), and reads
    that end one packet and begin the next."""
    sizes = [0, 1, 120, 121, 122, 123, 16370, 16376, 16377, 16378, 20000, 3]
    stream = b"".join(publish_packet(b"sf/d/eeg", bytes([k]) * n) for k, n in enumerate(sizes))
    stream += b"\xd0\x00"
    for step in (1, 2, 3, 5):
        reader, paho, peer, got = _reader_on_socketpair()
        for k in range(0, len(stream), step):
            peer.sendall(stream[k : k + step])
            while reader() == 0:
                pass
        assert [(m.topic, m.payload) for m in got] == [
            ("sf/d/eeg", bytes([k]) * n) for k, n in enumerate(sizes)
        ], step
        assert reader.parsed == len(sizes) and reader.handed == 1
        peer.close()
        paho._sock.close()


def test_qos0_messages_from_a_real_broker_come_through_the_batched_reader(
    broker_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Device data at QoS 0 (what the simulators and the bench publish) is parsed by the
    batched reader, every message once and as sent; QoS 1 goes through paho (test above)."""
    from streamfuse.mqtt.reader import BatchedReader

    readers: list[BatchedReader] = []
    init = BatchedReader.__init__

    def recording(self: BatchedReader, *args: Any) -> None:
        init(self, *args)
        readers.append(self)

    monkeypatch.setattr(BatchedReader, "__init__", recording)
    sent = [raw for raw, _ in device_messages("q", 3, seed=6, prefix=topic_prefix)]
    seen: list[RawMessage] = []
    engine = Engine(prefix=topic_prefix)
    gateway = Gateway(
        engine, gateway_config(broker_url=broker_url, prefix=topic_prefix), on_message=seen.append
    )
    host, port, *_ = parse_broker_url(broker_url)

    def data() -> list[RawMessage]:
        # the gateway also receives its own predictions once windows close (lateness budget)
        return [m for m in seen if not m.topic.endswith("/" + topics.PREDICTION)]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.connected.wait(), 10)
            async with aiomqtt.Client(host, port) as client:
                for m in sent:
                    await client.publish(m.topic, m.payload, qos=0)
            await _until(lambda: len(data()) == len(sent), "every message")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    asyncio.run(main())
    assert Counter((m.topic, m.payload) for m in data()) == Counter(
        (m.topic, m.payload) for m in sent
    )
    # every data message (and any prediction of its own the gateway heard back) was parsed
    assert readers and sum(r.parsed for r in readers) >= len(sent)
    assert sum(r.reads for r in readers) < len(sent)  # batches, not a read per message


def test_stage_latencies_are_recorded_once_each_after_their_prediction_is_out(
    broker_url: str, topic_prefix: str
) -> None:
    """The per-stage histograms are filled after the publish (off the prediction's path),
    with every stage of every published prediction exactly once. A window closed by a tick
    (its lateness budget, or the drain at shutdown) has no decode or align stage: whether the
    last windows close on data or by a tick depends on the machine's pace, so the expected
    counts are taken from the predictions themselves."""
    import time

    timed = device_messages("h", 5, seed=7, prefix=topic_prefix)
    sent = [raw for raw, _ in timed]
    engine = Engine(prefix=topic_prefix, timer=time.perf_counter)
    made: list[Prediction] = []
    gateway = Gateway(
        engine,
        gateway_config(broker_url=broker_url, prefix=topic_prefix),
        on_prediction=made.append,
    )
    host, port, *_ = parse_broker_url(broker_url)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.connected.wait(), 10)
            start, t_first = time.monotonic(), timed[0][1]
            async with aiomqtt.Client(host, port) as client:
                for m, t in timed:  # at the devices' pace: windows close as data arrives
                    await asyncio.sleep(max(0.0, (t - t_first) - (time.monotonic() - start)))
                    await client.publish(m.topic, m.payload, qos=0)
            # the gateway also receives its own predictions (and ignores them)
            await _until(
                lambda: gateway.processed - engine.counters["own_output_ignored"] == len(sent),
                "every message",
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    asyncio.run(main())
    registry = gateway.metrics.registry
    counts = {
        stage: registry.get_sample_value("streamfuse_stage_latency_seconds_count", {"stage": stage})
        for stage in ("align", "features", "predict")
    }
    assert gateway.published >= 3 and engine.counters["predictions"] == gateway.published
    assert len(made) == gateway.published
    on_data = sum("align" in p.latency for p in made)
    assert on_data >= 1  # windows closed on data are among them
    assert counts == {"align": on_data, "features": gateway.published, "predict": gateway.published}
    assert gateway.outbox.unobserved == []


# ---------------------------------------------------------------- direct QoS 0 writes
def _connected_paho_on_socketpair(sndbuf: int | None = None) -> tuple[Any, Any]:
    import socket

    from paho.mqtt.client import CallbackAPIVersion, Client
    from paho.mqtt.enums import _ConnectionState

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if sndbuf is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    ours.setblocking(False)
    paho = Client(CallbackAPIVersion.VERSION2)
    paho._sock = ours
    paho._state = _ConnectionState.MQTT_CS_CONNECTED
    return paho, theirs


def _drain(peer: Any, n: int) -> bytes:
    peer.settimeout(5)
    data = b""
    while len(data) < n:
        data += peer.recv(1 << 20)
    return data


_TOPICS = st.text(min_size=1, max_size=30).filter(lambda t: not set(t) & {"\x00", "+", "#"})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(_TOPICS, st.binary(max_size=20000)), min_size=1, max_size=12))
def test_direct_qos0_writes_are_the_bytes_paho_writes(messages: list[tuple[str, bytes]]) -> None:
    """publish_now's own PUBLISH packets equal paho's for the same messages, byte for byte."""
    import socket as _socket

    from paho.mqtt.client import CallbackAPIVersion, Client

    from streamfuse.mqtt.fastpath import publish_now

    ours, peer = _connected_paho_on_socketpair()
    assert publish_now(ours, messages) == len(messages)
    got = _drain(peer, sum(len(p) for _, p in messages))
    # paho's own: a client that is not "connected" to our check queues through paho
    ref_a, ref_b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    ref = Client(CallbackAPIVersion.VERSION2)
    ref._sock = ref_a
    from paho.mqtt.enums import _ConnectionState

    ref._state = _ConnectionState.MQTT_CS_CONNECTED
    for topic, payload in messages:
        assert ref.publish(topic, payload, 0).rc == 0
    ref.loop_write()
    want = _drain(ref_b, len(got))
    got += peer.recv(1 << 20) if len(got) < len(want) else b""
    assert got == want
    for s in (ours._sock, peer, ref_a, ref_b):
        s.close()


def test_a_wildcard_topic_is_refused_as_paho_refuses_it() -> None:
    from streamfuse.mqtt.fastpath import publish_now

    paho, peer = _connected_paho_on_socketpair()
    with pytest.raises(ValueError, match="wildcards"):
        publish_now(paho, [("sf/+/prediction", b"x")])
    paho._sock.close()
    peer.close()


def test_a_direct_write_the_socket_cannot_take_is_finished_by_paho_in_order() -> None:
    """A small send buffer: what the socket refuses goes to paho's queue; a publish made
    meanwhile goes through paho after it; the peer reads every packet whole and in order."""
    from streamfuse.mqtt.fastpath import publish_now

    paho, peer = _connected_paho_on_socketpair(sndbuf=4096)
    first = [(f"sf/d{k}/prediction", bytes([k]) * 3000) for k in range(40)]
    assert publish_now(paho, first) == len(first)
    assert paho._out_packet  # the rest is queued in paho
    later = [("sf/late/prediction", b"after")]
    assert publish_now(paho, later) == 1  # through paho's queue, behind the rest
    expected = b"".join(publish_packet(t.encode(), p) for t, p in first + later)
    peer.settimeout(5)
    got = b""
    while len(got) < len(expected):
        paho.loop_write()
        try:
            got += peer.recv(1 << 16)
        except TimeoutError:
            break
    assert got == expected
    assert not paho._out_packet
    paho._sock.close()
    peer.close()


def test_message_and_byte_counts_reach_the_counters_at_each_flush() -> None:
    """Ingest counts messages as integers; ``messages_total`` and ``bytes_total`` get them at a
    flush (once per burst of the reader, and at every metrics refresh)."""
    msgs = device_messages("a", 3, seed=1)
    gateway = Gateway(Engine(), gateway_config(publish_qos=0), clock=lambda: 0.0)
    for raw, now in msgs:
        gateway.ingest.process(RawMessage(raw.topic, raw.payload, now))
    metrics = gateway.metrics
    labels = sum(raw.topic.endswith("/label") for raw, _ in msgs)
    assert metrics.bytes._value.get() == 0  # not flushed yet
    gateway.house.refresh_metrics()
    assert metrics.messages.labels("data")._value.get() == len(msgs) - labels
    assert metrics.messages.labels("label")._value.get() == labels > 0
    assert metrics.bytes._value.get() == sum(len(raw.payload) for raw, _ in msgs)
    gateway.ingest.flush_counts()  # nothing new: nothing added twice
    assert metrics.messages.labels("data")._value.get() == len(msgs) - labels
