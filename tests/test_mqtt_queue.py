"""The gateway's incoming queue: tail drop counted by kind, FIFO, waiting readers, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from streamfuse.mqtt.queue import SheddingQueue, message_kind
from streamfuse.types import RawMessage


def _msg(i: int, kind: str = "ecg") -> RawMessage:
    return RawMessage(f"p/dev{i}/{kind}", bytes([i % 256]))


def test_full_queue_sheds_new_messages_by_kind() -> None:
    q = SheddingQueue(2)
    seen: list[str] = []
    q.on_shed = seen.append
    for i, kind in enumerate(["ecg", "eeg", "label", "ecg", "prediction"]):
        q.put_nowait(_msg(i, kind))
    assert q.qsize() == 2 and q.full() and q.high_water == 2 and q.puts == 5
    assert dict(q.shed) == {"label": 1, "data": 1, "prediction": 1}
    assert seen == ["label", "data", "prediction"]
    assert [q.get_nowait().topic for _ in range(2)] == ["p/dev0/ecg", "p/dev1/eeg"]
    assert q.empty()
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


def test_unbounded_when_maxsize_is_zero() -> None:
    q = SheddingQueue(0)
    for i in range(1000):
        q.put_nowait(_msg(i))
    assert q.qsize() == 1000 and not q.shed and not q.full()


def test_message_kind_reads_the_last_level() -> None:
    assert message_kind("a/b/label") == "label"
    assert message_kind("a/b/prediction") == "prediction"
    assert message_kind("a/b/eeg") == "data"
    assert message_kind("") == "data"


def test_get_waits_for_a_put_and_a_cancelled_reader_loses_nothing() -> None:
    async def main() -> list[str]:
        q = SheddingQueue(10)
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        first.cancel()  # as aiomqtt cancels its get() when the connection drops
        q.put_nowait(_msg(1))
        await asyncio.sleep(0)
        got = [(await asyncio.wait_for(second, 1)).topic]
        # a reader cancelled after it was woken passes the wake-up on
        third = asyncio.create_task(q.get())
        fourth = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.put_nowait(_msg(2))
        third.cancel()
        got.append((await asyncio.wait_for(fourth, 1)).topic)
        assert q.empty()
        return got

    assert asyncio.run(main()) == ["p/dev1/ecg", "p/dev2/ecg"]
