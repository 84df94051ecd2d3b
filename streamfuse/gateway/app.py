"""The MQTT gateway shell: subscribe, push every message into the engine, publish predictions.

All decisions live in :class:`~streamfuse.engine.Engine`; this module only moves bytes, reads
the clock and keeps the daemon alive:

- **Session**: QoS 1 subscription on a persistent session (fixed client id, clean session off),
  so the broker queues what arrives while the gateway is away and delivers it on reconnect.
- **Reconnect** with capped, jittered exponential backoff; TCP_NODELAY on every new socket.
  A refused login is not retried: it raises :class:`~streamfuse.errors.BrokerError` saying so.
- **Bounded incoming queue** (:class:`SheddingQueue`, shared across reconnects): when the engine
  falls behind, new messages are dropped and counted by kind instead of growing memory.
- **Ingest** (:mod:`.mqtt_io`): each received PUBLISH is queued as a
  :class:`~streamfuse.types.RawMessage` (topic decoded once), in place of aiomqtt's own
  message objects and paho's per-message topic matching; on plain TCP, QoS 0 packets are read
  and parsed in batches (one ``recv`` for all the socket holds), the rest by paho.
- **Read path**: every message already queued is taken in one wake-up and the socket is read on
  between messages; labels are held back (bounded) while data is waiting, so a fleet's labels
  arriving together (learning is the costliest step per message) do not delay the windows
  behind them; QoS 0 predictions are written without an event-loop turn each.
- **Outbox** for predictions, bounded; published whenever connected.
- **Housekeeping**: window ticks, idle-device eviction, metrics snapshots and periodic
  checkpoints run whether or not the broker is reachable.
- **Shutdown**: when ``stop`` is set the queue is drained into the engine and the outbox
  published within ``drain_timeout_s``, then a final checkpoint is written.

Network payloads only ever reach :mod:`streamfuse.codec` (a fixed binary frame or JSON); nothing
received is unpickled or evaluated. Checkpoints (pickles) are trusted local files.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .. import codec, topics
from ..engine import Engine
from ..errors import BrokerError, ConfigError
from ..state_layout import code_layout, layout_changes
from ..types import Prediction, RawMessage
from .broker import parse_broker_url, set_nodelay
from .checkpoint import CheckpointStore, Restored, state_digest
from .metrics import GatewayMetrics
from .mqtt_io import install_ingest, publish_now

log = logging.getLogger("streamfuse.gateway")

#: MQTT CONNACK codes (3.1.1 and their 5.0 equivalents) that mean "wrong credentials"
_AUTH_CODES = frozenset({4, 5, 134, 135})
#: stage latencies held back from the histograms (until the next publish) at most
_UNOBSERVED_MAX = 1024
#: socket reads (at most) each time the socket is read
_READ_AHEAD = 4
#: while messages are queued, the socket is read after every this many (and whenever the
#: queue runs dry): a read takes everything the socket holds, so reading after each message
#: cost a system call per message and bought nothing (queued messages go first either way)
_READ_EVERY = 16
#: messages processed in one go before the event loop gets a turn
_YIELD_EVERY = 64
_LABEL_SUFFIX = "/" + topics.LABEL


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """How the gateway talks to the broker and looks after itself.

    ``client_id`` set: persistent session (clean session off) so queued QoS 1 messages survive
    a gateway restart; ``None``: a random id and a clean session (demos, tests). ``username`` /
    ``password`` override those in ``broker_url``. ``metrics_port`` ``None`` disables
    ``/metrics``; ``0`` picks a free port. ``checkpoint_dir`` ``None`` disables checkpoints;
    ``idle_evict_s`` ``None`` disables eviction. ``gc_freeze``: before serving, collect once
    and move every object alive then (imported libraries, compiled kernels, restored models)
    out of the garbage collector's view (:func:`gc.freeze`), so a full collection no longer
    scans them: on the 125-device bench those pauses reached 124 ms, the latency tail.
    ``gc_refreeze_s`` (with ``gc_freeze``): every so often, collect what was made since the
    last freeze (a full collection then walks only that) and freeze what survives, so the
    devices' own long-lived state leaves the collector's view too: at 1,000 devices it made a
    35-54 ms full collection every ~7 s, a stall the queue then took most of a second to
    drain. Cyclic garbage is collected before each freeze; a cycle that dies after being
    frozen would never be (device sessions and everything else the engine keeps die by
    reference counting: ``tests/test_gateway_gc.py``). ``None``: freeze only once.
    """

    broker_url: str = "mqtt://127.0.0.1:1883"
    prefix: str = topics.DEFAULT_PREFIX
    client_id: str | None = None
    qos: int = 1
    publish_qos: int = 0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    tick_s: float = 0.1
    username: str | None = None
    password: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_insecure: bool = False
    keepalive_s: int = 30
    max_queued_incoming: int = 10_000
    max_outbox: int = 10_000
    checkpoint_dir: str | None = None
    checkpoint_interval_s: float = 60.0
    checkpoint_keep: int = 3
    idle_evict_s: float | None = None
    evict_every_s: float = 5.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_refresh_s: float = 1.0
    drain_timeout_s: float = 10.0
    gc_freeze: bool = True
    gc_refreeze_s: float | None = 10.0


def refrozen() -> int:
    """Collect the objects made since the last :func:`gc.freeze` (the frozen ones are not
    looked at), then freeze the survivors; returns how many unreachable objects were found."""
    found = gc.collect()
    gc.freeze()
    return found


def message_kind(topic: str) -> str:
    """``"label"``, ``"prediction"`` or ``"data"`` from the last topic level (for counters)."""
    last = topic.rpartition("/")[2]
    return last if last in (topics.LABEL, topics.PREDICTION) else "data"


def _topic(message: Any) -> str:
    """The topic of an aiomqtt message as a string."""
    topic = message.topic
    if isinstance(topic, str):
        return topic
    value = getattr(topic, "value", None)
    return value if isinstance(value, str) else str(topic)


def as_raw(message: Any) -> RawMessage:
    """``message`` (a :class:`RawMessage`, an aiomqtt message or alike) as a :class:`RawMessage`."""
    if type(message) is RawMessage:
        return message
    payload = message.payload
    if not isinstance(payload, bytes | bytearray):
        payload = b"" if payload is None else str(payload).encode()
    return RawMessage(_topic(message), bytes(payload))


class SheddingQueue(asyncio.Queue):  # type: ignore[type-arg]
    """A bounded queue that drops (and counts) new messages when full instead of raising.

    The paho callback of :func:`install_ingest` puts every incoming message here; tail drop
    keeps what is already queued, and the engine sees the dropped chunks as gaps.

    ``put_nowait`` and ``get_nowait`` (once per message each) work on :class:`asyncio.Queue`'s
    own deque and waiter lists, as its methods do, without the method calls around them
    (``full``, ``qsize``, ``_put``, ``_wakeup_next`` on no waiter): together 0.47 us instead
    of 1.85 us per message. ``get``, ``put``, ``join`` and ``task_done`` are asyncio's.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.shed: Counter[str] = Counter()
        self.high_water = 0
        self.puts = 0  # messages offered (kept or shed)
        self.on_shed: Callable[[str], None] | None = None
        self._items: deque[Any] = self._queue  # type: ignore[attr-defined]

    def put_nowait(self, item: Any) -> None:
        self.puts += 1
        items = self._items
        n = len(items)
        if 0 < self.maxsize <= n:
            kind = message_kind(str(getattr(item, "topic", "")))
            self.shed[kind] += 1
            if self.on_shed is not None:
                self.on_shed(kind)
            return
        items.append(item)
        self._unfinished_tasks += 1  # type: ignore[attr-defined]
        self._finished.clear()  # type: ignore[attr-defined]
        if self._getters:  # type: ignore[attr-defined]
            self._wakeup_next(self._getters)  # type: ignore[attr-defined]
        if n >= self.high_water:
            self.high_water = n + 1

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if self._putters:  # type: ignore[attr-defined]
            self._wakeup_next(self._putters)  # type: ignore[attr-defined]
        return item


