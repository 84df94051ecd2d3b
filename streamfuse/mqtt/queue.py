"""The gateway's bounded incoming queue: tail drop, counted by kind, never an exception.

:class:`SheddingQueue` is what aiomqtt's ``queue_type`` asks for (``put_nowait``, ``get``,
``qsize``) plus ``get_nowait`` and ``empty`` for the gateway's burst reads, built on a
:class:`collections.deque` and one future per waiting reader, with asyncio's public API only.
The paho callback of :func:`streamfuse.mqtt.fastpath.install_ingest` puts every incoming
message here (once per message): a deque append and a length check, where
:class:`asyncio.Queue`'s public ``put_nowait`` costs its ``full``/``qsize``/``_put``/wake-up
calls and would raise when full.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from .. import topics


def message_kind(topic: str) -> str:
    """``"label"``, ``"prediction"`` or ``"data"`` from the last topic level (for counters)."""
    last = topic.rpartition("/")[2]
    return last if last in (topics.LABEL, topics.PREDICTION) else "data"


class SheddingQueue:
    """A bounded FIFO that drops (and counts) new messages when full instead of raising.

    Tail drop keeps what is already queued; the engine sees the dropped chunks as gaps.
    ``maxsize`` 0 or less means unbounded. ``on_shed`` (optional) is called with the kind of
    each dropped message.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self.shed: Counter[str] = Counter()
        self.high_water = 0
        self.puts = 0  # messages offered (kept, shed or refused)
        #: messages offered after :meth:`close`, by kind (not queued, not shed)
        self.refused: Counter[str] = Counter()
        self.closed = False
        self.on_shed: Callable[[str], None] | None = None
        self._items: deque[Any] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def close(self) -> None:
        """Take nothing more: what is offered from now on is counted in :attr:`refused`
        (the gateway closes its queue when it stops, so the drain has an end)."""
        self.closed = True

    def put_nowait(self, item: Any) -> None:
        """Queue ``item``, or drop and count it when the queue is full (or closed)."""
        self.puts += 1
        items = self._items
        n = len(items)
        if self.closed:
            self.refused[message_kind(str(getattr(item, "topic", "")))] += 1
            return
        if 0 < self.maxsize <= n:
            kind = message_kind(str(getattr(item, "topic", "")))
            self.shed[kind] += 1
            if self.on_shed is not None:
                self.on_shed(kind)
            return
        items.append(item)
        if n >= self.high_water:
            self.high_water = n + 1
        getters = self._getters
        while getters:
            waiter = getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def oldest(self) -> Any:
        """The oldest item, left in the queue; None when there is none."""
        items = self._items
        return items[0] if items else None

    def get_nowait(self) -> Any:
        """The oldest item; :class:`asyncio.QueueEmpty` when there is none."""
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        return items.popleft()

    async def get(self) -> Any:
        """The oldest item, waiting for one if needed (cancellable)."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # a wake-up this reader will not use goes to the next one
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_next()
                raise
        return self._items.popleft()

    def _wake_next(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
