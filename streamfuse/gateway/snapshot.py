"""Incremental checkpoints: the engine's state as of one journal position, taken a few devices
per loop turn while the gateway keeps serving, written by a thread.

A forked writer (:meth:`.checkpoint.CheckpointStore.save_in_background`) costs the loop the
copy of the process's page tables, which grows with the resident heap (40-90 ms at 1,000
devices, 1 GB). Here nothing is copied wholesale:

1. **At the start** (journal position ``P``), the checkpoint's head (the engine without its
   device sessions: the shared models, counters, the deadline heap, plus the journal's part)
   is pickled at once (a few ms: the shared state is small next to the devices'). Each
   session is pickled as a reference there, and the ``scheduled`` deadline of every session
   is noted (the one field the deadline heap's bookkeeping rewrites on devices it only looks
   at).
2. **Devices** are then pickled a few per loop turn (:meth:`Snapshot.step`, a time budget per
   turn), each by the same pickler, so objects the devices share (the configuration, cached
   spectral plans) are shared in the file as in memory.
3. **Copy-on-write at device granularity**: before an engine call that can change a device
   not yet pickled, that device is pickled first (:meth:`Snapshot.before_push`,
   :meth:`before_tick`, :meth:`before_evict`, called by :class:`.durability.Durability`):
   the message's own device; the devices a tick will advance (their deadline has come and
   their aligner has a window to close); the devices an eviction will remove; all of them
   before the live-device cap evicts. So every device is pickled as it was at ``P``.
4. **A thread** writes what the pickler produces as it comes (file writes, sha256 and fsync
   release the GIL), fsyncs the journal first (the head records ``P``), then the file, renames
   it into place and fsyncs the folder, as :class:`.checkpoint.CheckpointStore` does.

The file (``SFCKPT2``) is the header of :mod:`.checkpoint` followed by a sequence of pickles
made by one pickler: the head, then ``(device, session)`` pairs in the order they were taken,
then ``None``. :func:`load_body` reads it back into the same state dict a whole-pickle
checkpoint holds.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..session import DeviceSession

log = logging.getLogger("streamfuse.gateway.snapshot")

MAGIC2 = b"SFCKPT2\n"
#: loop time one :meth:`Snapshot.step` may spend pickling devices
STEP_BUDGET_S = 0.004
_END = None


class _Sink:
    """The pickler's file: every write goes to the writer thread as an immutable copy (the
    pickler hands large array payloads over as views of the live arrays)."""

    __slots__ = ("bytes", "q")

    def __init__(self, q: queue.SimpleQueue[bytes | None]) -> None:
        self.q = q
        self.bytes = 0

    def write(self, data: Any) -> int:
        chunk = data if type(data) is bytes else bytes(data)
        self.q.put(chunk)
        self.bytes += len(chunk)
        return len(chunk)


class _Pickler(pickle.Pickler):
    """Pickles device sessions as references (``("S", device)``) except the one being dumped."""

    root: Any = None

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is DeviceSession and obj is not self.root:
            return ("S", obj.device)
        return None


class _Writer(threading.Thread):
    """Writes the chunks it is given to ``tmp`` behind the header, then completes the file."""

    def __init__(self, final: Path, tmp: Path, fsync_first: tuple[int, ...],
                 done: Callable[[], None], after: Callable[[], None] | None) -> None:
        super().__init__(name="streamfuse-checkpoint-writer", daemon=True)
        self.q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.final, self.tmp, self.fsync_first, self.done = final, tmp, fsync_first, done
        self.after = after
        self.error: BaseException | None = None
        self.aborted = False
        self.ended = False  # the producer's end mark was read
        self.size = 0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported through poll
            self.error = exc
            while not self.ended and self.q.get() is not None:  # drop what else comes
                pass
        finally:
            self.done()

    def _run(self) -> None:
        digest = hashlib.sha256()
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with open(fd, "wb", buffering=1 << 20) as fh:
                fh.write(MAGIC2 + bytes(32))
                while (chunk := self.q.get()) is not None:
                    digest.update(chunk)
                    fh.write(chunk)
                    self.size += len(chunk)
                self.ended = True
                if self.aborted:
                    raise RuntimeError("the snapshot was abandoned")
                fh.flush()
                os.pwrite(fh.fileno(), digest.digest(), len(MAGIC2))
                for jfd in self.fsync_first:  # the journal up to the head's position
                    try:
                        os.fsync(jfd)
                    except OSError:  # a rotated segment closed since (fsynced before that)
                        pass
                os.fsync(fh.fileno())
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        os.replace(self.tmp, self.final)
        dir_fd = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if self.after is not None:
            self.after()  # pruning: unlinking a large old file takes the file system a while


class Snapshot:
    """One incremental checkpoint of ``engine`` with ``state`` (the head: a dict holding the
    engine and whatever else the checkpoint records), written to ``final`` via ``tmp``."""

    def __init__(
        self,
        engine: Engine,
        state: dict[str, Any],
        final: Path,
        tmp: Path,
        *,
        fsync_first: tuple[int, ...] = (),
        after: Callable[[], None] | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.engine = engine
        self.final = final
        self.finished = threading.Event()
        self.writer = _Writer(final, tmp, fsync_first, self.finished.set, after)
        self.sink = _Sink(self.writer.q)
        self.pickler = _Pickler(self.sink, protocol=pickle.HIGHEST_PROTOCOL)
        #: sessions still to pickle, in the engine's order
        self.todo: dict[str, DeviceSession] = dict(engine.sessions)
        self.taken_on_demand = 0
        state = dict(state)
        state["scheduled"] = {d: s.scheduled for d, s in self.todo.items()}
        self.closed = False
        self.step_max_s = 0.0
        self.writer.start()
        self._dump(state)
        self.head_s = time.perf_counter() - t0

    @property
    def pending(self) -> bool:
        """Devices are still to be pickled."""
        return bool(self.todo)

    def _dump(self, obj: Any) -> None:
        try:
            self.pickler.dump(obj)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Give up (a state that does not pickle): the writer removes its temporary file."""
        self.todo.clear()
        if not self.closed:
            self.closed = True
            self.writer.aborted = True
            self.writer.q.put(None)

    def _take(self, device: str) -> None:
        session = self.todo.pop(device)
        self.pickler.root = session
        self._dump((device, session))

    def take_all(self) -> None:
        for device in list(self.todo):
            self._take(device)
        self._close()

    def step(self, budget_s: float = STEP_BUDGET_S) -> bool:
        """Pickle devices for about ``budget_s`` of loop time; True while some remain."""
        todo = self.todo
        clock = time.perf_counter
        t0 = clock()
        while todo and clock() - t0 < budget_s:
            self._take(next(iter(todo)))
        dt = clock() - t0
        if dt > self.step_max_s:
            self.step_max_s = dt
        if not todo:
            self._close()
        return bool(todo)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pickler.dump(_END)
            self.pickler.clear_memo()  # the memo holds every pickled object alive
            self.writer.q.put(None)

    # ------------------------------------------------------------------ copy-on-write
    def _on_demand(self, devices: Iterable[str]) -> None:
        for device in devices:
            if device in self.todo:
                self._take(device)
                self.taken_on_demand += 1
        if not self.todo:
            self._close()

    def before_push(self, topic: str, now: float) -> None:
        """Before ``engine.push`` of a message on ``topic`` at ``now``."""
        engine = self.engine
        try:
            device = engine._topics.parse(topic)[0]
        except Exception:  # noqa: BLE001 - a bad topic changes no device
            device = None
        if device is not None:
            if device not in engine.sessions and len(engine.sessions) >= engine.config.max_devices:
                self.take_all()  # the cap evicts others (rare): everything as it is now
                return
            if device in self.todo:
                self._on_demand((device,))
        if now - engine._last_tick >= engine._tick_every:  # the push ticks too
            self.before_tick(now)

    def before_tick(self, now: float) -> None:
        """Before ``engine.tick(now)``: the devices it will advance (see ``Engine.tick``)."""
        todo = self.todo
        if not todo:
            return
        due = []
        for deadline, order, device in self.engine._deadlines:
            if deadline <= now and device in todo:
                s = todo[device]
                # what the tick does with it: advance it if a window can close, else only
                # move its ``scheduled`` (restored from the head's copy on loading)
                if s.order == order and s.scheduled == deadline \
                        and s.aligner.next_deadline() <= now:
                    due.append(device)
        self._on_demand(due)

    def before_evict(self, now: float, idle_s: float) -> None:
        """Before ``engine.evict_idle(now, idle_s)``: the devices it will flush and forget."""
        self._on_demand([d for d, s in self.todo.items() if now - s.last_seen >= idle_s])

    # ------------------------------------------------------------------ outcome
    def result(self) -> tuple[Path, bool, str] | None:
        """``(file, ok, message)`` once the writer is done, else None."""
        if not self.finished.is_set():
            return None
        self.writer.join()
        if self.writer.error is not None:
            return self.final, False, repr(self.writer.error)
        return self.final, True, f"ok {self.writer.size}"


class _Later:
    """A session referenced by the head, filled in once its own pickle is read."""

    __slots__ = ("device",)

    def __init__(self, device: str) -> None:
        self.device = device


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "S":
            return _Later(str(pid[1]))
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def load_body(body: bytes) -> Any:
    """The state dict of an ``SFCKPT2`` body (after its checksum was verified)."""
    u = _Unpickler(io.BytesIO(body))
    state = u.load()
    sessions: dict[str, DeviceSession] = {}
    while (item := u.load()) is not _END:
        device, session = item
        sessions[device] = session
    engine = state.get("engine") if isinstance(state, dict) else None
    if isinstance(engine, Engine):
        missing = [d for d in engine.sessions if d not in sessions]
        if missing:
            raise ValueError(f"{len(missing)} device sessions missing (e.g. {missing[0]!r})")
        engine.sessions = {d: sessions[d] for d in engine.sessions}
        for device, scheduled in state.pop("scheduled", {}).items():
            if device in engine.sessions:
                engine.sessions[device].scheduled = scheduled
    return state