class Gateway:
    """Hosts an :class:`Engine` behind an aiomqtt consumer.

    ``on_prediction`` (optional) sees every prediction as it is made; the demo's live view uses
    it. ``on_message`` (optional) sees every message as it is handed to the engine.
    """

    def __init__(
        self,
        engine: Engine,
        settings: GatewaySettings,
        *,
        clock: Callable[[], float] = time.time,
        on_prediction: Callable[[Prediction], None] | None = None,
        on_message: Callable[[RawMessage], None] | None = None,
        logger: logging.Logger = log,
    ) -> None:
        if engine.prefix != settings.prefix:
            raise ConfigError(
                f"the engine parses topics under {engine.prefix!r} but the gateway subscribes "
                f"under {settings.prefix!r}; give both the same prefix"
            )
        self.engine = engine
        self.settings = settings
        self._clock = clock
        self._on_prediction = on_prediction
        self._on_message = on_message
        self._log = logger
        self.connected = asyncio.Event()
        self.published = 0
        self.reconnects = 0
        self.processed = 0
        self.publish_dropped = 0
        self.drain_left = 0  # messages still queued when the drain timed out
        self.restored: Restored | None = None
        self.restored_digest: str | None = None
        self.retired_align: Counter[str] = Counter()  # align counters of evicted devices
        self.inbox = SheddingQueue(settings.max_queued_incoming)
        self._outbox: deque[Prediction] = deque()
        self._unobserved: list[Mapping[str, float]] = []  # stage latencies not yet recorded
        self._outbox_ready = asyncio.Event()
        self._kind_counters: dict[str, Any] = {}
        self._labels: deque[RawMessage] = deque()  # labels held back while data is waiting
        self.metrics = GatewayMetrics(self.inbox.qsize, settings.max_queued_incoming)
        self.inbox.on_shed = lambda kind: self.metrics.shed.labels(kind).inc()
        self.store = (
            CheckpointStore(settings.checkpoint_dir, settings.checkpoint_keep)
            if settings.checkpoint_dir
            else None
        )
        self._restore_attempted = False

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then drain, publish what is left and checkpoint."""
        self.restore()
        if self.settings.gc_freeze and not gc.get_freeze_count():
            gc.collect()  # once per process: what is frozen is never collected by the cycle GC
            gc.freeze()
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        self._refresh_metrics()
        house = asyncio.create_task(self._housekeeping(stop), name="streamfuse[gateway].house")
        try:
            await self._connection_loop(stop)
        finally:
            house.cancel()
            await asyncio.gather(house, return_exceptions=True)
            if self.inbox.qsize():  # stopped while disconnected: process without publishing
                await self._drain(time.monotonic() + self.settings.drain_timeout_s)
            if self._outbox:
                self.publish_dropped += len(self._outbox)
                self.metrics.publish_dropped.inc(len(self._outbox))
                self._log.warning("%d predictions not published at shutdown", len(self._outbox))
                self._outbox.clear()
            self.checkpoint()
            self._refresh_metrics()
            self.connected.clear()
            self.metrics.close()

    def restore(self) -> Restored | None:
        """Load the newest usable checkpoint into :attr:`engine` (once; no-op without a store)."""
        if self.store is None or self._restore_attempted:
            return self.restored
        self._restore_attempted = True
        found = self.store.load_latest()
        if self.store.corrupt:
            self.metrics.checkpoints_corrupt.inc(self.store.corrupt)
        if found is None:
            self._log.info("no checkpoint in %s; starting fresh", self.store.dir)
            return None
        state = found.state
        engine = state.get("engine") if isinstance(state, dict) else None
        changed = layout_changes(state.get("layout"), engine) if engine is not None else []
        if changed:
            self._log.error("checkpoint %s holds state of classes that have changed since (%s); "
                            "starting fresh and leaving the file in place", found.path,
                            "; ".join(changed))
            return None
        if (
            not isinstance(engine, Engine)
            or engine.prefix != self.engine.prefix
            or engine.config != self.engine.config
        ):
            self._log.error(
                "checkpoint %s does not match this gateway's configuration (prefix, modalities, "
                "windows or model); starting fresh and leaving the file in place",
                found.path,
            )
            return None
        self.engine = engine
        self.retired_align = Counter(state.get("retired_align", {}))
        self.restored = found
        self.restored_digest = state_digest(engine.hub)
        self._log.info(
            "restored checkpoint %s (body sha256 %s, model state sha256 %s, %d devices, "
            "%d windows so far)",
            found.path,
            found.body_sha256,
            self.restored_digest,
            len(engine.sessions),
            engine.counters.get("windows", 0),
        )
        return found

    def checkpoint(self) -> None:
        """Save the engine now (no-op without a checkpoint folder); errors are logged."""
        if self.store is None:
            return
        try:
            self.store.save(
                {
                    "layout": code_layout(),
                    "engine": self.engine,
                    "retired_align": dict(self.retired_align),
                    "saved_at": self._clock(),
                }
            )
        except (OSError, Exception) as exc:  # a full disk must not stop the gateway
            self._log.error("checkpoint to %s failed: %s", self.store.dir, exc)
            return
        self.metrics.checkpoints.inc()

    # ------------------------------------------------------------------ connection
    def _client(self) -> aiomqtt.Client:
        s = self.settings
        host, port, user, password, tls = parse_broker_url(s.broker_url)
        user = s.username if s.username is not None else user
        password = s.password if s.password is not None else password
        tls_params = None
        if tls or s.tls_ca_file or s.tls_cert_file:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=s.tls_ca_file,
                certfile=s.tls_cert_file,
                keyfile=s.tls_key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        persistent = bool(s.client_id)
        client = aiomqtt.Client(
            host,
            port,
            username=user,
            password=password,
            identifier=s.client_id,
            clean_session=not persistent,
            keepalive=s.keepalive_s,
            logger=logging.getLogger("streamfuse.gateway.mqtt"),
            tls_params=tls_params,
            tls_insecure=s.tls_insecure if tls_params is not None else None,
            # the same bounded queue across reconnects: nothing queued is lost on a reconnect
            queue_type=lambda maxsize=0: self.inbox,  # type: ignore[arg-type,misc]
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # before connecting, so that what a persistent session delivers first takes it too
        if not install_ingest(client, self.inbox.put_nowait):
            self._log.warning("paho has no _handle_on_message; ingest goes through on_message")
        return client

    async def _connection_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        host, port, *_ = parse_broker_url(s.broker_url)
        backoff = s.backoff_initial_s
        first = True
        while not stop.is_set():
            try:
                async with self._client() as client:
                    set_nodelay(client)
                    await client.subscribe(topics.subscription(s.prefix), qos=s.qos)
                    self.connected.set()
                    self.metrics.connected.set(1)
                    backoff = s.backoff_initial_s
                    self._log.info(
                        "gateway %s to %s:%d, subscribed to %s (QoS %d, %s session)",
                        "connected" if first else "reconnected",
                        host,
                        port,
                        topics.subscription(s.prefix),
                        s.qos,
                        "persistent" if s.client_id else "clean",
                    )
                    first = False
                    await self._consume(client, stop)
                    # stop was set: drain while the connection still carries our predictions
                    deadline = time.monotonic() + s.drain_timeout_s
                    await self._drain(deadline)
                    await self._flush_outbox(client, deadline)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self.metrics.connected.set(0)
                code = getattr(getattr(exc, "rc", None), "value", getattr(exc, "rc", None))
                if code in _AUTH_CODES or "not authori" in str(exc).lower():
                    raise BrokerError(
                        f"the broker at {host}:{port} refused the login"
                        f"{' of user ' + repr(self._user()) if self._user() else ''}: {exc}. "
                        "Check mqtt.username and the password (mqtt.password_file or "
                        "STREAMFUSE_MQTT_PASSWORD)"
                    ) from exc
                if stop.is_set():
                    break
                self.reconnects += 1
                self.metrics.reconnects.inc()
                delay = min(s.backoff_max_s, backoff) * random.uniform(0.5, 1.0)
                self._log.warning(
                    "broker %s:%d unreachable or lost (%s); reconnecting in %.2f s",
                    host,
                    port,
                    exc,
                    delay,
                )
                backoff = min(s.backoff_max_s, backoff * 2)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        self.connected.clear()
        self.metrics.connected.set(0)

    def _user(self) -> str | None:
        return self.settings.username or parse_broker_url(self.settings.broker_url).username

    async def _consume(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait(), name="streamfuse[gateway].stop")
        reader = asyncio.create_task(self._read(client), name="streamfuse[gateway].ingest")
        writer = asyncio.create_task(self._publisher(client), name="streamfuse[gateway].publish")
        tasks = {reader, stopper, writer}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, client: aiomqtt.Client) -> None:
        """Wait for a message, then take every message already queued in the same wake-up.

        aiomqtt's iterator waits on the queue *and* on the disconnect future with a fresh task
        per message; here it is awaited once per wake-up (so a lost connection still raises
        :class:`aiomqtt.MqttError` here) and the rest of the burst comes straight off our own
        queue, which :meth:`_read_socket` tops up from the socket every ``_READ_EVERY``
        messages and whenever it runs dry; the loop gets a turn every
        ``_YIELD_EVERY`` messages. Predictions a message caused are published before the next
        message is taken.
        """
        inbox = self.inbox
        messages = client.messages
        paho = getattr(client, "_client", None)
        labels = self._labels
        while True:
            if labels and inbox.empty():
                # idle: learn from one deferred label, then look for data again
                if self._process(labels.popleft()):
                    self._publish_now(client)
                if paho is not None:
                    self._read_socket(paho)
                if inbox.empty():
                    await asyncio.sleep(0)
                continue
            message: Any = await anext(messages)
            n = 0
            while True:
                message = as_raw(message)  # install_ingest queued a RawMessage already
                if message.topic.endswith(_LABEL_SUFFIX):
                    self._defer(message)
                elif self._process(message):
                    self._publish_now(client)
                n += 1
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # ticks, signals and the publisher get their turn
                if paho is not None and (n % _READ_EVERY == 0 or inbox.empty()):
                    self._read_socket(paho)
                try:
                    message = inbox.get_nowait()
                except asyncio.QueueEmpty:
                    break

    def _defer(self, message: RawMessage) -> None:
        """Hold a label until no data is waiting (bounded like the queue; excess is shed)."""
        if len(self._labels) >= self.settings.max_queued_incoming:
            self.inbox.shed["label"] += 1
            if self.inbox.on_shed is not None:
                self.inbox.on_shed("label")
            return
        self._labels.append(message)

    def _read_socket(self, paho: Any) -> None:
        """Let paho read up to ``_READ_AHEAD`` packets the socket already holds into the queue.

        aiomqtt reads one MQTT packet per readable event of the loop: one loop turn, one
        wake-up of this task per message. Reading here, between messages processed, takes a
        burst without those turns, and reads faster than the engine consumes, so an engine
        that falls behind fills the bounded queue and sheds (counted) as before instead of
        leaving the backlog to the broker. A read error is left to aiomqtt's own reader,
        which sees it on the next readable event and reports the disconnect.
        """
        inbox = self.inbox
        for _ in range(_READ_AHEAD):
            puts = inbox.puts
            try:
                rc = paho.loop_read()
            except Exception:  # noqa: BLE001 - aiomqtt's reader reports it
                return
            if rc != 0 or inbox.puts == puts:
                return

    def _process(self, raw: RawMessage) -> bool:
        """Hand one message to the engine; True if it caused a prediction."""
        counter = self._kind_counters.get(raw.topic.rpartition("/")[2])
        if counter is None:
            counter = self._kind_counter(raw.topic)
        counter.inc()
        self.metrics.bytes.inc(len(raw.payload))
        if self._on_message is not None:
            self._on_message(raw)
        self.processed += 1
        outputs = self.engine.push(raw, self._clock())
        if outputs:
            return self._emit(outputs)
        return False

    def _kind_counter(self, topic: str) -> Any:
        """The message counter child of ``topic``'s kind, remembered by its last topic level."""
        child = self.metrics.messages.labels(message_kind(topic))
        last = topic.rpartition("/")[2]
        if len(self._kind_counters) < 64:  # data kinds are few; do not grow on junk topics
            self._kind_counters[last] = child
        return child

    async def _drain(self, deadline: float) -> None:
        """Feed everything still queued to the engine, yielding now and then, until deadline."""
        n = 0
        while not self.inbox.empty() or self._labels:
            if time.monotonic() > deadline:
                self.drain_left = self.inbox.qsize() + len(self._labels)
                self._log.warning(
                    "drain timed out with %d messages still queued; they are dropped",
                    self.drain_left,
                )
                return
            inbox = self.inbox
            self._process(
                as_raw(inbox.get_nowait() if not inbox.empty() else self._labels.popleft())
            )
            n += 1
            if n % 200 == 0:
                await asyncio.sleep(0)  # let a second signal through
        if n:
            self._log.info("drained %d queued messages", n)
        self._emit(self.engine.tick(self._clock()))

    # ------------------------------------------------------------------ outputs
    def _emit(self, outputs: list) -> bool:
        """Queue the predictions among ``outputs`` for publishing; True if there were any."""
        added = False
        for out in outputs:
            if not isinstance(out, Prediction):
                continue
            if out.latency:  # recorded once the prediction is out (_publish_now)
                self._unobserved.append(out.latency)
            if self._on_prediction is not None:
                self._on_prediction(out)
            if len(self._outbox) >= self.settings.max_outbox:
                self._outbox.popleft()
                self.publish_dropped += 1
                self.metrics.publish_dropped.inc()
            self._outbox.append(out)
            added = True
        if self._outbox:
            self._outbox_ready.set()
        if len(self._unobserved) >= _UNOBSERVED_MAX:  # not published for a while: record now
            self._observe_latencies()
        return added

    def _observe_latencies(self) -> None:
        """Put the per-stage latencies of the predictions emitted since into the histograms."""
        observe = self.metrics.observe_latency
        for latency in self._unobserved:
            observe(latency)
        self._unobserved.clear()

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            await self._publish_outbox(client)
            self._outbox_ready.clear()
            await self._outbox_ready.wait()

    def _publish_now(self, client: aiomqtt.Client) -> bool:
        """Publish the outbox synchronously when predictions go out at QoS 0.

        paho sends a QoS 0 message without any acknowledgement, but aiomqtt's ``publish``
        awaits paho's "written" callback, i.e. one event-loop turn per prediction. Here the
        packets are queued in paho and written to the socket at once (what paho does not
        write now, the loop writes when the socket is ready). Returns False (leaving the
        outbox to :meth:`_publish_outbox`) for QoS 1/2, or if paho refuses (not connected).
        """
        paho = getattr(client, "_client", None)
        if self.settings.publish_qos != 0 or paho is None:
            self._observe_latencies()
            return False
        prefix = self.settings.prefix
        outbox = self._outbox
        sent = publish_now(
            paho,
            [(topics.prediction_topic(prefix, out.device), codec.encode_prediction(out))
             for out in outbox],
        )
        for _ in range(sent):
            outbox.popleft()
        if sent:
            self.published += sent
            self.metrics.published.inc(sent)
        # after the write: the histograms (~1-2 us per stage) are not on a prediction's path
        self._observe_latencies()
        return not self._outbox

    async def _publish_outbox(self, client: aiomqtt.Client) -> None:
        if self._publish_now(client):
            return
        while self._outbox:
            out = self._outbox[0]
            await client.publish(
                topics.prediction_topic(self.settings.prefix, out.device),
                codec.encode_prediction(out),
                qos=self.settings.publish_qos,
            )
            self._outbox.popleft()
            self.published += 1
            self.metrics.published.inc()

    async def _flush_outbox(self, client: aiomqtt.Client, deadline: float) -> None:
        try:
            await asyncio.wait_for(
                self._publish_outbox(client), max(0.01, deadline - time.monotonic())
            )
        except TimeoutError:
            self._log.warning("publishing left-over predictions timed out")

    # ------------------------------------------------------------------ housekeeping
    async def _housekeeping(self, stop: asyncio.Event) -> None:
        s = self.settings
        mono = time.monotonic
        next_ckpt = mono() + s.checkpoint_interval_s
        next_evict = mono() + s.evict_every_s
        next_refresh = mono() + s.metrics_refresh_s
        refreeze = s.gc_refreeze_s if s.gc_freeze else None
        next_freeze = mono() + (refreeze or 0.0)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), s.tick_s)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            self._emit(self.engine.tick(self._clock()))
            t = mono()
            if s.idle_evict_s is not None and t >= next_evict:
                next_evict = t + s.evict_every_s
                self.evict_idle()
            if t >= next_refresh:
                next_refresh = t + s.metrics_refresh_s
                self._refresh_metrics()
            if refreeze is not None and t >= next_freeze:
                next_freeze = t + refreeze
                refrozen()
            if self.store is not None and t >= next_ckpt:
                next_ckpt = t + s.checkpoint_interval_s
                self.checkpoint()

    def evict_idle(self) -> None:
        """Forget devices silent for ``idle_evict_s`` (their counters are kept for metrics)."""
        if self.settings.idle_evict_s is None:
            return
        before = dict(self.engine.sessions)
        self._emit(self.engine.evict_idle(self._clock(), self.settings.idle_evict_s))
        for device, session in before.items():
            if device not in self.engine.sessions:
                self.retired_align.update(session.aligner.counters)

    def align_totals(self) -> Counter[str]:
        """Alignment counters of live devices plus those of evicted ones."""
        total: Counter[str] = Counter(self.retired_align)
        stats = self.engine.stats()
        total.update(stats["align"])
        return total

    def _refresh_metrics(self) -> None:
        stats = dict(self.engine.stats())
        stats["align"] = dict(self.align_totals())
        self.metrics.refresh(stats, len(self.engine.sessions))
