"""The gateway's outbox: predictions queued (bounded) and published whenever connected.

QoS 0 predictions are written to the socket at once, without an event-loop turn each
(:func:`streamfuse.mqtt.fastpath.publish_now`); QoS 1/2 ones go through aiomqtt's ``publish``.
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
from ..mqtt.fastpath import protocol_of, publish_now
from ..types import Prediction

if TYPE_CHECKING:
    from .app import Gateway

#: stage latencies held back from the histograms (until the next publish) at most
UNOBSERVED_MAX = 1024


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
        self.published = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.queue)

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
            if len(queue) >= limit:
                queue.popleft()
                self.dropped += 1
                metrics.publish_dropped.inc()
            queue.append(out)
            added = True
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
        """Publish whatever is queued, whenever something is (a task per connection)."""
        while True:
            await self.publish_all(client)
            self.ready.clear()
            await self.ready.wait()

    def publish_now(self, client: Any) -> bool:
        """Publish the outbox synchronously when predictions go out at QoS 0.

        paho sends a QoS 0 message without any acknowledgement, but aiomqtt's ``publish``
        awaits paho's "written" callback, i.e. one event-loop turn per prediction. Here the
        packets are queued in paho and written to the socket at once (what paho does not
        write now, the loop writes when the socket is ready). Returns False (leaving the
        outbox to :meth:`publish_all`) for QoS 1/2, or if paho refuses (not connected).
        """
        paho = protocol_of(client)
        config = self.gateway.config
        if config.mqtt.publish_qos != 0 or paho is None:
            self.observe_latencies()
            return False
        prefix = config.prefix
        queue = self.queue
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
        # after the write: the histograms (~1-2 us per stage) are not on a prediction's path
        self.observe_latencies()
        return not queue

    async def publish_all(self, client: Any) -> None:
        """Publish everything queued (QoS 0 at once, else one awaited publish each)."""
        if self.publish_now(client):
            return
        config = self.gateway.config
        while self.queue:
            out = self.queue[0]
            self.gateway.durable.publishing((out,))  # journalled before it goes out
            await client.publish(
                topics.prediction_topic(config.prefix, out.device),
                codec.encode_prediction(out),
                qos=config.mqtt.publish_qos,
            )
            self.queue.popleft()
            self.published += 1
            self.gateway.metrics.published.inc()

    async def flush(self, client: Any, deadline: float) -> None:
        """Publish what is left before ``deadline`` (monotonic clock); warn if it cannot."""
        try:
            await asyncio.wait_for(self.publish_all(client), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            self.gateway.log.warning("publishing left-over predictions timed out")

    def discard(self) -> int:
        """Drop what could not be published (at shutdown); returns how many, counted."""
        n = len(self.queue)
        if n:
            self.dropped += n
            self.gateway.metrics.publish_dropped.inc(n)
            self.gateway.log.warning("%d predictions not published at shutdown", n)
            self.queue.clear()
        return n
