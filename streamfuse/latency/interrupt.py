"""Ctrl-C during a bench run: :class:`BenchInterrupted`, and the waits on the helper processes'
pipes that a stop cuts short instead of sitting out their timeouts.

``streamfuse bench`` sets an :class:`asyncio.Event` on Ctrl-C; :func:`receive` (one answer from
a helper process, its errors raised as :class:`~streamfuse.errors.BrokerError`) returns as soon
as it is set, by raising :class:`BenchInterrupted`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import BrokerError, StreamfuseError


class BenchInterrupted(StreamfuseError):
    """The bench was told to stop (Ctrl-C) before it measured anything."""


async def readable(conn: Any, timeout: float, stop: asyncio.Event | None = None) -> bool:
    """Wait on the event loop until ``conn`` has something to read (True), ``timeout``
    seconds pass (False) or ``stop`` is set (:class:`BenchInterrupted`).

    Not ``asyncio.to_thread(conn.poll, timeout)``: a thread blocked in ``poll`` cannot be
    cancelled, and ``asyncio.run`` waits for it at exit, so Ctrl-C during the measurement
    waited out the publisher's whole budget (duration + 120 s) before the command ended.
    """
    if conn.poll():
        return True
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(True)

    loop.add_reader(fd, wake)
    waits: set[asyncio.Future[Any]] = {ready}
    stopped = None
    if stop is not None:
        stopped = asyncio.ensure_future(stop.wait())
        waits.add(stopped)
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(fd)
        for fut in waits:
            fut.cancel()
    if ready.done() and not ready.cancelled():
        return True
    if stopped is not None and stop is not None and stop.is_set():
        raise BenchInterrupted("interrupted")
    return False


async def receive(conn: Any, what: str, timeout: float, stop: asyncio.Event | None = None) -> Any:
    """The next answer of the helper process ``what`` on ``conn``, waited for as
    :func:`readable` waits; a silence past ``timeout`` or an error it sent raises
    :class:`~streamfuse.errors.BrokerError`."""
    if not await readable(conn, timeout, stop):
        raise BrokerError(f"the benchmark {what} did not answer within {timeout:.0f} s")
    kind, payload = conn.recv()
    if kind == "error":
        raise BrokerError(f"the benchmark {what} failed: {payload}")
    return payload
