"""The gateway's read path: messages off the queue (and the socket) into the engine.

- Every message already queued is taken in one wake-up, and the socket is read on between
  messages (:meth:`Ingest.read_socket`), so a burst costs no event-loop turn per message.
- Labels are held back (bounded) while data is waiting, so a fleet's labels arriving together
  (learning is the costliest step per message) do not delay the windows behind them.
- Predictions a message caused are published before the next message is taken.
- At shutdown (:meth:`Ingest.close`, :meth:`Ingest.drain`) the door closes first: the queue
  takes nothing more and what it refuses is not acknowledged, so a QoS 1 message arriving after
  the signal stays the broker's (a persistent session gets it again on restart) instead of being
  acknowledged and then dropped; what was queued before is fed to the engine within the drain
  phase of the :class:`ShutdownBudget`. Under a 2x overload the old drain took new arrivals
  for its whole timeout, twice (in the connection loop, then in ``Gateway.shutdown``), and the
  watchdog ended 4 of 5 SIGTERMs at 600 devices without a final checkpoint (issue 17, item 3).

**The engine's** ``now`` **for a message** is, under ``mqtt.arrival = "read"``, its arrival:
the gateway clock read when the socket read that yielded its bytes returned
(:func:`streamfuse.mqtt.fastpath.install_ingest`), not when the engine takes it, so time spent
in the gateway's own queue (a burst, a slow learning step, a checkpoint) never reaches the
device clock model as network delay. It is not the default yet: under a 2x overload with QoS 1
predictions (``tests/test_gateway_outbox.py``) it closes every window of the backlog (155
predictions against 57 under "take") but in bursts that overflow the outbox, which drops
some (47); the default "take" gives the engine the clock when it takes the message. The
journal records that same ``now`` (:meth:`.durability.Durability.push`). Held-back labels keep
their arrival too: when a label is learnt from is the gateway's scheduling, and its ``now``
only paces the refresh of the published metrics. A message with no stamp (NaN: one queued
again from the journal after a crash, whose read time died with the process, or one that came
another way) gets the clock when the engine takes it, as before.

Network payloads only ever reach :mod:`streamfuse.codec` (a fixed binary frame or JSON);
nothing received is unpickled or evaluated.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import topics
from ..mqtt.fastpath import protocol_of
from ..mqtt.queue import message_kind
from ..types import RawMessage

if TYPE_CHECKING:
    from .app import Gateway

#: socket reads (at most) each time the socket is read
READ_AHEAD = 4
#: while messages are queued, the socket is read after every this many (and whenever the
#: queue runs dry): a read takes everything the socket holds, so reading after each message
#: cost a system call per message and bought nothing (queued messages go first either way)
READ_EVERY = 16
#: messages processed in one go before the event loop gets a turn
YIELD_EVERY = 64
_LABEL_SUFFIX = "/" + topics.LABEL

#: the parts of ``shutdown.drain_timeout_s`` (from the signal) that feeding the queued messages
#: to the engine, then publishing what is left, may use; the rest is the final checkpoint's
DRAIN_SHARE = 0.6
FLUSH_SHARE = 0.8


class ShutdownBudget:
    """Deadlines (monotonic clock) of the shutdown's phases, fixed when the stop begins.

    ``drain``: queued messages into the engine; ``flush``: predictions out (acknowledged for
    QoS 1); ``end``: the final checkpoint written, ``timeout`` seconds after ``start``.
    """

    __slots__ = ("drain", "end", "flush", "start", "timeout")

    def __init__(self, timeout: float, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.timeout = timeout
        self.drain = self.start + DRAIN_SHARE * timeout
        self.flush = self.start + FLUSH_SHARE * timeout
        self.end = self.start + timeout


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


class Ingest:
    """Takes messages from the gateway's queue into its engine; counts them.

    ``on_message`` (optional) sees every message as it is handed to the engine.
    """

    def __init__(
        self, gateway: Gateway, on_message: Callable[[RawMessage], None] | None = None
    ) -> None:
        self.gateway = gateway
        self.on_message = on_message
        self.inbox = gateway.inbox
        self.labels: deque[RawMessage] = deque()  # held back while data is waiting
        self.processed = 0
        self.drain_left = 0  # messages still queued when the drain timed out
        self.drained = 0  # messages fed to the engine by the drain
        self.budget: ShutdownBudget | None = None
        #: messages and payload bytes taken since the last :meth:`flush_counts`, by kind: plain
        #: integers here, added to the Prometheus counters once per burst (two locked
        #: ``Counter.inc`` calls per message cost ~1.5 us; see :meth:`process`)
        self.counts: dict[str, int] = {}
        self.bytes = 0
        self._kinds: dict[str, str] = {}  # last topic level -> kind
        #: ``mqtt.arrival = "read"``: the engine gets each message's socket-read time
        self.read_time = gateway.config.mqtt.arrival == "read"

    async def read(self, client: Any) -> None:
        """Wait for a message, then take every message already queued in the same wake-up.

        aiomqtt's iterator waits on the queue *and* on the disconnect future with a fresh task
        per message; here it is awaited once per wake-up (so a lost connection still raises
        :class:`aiomqtt.MqttError` here) and the rest of the burst comes straight off our own
        queue, which :meth:`read_socket` tops up from the socket every ``READ_EVERY``
        messages and whenever it runs dry; the loop gets a turn every ``YIELD_EVERY``
        messages.
        """
        inbox = self.inbox
        messages = client.messages
        paho = protocol_of(client)
        labels = self.labels
        publish_now = self.gateway.outbox.publish_now
        while True:
            if labels and inbox.empty():
                # idle: learn from one deferred label, then look for data again
                if self.process(labels.popleft()):
                    publish_now(client)
                if paho is not None:
                    self.read_socket(paho)
                if inbox.empty():
                    self.flush_counts()
                    await asyncio.sleep(0)
                continue
            if self.counts:
                self.flush_counts()  # the burst's figures, before the loop waits
            message: Any = await anext(messages)
            n = 0
            while True:
                message = as_raw(message)  # install_ingest queued a RawMessage already
                if message.topic.endswith(_LABEL_SUFFIX):
                    self.defer(message)
                elif self.process(message):
                    publish_now(client)
                n += 1
                if n % YIELD_EVERY == 0 or self._owed():
                    self.flush_counts()
                    await asyncio.sleep(0)  # ticks, signals and the publisher get their turn
                if paho is not None and (n % READ_EVERY == 0 or inbox.empty()):
                    self.read_socket(paho)
                try:
                    message = inbox.get_nowait()
                except asyncio.QueueEmpty:
                    break

    def _owed(self) -> bool:
        """A running incremental checkpoint pickled devices on demand for a step's budget."""
        snap = self.gateway.durable.snapshot
        return snap is not None and snap.owes()

    def defer(self, message: RawMessage) -> None:
        """Hold a label until no data is waiting (bounded like the queue; excess is shed)."""
        if len(self.labels) >= self.gateway.config.mqtt.max_queued_incoming:
            self.gateway.durable.drop(message)
            self.inbox.shed["label"] += 1
            if self.inbox.on_shed is not None:
                self.inbox.on_shed("label")
            return
        self.labels.append(message)

    def read_socket(self, paho: Any) -> None:
        """Let paho read up to ``READ_AHEAD`` packets the socket already holds into the queue.

        aiomqtt reads one MQTT packet per readable event of the loop: one loop turn, one
        wake-up of this task per message. Reading here, between messages processed, takes a
        burst without those turns, and reads faster than the engine consumes, so an engine
        that falls behind fills the bounded queue and sheds (counted) as before instead of
        leaving the backlog to the broker. A read error is left to aiomqtt's own reader,
        which sees it on the next readable event and reports the disconnect.
        """
        inbox = self.inbox
        for _ in range(READ_AHEAD):
            puts = inbox.puts
            try:
                rc = paho.loop_read()
            except Exception:  # noqa: BLE001 - aiomqtt's reader reports it
                return
            if rc != 0 or inbox.puts == puts:
                return

    def horizon(self) -> float:
        """The gateway time up to which the engine has taken everything received: the clock,
        or, while messages wait in the queue, the arrival of the oldest of them.

        Ticks and idle eviction use this, not the clock: with a backlog queued, the clock
        would time out windows and call streams silent whose data is waiting here, which the
        engine's clock model, fed each message's socket-read time, has not yet seen.
        """
        now = self.gateway.clock()
        head = self.inbox.oldest()
        if head is not None:
            arrival = getattr(head, "arrival", math.nan)
            if arrival < now:  # False for NaN (a message with no stamp)
                return float(arrival)
        return now

    def process(self, raw: RawMessage) -> bool:
        """Hand one message to the engine; True if it caused a prediction.

        The message and its bytes are counted in :attr:`counts` and :attr:`bytes`, which
        reach ``messages_total`` and ``bytes_total`` at :meth:`flush_counts` (once per burst
        of :meth:`read`, after :meth:`drain`, and at every metrics refresh)."""
        topic = raw.topic
        kind = self._kinds.get(topic.rpartition("/")[2])
        if kind is None:
            kind = self._kind(topic)
        counts = self.counts
        counts[kind] = counts.get(kind, 0) + 1
        self.bytes += len(raw.payload)
        if self.on_message is not None:
            self.on_message(raw)
        self.processed += 1
        now = raw.arrival if self.read_time else math.nan  # see the module's note
        gateway = self.gateway
        if now != now:  # NaN: "take", or not read by install_ingest's paths
            now = gateway.clock()
        outputs = gateway.durable.push(raw, now)
        if outputs:
            return gateway.outbox.emit(outputs)
        return False

    def _kind(self, topic: str) -> str:
        """The message kind of ``topic``, remembered by its last topic level."""
        kind = message_kind(topic)
        if len(self._kinds) < 64:  # data kinds are few; do not grow on junk topics
            self._kinds[topic.rpartition("/")[2]] = kind
        return kind

    def flush_counts(self) -> None:
        """Add the messages and bytes counted since the last call to the Prometheus counters."""
        metrics = self.gateway.metrics
        counts = self.counts
        if counts:
            labels = metrics.messages.labels
            for kind, n in counts.items():
                labels(kind).inc(n)
            counts.clear()
        if self.bytes:
            metrics.bytes.inc(self.bytes)
            self.bytes = 0

    def close(self, client: Any = None) -> ShutdownBudget:
        """Stop taking messages (once) and fix the shutdown's deadlines; returns them.

        The queue refuses what arrives from now on, and a refused QoS 1/2 message is not
        acknowledged (acknowledgements follow the journal write, and a refused message is not
        journalled: :meth:`.durability.Durability.accept`), so the broker keeps it for the
        session: a persistent one gets it on restart, nothing acknowledged is dropped.
        QoS 0 messages refused here are lost, as QoS 0 allows; all refused ones are counted
        (``inbox.refused``).
        """
        if self.budget is None:
            self.budget = ShutdownBudget(self.gateway.config.shutdown.drain_timeout_s)
            self.inbox.close()
            self.gateway.log.info(
                "stopped taking messages: %d queued to feed to the engine (until %.1f s after "
                "the signal); what arrives now is left to the broker",
                self.inbox.qsize() + len(self.labels),
                DRAIN_SHARE * self.budget.timeout,
            )
        return self.budget

    async def drain(self, deadline: float | None = None) -> None:
        """Feed everything still queued to the engine, yielding now and then, until
        ``deadline`` (default: the budget's drain deadline); what is left then is dropped
        and counted in :attr:`drain_left`. Closes the queue first (:meth:`close`)."""
        budget = self.close()
        if deadline is None:
            deadline = budget.drain
        n = 0
        inbox = self.inbox
        log = self.gateway.log
        while not inbox.empty() or self.labels:
            if time.monotonic() > deadline:
                left = inbox.qsize() + len(self.labels)
                self.drain_left += left
                log.warning(
                    "drain timed out with %d messages still queued; they are dropped (counted "
                    "in drain_left)",
                    left,
                )
                while not inbox.empty():
                    inbox.get_nowait()
                self.labels.clear()
                break
            self.process(as_raw(inbox.get_nowait() if not inbox.empty() else self.labels.popleft()))
            n += 1
            if n % 200 == 0:
                await asyncio.sleep(0)  # let a second signal through
        self.drained += n
        self.flush_counts()
        if n:
            log.info("drained %d queued messages", n)
        gateway = self.gateway
        gateway.outbox.emit(gateway.durable.tick(self.horizon()))
