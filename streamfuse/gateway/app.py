"""The MQTT gateway shell: subscribe, push every message into the engine, publish predictions.

All decisions live in :class:`~streamfuse.engine.Engine`; :class:`Gateway` only moves bytes,
reads the clock and keeps the connection alive. Its parts, one module each:

- **Session** (here): QoS 1 subscription on a persistent session (fixed client id, clean
  session off), so the broker queues what arrives while the gateway is away and delivers it on
  reconnect; reconnects with capped, jittered exponential backoff. A refused login is not
  retried: it raises :class:`~streamfuse.errors.BrokerError` saying so, and so does a TLS
  handshake that fails before the first connection (a setting to fix). The client comes from
  :func:`streamfuse.mqtt.client.connect` (TLS for ``mqtts://`` or ``mqtt.tls``).
- **Ingest** (:mod:`.ingest`, :mod:`streamfuse.mqtt.fastpath`): a bounded queue that sheds
  and counts when the engine falls behind, burst reads, labels held back, the shutdown drain.
- **Outbox** (:mod:`.outbox`): predictions, bounded, published whenever connected.
- **Housekeeping** (:mod:`.housekeeping`): window ticks, idle-device eviction, metrics
  snapshots, GC re-freezes and periodic checkpoints, connected or not.
- **Checkpoints** (:mod:`.checkpointing`, :mod:`.snapshot`, :mod:`.checkpoint`): restored
  once at start-up, taken on schedule incrementally (a few devices per loop turn, written by a
  thread) and inline at shutdown.
- **Journal** (:mod:`.durability`, :mod:`.journal`): every accepted message before its
  acknowledgement, every engine call before the engine sees it, every window before it is
  published; recovery applies the journal after the restored checkpoint.

:meth:`Gateway.run` is start-up, main loop and shutdown in one call; the daemon, the demo and
the bench host it through :class:`~streamfuse.gateway.server.Server`, which adds signals,
warm-up and the shutdown watchdog. Checkpoints (pickles) are trusted local files; nothing
received from the network is unpickled or evaluated.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from .. import topics
from ..engine import Engine
from ..errors import BrokerError, ConfigError
from ..mqtt.address import parse_broker_url
from ..mqtt.client import (
    Client,
    MqttError,
    TlsFiles,
    connect,
    describe_failure,
    is_tls_failure,
    uses_tls,
)
from ..mqtt.fastpath import install_ingest
from ..mqtt.queue import SheddingQueue
from ..mqtt.sockets import set_nodelay
from ..types import Prediction, RawMessage
from .checkpoint import CheckpointStore, Restored, huge_page_hint
from .checkpointing import Checkpoints
from .config import GatewayConfig
from .durability import Durability, make_journal
from .federation import join_federation
from .housekeeping import Housekeeping
from .ingest import Ingest
from .metrics import GatewayMetrics
from .outbox import Outbox

log = logging.getLogger("streamfuse.gateway")

#: MQTT CONNACK codes (3.1.1 and their 5.0 equivalents) that mean "wrong credentials"
_AUTH_CODES = frozenset({4, 5, 134, 135})


class Gateway:
    """Hosts an :class:`Engine` behind an MQTT session, configured by a :class:`GatewayConfig`.

    ``clock`` is the gateway clock handed to the engine as ``now``. ``on_prediction``
    (optional) sees every prediction as it is made; the demo's live view uses it.
    ``on_message`` (optional) sees every message as it is handed to the engine.
    """

    def __init__(
        self,
        engine: Engine,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_prediction: Callable[[Prediction], None] | None = None,
        on_message: Callable[[RawMessage], None] | None = None,
        logger: logging.Logger = log,
    ) -> None:
        if engine.prefix != config.prefix:
            raise ConfigError(
                f"the engine parses topics under {engine.prefix!r} but the gateway subscribes "
                f"under {config.prefix!r}; give both the same prefix"
            )
        self.engine = engine
        self.config = config
        self.clock = clock
        self.log = logger
        self.connected = asyncio.Event()
        self.ever_connected = False  # a gateway that never connected leaves no checkpoint
        self.reconnects = 0
        self.restored: Restored | None = None
        self.restored_digest: str | None = None
        limit = config.mqtt.max_queued_incoming
        self.inbox = SheddingQueue(limit)
        self.metrics = GatewayMetrics(self.inbox.qsize, limit)
        self.inbox.on_shed = lambda kind: self.metrics.shed.labels(kind).inc()
        self.outbox = Outbox(self, on_prediction)
        self.ingest = Ingest(self, on_message)
        self.house = Housekeeping(self)
        c = config.checkpoint
        self.store = CheckpointStore(c.dir, c.keep) if c.dir else None
        self.durable = Durability(self, make_journal(config))
        self.saver = Checkpoints(self, self.store)
        self._restore_attempted = False
        self._password = config.password()  # read once: a missing file fails at start
        m = config.mqtt
        self._tls = uses_tls(
            parse_broker_url(m.broker), tls=m.tls, files=TlsFiles(m.ca_file, m.cert_file)
        )

    # ------------------------------------------------------------------ counters
    @property
    def processed(self) -> int:
        """Messages handed to the engine."""
        return self.ingest.processed

    @property
    def published(self) -> int:
        """Predictions published."""
        return self.outbox.published

    @property
    def publish_dropped(self) -> int:
        """Predictions dropped unpublished (outbox full, or left at shutdown)."""
        return self.outbox.dropped

    @property
    def drain_left(self) -> int:
        """Messages still queued when the shutdown drain timed out."""
        return self.ingest.drain_left

    def align_totals(self) -> Any:
        """Alignment counters of live devices plus those of evicted ones."""
        return self.house.align_totals()

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then drain, publish what is left and checkpoint."""
        self.startup()
        try:
            await self.main_loop(stop)
        finally:
            await self.shutdown()

    def startup(self) -> None:
        """Restore the newest checkpoint, freeze the start-up heap, serve ``/metrics``."""
        self.restore()
        if self.store is not None:
            huge_page_hint(self.log)
        if self.config.resources.gc_freeze and not gc.get_freeze_count():
            gc.collect()  # once per process: what is frozen is never collected by the cycle GC
            gc.freeze()
        m = self.config.metrics
        if m.port:
            self.metrics.serve(m.port, m.host)
        self.house.refresh_metrics()

    async def main_loop(self, stop: asyncio.Event) -> None:
        """Housekeeping beside the connection loop until ``stop`` is set."""
        house = asyncio.create_task(self.house.run(stop), name="streamfuse[gateway].house")
        federation = join_federation(self, stop)  # None unless [federated] names one
        tasks = [task for task in (house, federation) if task is not None]
        try:
            await self._connection_loop(stop)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        """Process what is still queued (when stopped while disconnected), count what could not
        be published, write the final checkpoint, close the metrics endpoint."""
        if self.inbox.qsize() or self.ingest.labels:  # stopped while disconnected
            await self.ingest.drain()  # process without publishing, within the budget
        self.outbox.discard()
        if self.ever_connected or self.processed:  # else nothing happened worth a file
            self.checkpoint()
        self.durable.close()
        self.house.refresh_metrics()
        self.connected.clear()
        self.metrics.close()

    def restore(self) -> Restored | None:
        """Load the newest usable checkpoint into :attr:`engine` and apply the journal after
        it (once; see :meth:`.durability.Durability.recover`)."""
        if self._restore_attempted:
            return self.restored
        self._restore_attempted = True
        found = self.saver.load()
        self.durable.recover(
            found.state if found is not None else None, found.path if found is not None else None
        )
        return found

    def checkpoint(self, *, background: bool = False, fork: bool = False) -> None:
        """Save the engine (no-op without a checkpoint folder); errors are logged.

        ``background``: incremental, a few devices per loop turn, written by a thread
        (:mod:`.snapshot`); skipped, and counted, while the previous one still runs; ``fork``
        with it: a forked writer instead. Otherwise inline (after waiting for a running one),
        as at shutdown. See :mod:`.checkpointing`.
        """
        self.saver.save(background=background, fork=fork)

    def checkpoint_done(self, *, wait: bool = False) -> None:
        """Reap a finished background checkpoint (called on every tick); ``wait``: finish
        and wait for a running one."""
        self.saver.done(wait=wait)

    # ------------------------------------------------------------------ connection
    def _client(self) -> Client:
        m = self.config.mqtt
        client = connect(
            m.broker,
            client_id=self.config.client_id,
            clean_session=self.config.client_id is None,
            username=m.username or None,
            password=self._password,
            tls=m.tls,
            tls_files=TlsFiles(m.ca_file, m.cert_file, m.key_file, insecure=m.tls_insecure),
            keepalive=m.keepalive_s,
            logger=logging.getLogger("streamfuse.gateway.mqtt"),
            # the same bounded queue across reconnects: nothing queued is lost on a reconnect
            queue_type=lambda maxsize=0: self.inbox,
        )
        self.outbox.prepare(client)  # QoS 1 predictions: in-flight limit, acknowledgements
        # before connecting, so that what a persistent session delivers first takes it too
        if not install_ingest(client, self.durable.accept, self.durable.commit, self.clock):
            self.log.warning("paho has no _handle_on_message; ingest goes through on_message")
        return client

    async def _connection_loop(self, stop: asyncio.Event) -> None:
        m = self.config.mqtt
        host, port, *_ = parse_broker_url(m.broker)
        backoff = m.backoff_initial_s
        first = True
        while not stop.is_set():
            try:
                async with self._client() as client:
                    set_nodelay(client)
                    await client.subscribe(topics.subscription(m.prefix), qos=m.qos)
                    self.connected.set()
                    self.ever_connected = True
                    self.metrics.connected.set(1)
                    backoff = m.backoff_initial_s
                    self.log.info(
                        "gateway %s to %s:%d, subscribed to %s (QoS %d, %s session)",
                        "connected" if first else "reconnected",
                        host,
                        port,
                        topics.subscription(m.prefix),
                        m.qos,
                        "persistent" if self.config.client_id else "clean",
                    )
                    first = False
                    await self._consume(client, stop)
                    # stop was set: take nothing more, drain what was queued while the
                    # connection still carries our predictions, within the shutdown budget
                    budget = self.ingest.close(client)
                    await self.ingest.drain(budget.drain)
                    await self.outbox.flush(client, budget.flush)
            except MqttError as exc:
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
                if first and self._tls and is_tls_failure(exc):
                    # a TLS listener that is not one, or a certificate not trusted: a setting
                    # to fix, not a broker to wait for (once connected, losses are retried)
                    raise BrokerError(
                        describe_failure(exc, parse_broker_url(m.broker), tls=True)
                    ) from exc
                if stop.is_set():
                    break
                self.reconnects += 1
                self.metrics.reconnects.inc()
                delay = min(m.backoff_max_s, backoff) * random.uniform(0.5, 1.0)
                self.log.warning(
                    "broker %s:%d unreachable or lost (%s); reconnecting in %.2f s",
                    host,
                    port,
                    exc,
                    delay,
                )
                backoff = min(m.backoff_max_s, backoff * 2)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        self.connected.clear()
        self.metrics.connected.set(0)

    def _user(self) -> str | None:
        return self.config.mqtt.username or parse_broker_url(self.config.mqtt.broker).username

    async def _consume(self, client: Client, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait(), name="streamfuse[gateway].stop")
        reader = asyncio.create_task(self.ingest.read(client), name="streamfuse[gateway].ingest")
        writer = asyncio.create_task(
            self.outbox.publisher(client), name="streamfuse[gateway].publish"
        )
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
