"""A/B: the gateway's incoming queue per message (a put and a get), against asyncio's.

``streamfuse.mqtt.queue.SheddingQueue`` (a deque, a length check, futures only for waiting
readers) against :class:`asyncio.Queue`'s public ``put_nowait``/``get_nowait`` with the
fullness check the gateway needs (``full()`` first, as tail drop), both in the same run.

Run: ``.venv/bin/python bench/queue_cost.py``
"""

from __future__ import annotations

import asyncio
import timeit

from streamfuse.mqtt.queue import SheddingQueue
from streamfuse.types import RawMessage

N = 1000
MESSAGE = RawMessage("p/dev0/ecg", b"x")


def _shedding() -> None:
    q = SheddingQueue(100_000)
    put, get = q.put_nowait, q.get_nowait
    for _ in range(N):
        put(MESSAGE)
    for _ in range(N):
        get()


def _asyncio() -> None:
    q: asyncio.Queue[RawMessage] = asyncio.Queue(100_000)
    put, get, full = q.put_nowait, q.get_nowait, q.full
    for _ in range(N):
        if not full():
            put(MESSAGE)
    for _ in range(N):
        get()


async def main() -> None:
    for name, fn in (("SheddingQueue", _shedding), ("asyncio.Queue", _asyncio)) * 2:
        best = min(timeit.repeat(fn, number=20, repeat=7)) / (20 * N)
        print(f"{name:14s} {best * 1e6:.3f} us per put + get")


if __name__ == "__main__":
    asyncio.run(main())
