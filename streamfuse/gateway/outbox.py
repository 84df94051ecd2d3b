"""The gateway's outbox: predictions queued (bounded) and published whenever connected.

Predictions are handed to the connection as soon as a message made them, by the read path
itself (:meth:`Outbox.publish_now` after each such message), so publishing never waits for
the event loop to pick a task while ingest is busy:

- QoS 0: written to the socket at once (:func:`streamfuse.mqtt.fastpath.publish_now`);
- QoS 1/2: handed to paho without awaiting each acknowledgement
  (:func:`streamfuse.mqtt.fastpath.publish_acked`); paho keeps up to its in-flight limit
  (:data:`INFLIGHT`) unacknowledged and sends the rest as acknowledgements arrive. A
  prediction counts as published when the broker acknowledged it. Until then it is held in
  :attr:`Outbox.unacked` (bounded by ``resources.max_outbox`` together with the queue); when
  the connection ends, the unacknowledged ones go back to the front of the queue and are sent
  again on the next connection (at least once, as QoS 1 promises).

Before this, QoS 1 predictions went out one awaited ``publish`` at a time: one broker round
trip each, on a loop busy with ingest; at 400-800 devices close-to-receipt reached 7-15 s and
9,255 predictions were dropped from a full outbox (issue 17, item 9).

Every prediction not published is counted in ``publish_dropped_total``: the oldest queued one
when the outbox is full, and whatever is left (queued or unacknowledged) at shutdown.
Per-stage latencies are recorded in the metrics once their prediction is out, so the
histograms (~1-2 us per stage) are not on a prediction's path.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import codec, topics
from ..mqtt.fastpath import protocol_of, publish_acked, publish_now
from ..types import Prediction

if TYPE_CHECKING:
    from .app import Gateway

#: stage latencies held back from the histograms (until the next publish) at most
UNOBSERVED_MAX = 1024
#: QoS 1/2 predictions paho keeps unacknowledged on the wire (its default is 20)
INFLIGHT = 256


class Outbox:
    """Predictions waiting to be published, and the publishing of them.

    ``on_prediction`` (optional) sees every prediction as it is made (the demo's live view).
    """

    def __init__(
        self, gateway: Gateway, on_prediction: Callable[[Prediction], None] | None = None
    ) -> None:
        self.gateway = gateway
        self.on_prediction = on_prediction
        self.queue: deque[Prediction] = deque()
        self.unobserved: list[Mapping[str, float]] = []  # stage latencies not yet recorded
        self.ready = asyncio.Event()
        #: QoS 1/2 predictions handed to paho, by message id, until the broker acknowledges
        self.unacked: dict[int, Prediction] = {}
        self.all_acked = asyncio.Event()
        self.all_acked.set()
        self.published = 0
        self.dropped = 0
        self._hooked: Any = None  # the paho client whose on_publish reports to us
        self.client: Any = None  # the connection predictions go out on, while publishing
        self._acked_early: set[int] = set()
        self._handing = False  # inside publish_acked

    def __len__(self) -> int:
        return len(self.queue) + len(self.unacked)

    def emit(self, outputs: list) -> bool:
        """Queue the predictions among ``outputs`` for publishing; True if there were any."""
        added = False
        limit = self.gateway.config.resources.max_outbox
        metrics = self.gateway.metrics
        queue = self.queue
        for out in outputs:
            if not isinstance(out, Prediction):
                continue
            if out.latency:  # recorded once the prediction is out (publish_now)
                self.unobserved.append(out.latency)
            if self.on_prediction is not None:
                self.on_prediction(out)
            if queue and len(queue) + len(self.unacked) >= limit:
                queue.popleft()
                self.dropped += 1
                metrics.publish_dropped.inc()
            queue.append(out)
            added = True
        if queue:
            if self.client is not None:  # connected: out now, whoever made them (ticks too)
                self.publish_now(self.client)
            if queue:
                self.ready.set()
        if len(self.unobserved) >= UNOBSERVED_MAX:  # not published for a while: record now
            self.observe_latencies()
        return added

    def observe_latencies(self) -> None:
        """Put the per-stage latencies of the predictions emitted since into the histograms."""
        observe = self.gateway.metrics.observe_latency
        for latency in self.unobserved:
            observe(latency)
        self.unobserved.clear()

    async def publisher(self, client: Any) -> None:
        """Publish whatever is queued, whenever something is (a task per connection); while
        it runs, :meth:`emit` hands new predictions to ``client`` at once."""
        self.client = client
        try:
            while True:
                await self.publish_all(client)
                self.ready.clear()
                await self.ready.wait()
        finally:
            if self.client is client:
                self.client = None

    def publish_now(self, client: Any) -> bool:
        """Hand everything queued to the connection now, without awaiting; True if the queue
        is empty afterwards (False: not connected, or the in-flight bound is reached).

        QoS 0: paho sends a QoS 0 message without any acknowledgement, but aiomqtt's
        ``publish`` awaits paho's "written" callback, i.e. one event-loop turn per prediction;
        here the packets are written to the socket at once. QoS 1/2: handed to paho, which
        keeps up to :data:`INFLIGHT` on the wire; each counts as published when acknowledged.
        """
        paho = protocol_of(client)
        queue = self.queue
        if paho is None or not queue:
            self.observe_latencies()
            return not queue
        config = self.gateway.config
        prefix = config.prefix
        qos = config.mqtt.publish_qos
        if qos == 0:
            self.gateway.durable.publishing(queue)  # journalled before they go out
            sent = publish_now(
                paho,
                [(topics.prediction_topic(prefix, out.device), codec.encode_prediction(out))
                 for out in queue],
            )
            for _ in range(sent):
                queue.popleft()
            if sent:
                self.published += sent
                self.gateway.metrics.published.inc(sent)
        else:
            if self._hooked is not paho:
                self._hook(paho)
            room = config.resources.max_outbox - len(self.unacked)
            batch = [queue[i] for i in range(min(room, len(queue)))]
            self.gateway.durable.publishing(batch)  # journalled before they go out
            self._handing = True
            try:
                mids = publish_acked(
                    paho,
                    [(topics.prediction_topic(prefix, out.device), codec.encode_prediction(out))
                     for out in batch],
                    qos,
                )
            finally:
                self._handing = False
            unacked = self.unacked
            for mid, out in zip(mids, batch, strict=False):
                queue.popleft()
                if mid not in self._acked_early:
                    unacked[mid] = out
            self._acked_early.clear()
            if unacked:
                self.all_acked.clear()
        # after the write: the histograms (~1-2 us per stage) are not on a prediction's path
        self.observe_latencies()
        return not queue

    def prepare(self, client: Any) -> None:
        """Before ``client`` (a new connection) connects: what the previous connection left
        unacknowledged goes back to the front of the queue; raise paho's in-flight limit to
        :data:`INFLIGHT` (paho refuses to change it on a connection); have its
        acknowledgements reach us."""
        self.requeue_unacked()
        paho = protocol_of(client)
        if paho is None:
            return
        paho.max_inflight_messages_set(INFLIGHT)
        self._hook(paho)

    def _hook(self, paho: Any) -> None:
        """Have ``paho``'s acknowledgements reach :meth:`_acked` (once per client), beside
        aiomqtt's own ``on_publish``."""
        self._hooked = paho
        if getattr(paho, "_streamfuse_outbox", None) is self:
            return  # already reporting to us
        paho._streamfuse_outbox = self
        previous = paho.on_publish

        def on_publish(client: Any, userdata: Any, mid: int, *rest: Any) -> None:
            if self._hooked is paho:  # not a connection this outbox has left
                self._acked(mid)
            if previous is not None:
                previous(client, userdata, mid, *rest)

        paho.on_publish = on_publish

    def _acked(self, mid: int) -> None:
        """The broker acknowledged message ``mid``: it is published."""
        out = self.unacked.pop(mid, None)
        if out is None:
            if not self._handing:
                return  # not one of ours (or counted already)
            # acknowledged while publish_acked was still handing the batch over (paho may
            # call back before publish returns); publish_now matches it up afterwards
            self._acked_early.add(mid)
        self.published += 1
        self.gateway.metrics.published.inc()
        if not self.unacked:
            self.all_acked.set()

    def requeue_unacked(self) -> None:
        """A new connection: what the broker did not acknowledge on the last one goes back to
        the front of the queue, in the order it was sent, to be sent again."""
        self._hooked = None
        if not self.unacked:
            return
        waiting = list(self.unacked.values())  # insertion order: the order they were sent
        self.unacked.clear()
        self.all_acked.set()
        self.queue.extendleft(reversed(waiting))
        self.ready.set()

    async def publish_all(self, client: Any) -> None:
        """Publish everything queued; for QoS 1/2, wait until the broker acknowledged it."""
        while True:
            self.publish_now(client)
            if not self.queue and not self.unacked:
                return
            if self.unacked:
                await self.all_acked.wait()
            elif protocol_of(client) is None or not self.publish_now(client):
                await asyncio.sleep(0.01)  # not connected (paho refused): try again shortly

    async def flush(self, client: Any, deadline: float) -> None:
        """Publish what is left before ``deadline`` (monotonic clock); warn if it cannot."""
        try:
            await asyncio.wait_for(self.publish_all(client), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            self.gateway.log.warning(
                "publishing left-over predictions timed out (%d queued, %d unacknowledged)",
                len(self.queue), len(self.unacked),
            )

    def discard(self) -> int:
        """Drop what could not be published (at shutdown: queued or unacknowledged);
        returns how many, counted in ``publish_dropped_total``."""
        n = len(self.queue) + len(self.unacked)
        if n:
            self.dropped += n
            self.gateway.metrics.publish_dropped.inc(n)
            self.gateway.log.warning("%d predictions not published at shutdown", n)
            self.queue.clear()
            self.unacked.clear()
            self.all_acked.set()
        return n
