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
   turn), each with a memo of its own; the configuration and the cached spectral plans they
   share are pickled as references, so they are shared when loaded as in memory (a few small
   filter arrays that other caches share are not: each device loads its own copy).
3. **Copy-on-write at device granularity**: before an engine call that can change a device
   not yet pickled, that device is pickled first (:meth:`Snapshot.before_push`,
   :meth:`before_tick`, :meth:`before_evict`, called by :class:`.durability.Durability`):
   the message's own device; the devices a tick will advance (their deadline has come and
   their aligner has a window to close); the devices an eviction will remove; all of them
   before the live-device cap evicts. So every device is pickled as it was at ``P``.
4. **A writer process** (``ckpt_writer.py``, the standard library only, started with vfork:
   no page tables copied) gets what the pickler produces through a pipe, written without
   waiting within the same budget; it hashes and writes the file, fsyncs the journal first
   (the head records ``P``), then the file, renames it into place and fsyncs the folder, as
   :class:`.checkpoint.CheckpointStore` does. Not a thread: a thread that hashes and writes
   needs the GIL back after every system call, and on a loaded machine each hand-over made
   the loop wait for the scheduler (steps of 4 ms of CPU took 15-25 ms at load 5 on 2 cores).

The file (``SFCKPT2``) is the header of :mod:`.checkpoint` followed by a sequence of pickles
made by one pickler: the head, then ``(device, session)`` pairs in the order they were taken,
then ``None``. The writer renames it into place only if the stream ended with its trailer, so
a gateway killed midway leaves no file (its temporary one is removed at the next start).
:func:`load_body` reads it back into the same state dict a whole-pickle checkpoint holds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..features.spectrum import WelchPlan, welch_plan
from ..session import DeviceSession
from .ckpt_writer import TRAILER, PipeSink, spawn_writer

log = logging.getLogger("streamfuse.gateway.snapshot")

MAGIC2 = b"SFCKPT2\n"
#: loop time one :meth:`Snapshot.step` may spend pickling devices
STEP_BUDGET_S = 0.002
_END = None


class _Pickler(pickle.Pickler):
    """Pickles device sessions as references (``("S", device)``) except the one being dumped;
    once the head is pickled, the engine's configuration as ``("C",)`` and the spectral plans
    (shared by every device through their cache) by their key, so that devices pickled with a
    memo of their own still share them when loaded."""

    root: Any = None
    config: Any = None

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is DeviceSession and obj is not self.root:
            return ("S", obj.device)
        if obj is self.config and obj is not None:
            return ("C",)
        if kind is WelchPlan:
            return ("W", obj.nperseg, obj.fs)
        return None


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
    ) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self.engine = engine
        self.final = final
        self.proc = spawn_writer(final, tmp, fsync_first)
        assert self.proc.stdin is not None
        self.sink = PipeSink(self.proc.stdin.fileno())
        self.pickler = _Pickler(self.sink, protocol=pickle.HIGHEST_PROTOCOL)
        #: sessions still to pickle, in the engine's order
        self.todo: dict[str, DeviceSession] = dict(engine.sessions)
        self.taken_on_demand = 0
        #: loop time spent pickling on demand since the reader last yielded (:meth:`owes`)
        self.owed_s = 0.0
        state = dict(state)
        state["scheduled"] = {d: s.scheduled for d, s in self.todo.items()}
        self.closed = False  # the end mark and trailer are in the buffer
        self.sent = False  # ... and written to the pipe, which is closed
        self.error: str | None = None
        #: the longest step, in wall time and in this thread's CPU time (the wall time of a
        #: loaded machine includes waits for a core)
        self.step_max_s = self.step_cpu_max_s = 0.0
        self.spawn_s = time.perf_counter() - t0
        # the head by a plain pickler, the sessions swapped for placeholders meanwhile: the
        # pickler's Python hook, called for every object, cost more than the pickling
        live = engine.sessions
        engine.sessions = {d: _Later(d) for d in live}  # type: ignore[misc]
        try:
            pickle.Pickler(self.sink, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
        except BaseException as exc:
            self.abort(f"cannot pickle the state: {exc!r}")
            raise
        finally:
            engine.sessions = live
        self.pickler.config = engine.config
        self.head_s = time.perf_counter() - t0
        self.head_cpu_s = time.thread_time() - c0

    @property
    def pending(self) -> bool:
        """Devices are still to be pickled."""
        return bool(self.todo)

    def _dump(self, obj: Any) -> None:
        try:
            self.pickler.dump(obj)
            # a memo per pickle: one kept for the whole snapshot held millions of objects
            # alive, which the cycle collector then walked (120-180 ms at 500 devices) and
            # freed at once at the end (40 ms)
            self.pickler.clear_memo()
        except BaseException as exc:
            self.abort(f"cannot pickle the state: {exc!r}")
            raise

    def abort(self, why: str) -> None:
        """Give up: the pipe is closed without the trailer, so the writer removes its file."""
        self.todo.clear()
        self.error = self.error or why
        self.closed = True
        self.sink.clear()
        self._send_end()

    def _send_end(self) -> None:
        if not self.sent:
            self.sent = True
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def _take(self, device: str) -> None:
        session = self.todo.pop(device)
        self.pickler.root = session
        self._dump((device, session))

    def _pump(self, *, block: bool = False) -> bool:
        """Write what is buffered to the pipe; True once all of it (then the pipe is closed
        if the end was reached)."""
        if self.sent:
            return True
        sink = self.sink
        try:
            if block:
                os.set_blocking(sink.fd, True)
            done = sink.pump()
        except OSError as exc:  # the writer died (a full disk?): it says why
            self.abort(f"the writer process stopped reading: {exc!r}")
            return True
        if done and self.closed:
            self._send_end()
        return done

    def take_all(self, *, block: bool = True) -> None:
        """Pickle every device left now and hand everything to the writer (``block``: wait
        until the pipe has taken it all; else what it does not take now waits for a step)."""
        for device in list(self.todo):
            self._take(device)
        self._close()
        self._pump(block=block)

    def step(self, budget_s: float = STEP_BUDGET_S) -> bool:
        """Pickle devices, and pass what is pickled on to the writer, for about ``budget_s``
        of loop time; True while there is more to do."""
        todo = self.todo
        clock = time.perf_counter
        t0, c0 = clock(), time.thread_time()
        while todo and clock() - t0 < budget_s:
            self._take(next(iter(todo)))
            self._pump()
        if not todo:
            self._close()
        self._pump()
        self.step_max_s = max(self.step_max_s, clock() - t0)
        self.step_cpu_max_s = max(self.step_cpu_max_s, time.thread_time() - c0)
        return not self.sent

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pickler.dump(_END)
            self.sink.add(TRAILER + struct.pack("<Q", self.sink.bytes))

    # ------------------------------------------------------------------ copy-on-write
    def _on_demand(self, devices: Iterable[str]) -> None:
        t0 = time.perf_counter()
        for device in devices:
            if device in self.todo:
                self._take(device)
                self.taken_on_demand += 1
        self.owed_s += time.perf_counter() - t0
        if not self.todo:
            self._close()
        self._pump()

    def owes(self) -> bool:
        """Whether on-demand pickling took a step's budget since the last True: then the
        reader yields to the loop (once the snapshot starts, the first message of every
        device costs a device's pickle, about 1 ms, and a burst of 64 would hold the loop)."""
        if self.owed_s < STEP_BUDGET_S:
            return False
        self.owed_s = 0.0
        return True

    def before_push(self, topic: str, now: float) -> None:
        """Before ``engine.push`` of a message on ``topic`` at ``now``."""
        engine = self.engine
        try:
            device = engine._topics.parse(topic)[0]
        except Exception:  # noqa: BLE001 - a bad topic changes no device
            device = None
        if device is not None:
            if device not in engine.sessions and len(engine.sessions) >= engine.config.max_devices:
                # the cap evicts others (rare): every device left is pickled now, a stall of
                # about 1 ms per device left
                self.take_all(block=False)
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
    def result(self, *, wait: bool = False) -> tuple[Path, bool, str] | None:
        """``(file, ok, message)`` once the writer has ended, else None; ``wait``: finish
        (every device pickled now) and wait for it."""
        if wait:
            if not self.sent:
                with contextlib.suppress(Exception):  # a pickling failure: said by abort
                    self.take_all()
            self.proc.wait()
        elif self.proc.poll() is None:
            return None
        assert self.proc.stdout is not None
        said = self.proc.stdout.read().decode(errors="replace").strip()
        self.proc.stdout.close()
        ok = self.proc.returncode == 0 and said.startswith("ok") and self.error is None
        message = self.error or said or f"the writer process ended with {self.proc.returncode}"
        return self.final, ok, message


class _Later:
    """A session in the head, filled in once its own pickle is read."""

    __slots__ = ("device",)

    def __init__(self, device: str) -> None:
        self.device = device


class _Unpickler(pickle.Unpickler):
    config: Any = None

    def persistent_load(self, pid: Any) -> Any:
        match pid:
            case ("S", device):
                return _Later(str(device))
            case ("C",) if self.config is not None:
                return self.config
            case ("W", int(nperseg), float(fs)):
                return welch_plan(nperseg, fs)
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def load_body(body: bytes) -> Any:
    """The state dict of an ``SFCKPT2`` body (after its checksum was verified)."""
    stream = io.BytesIO(body)
    state = _Unpickler(stream).load()
    engine = state.get("engine") if isinstance(state, dict) else None
    config = getattr(engine, "config", None)
    sessions: dict[str, DeviceSession] = {}
    while True:
        u = _Unpickler(stream)  # each pickle has a memo of its own
        u.config = config
        item = u.load()
        if item is _END:
            break
        device, session = item
        sessions[device] = session
    if isinstance(engine, Engine):
        missing = [d for d in engine.sessions if d not in sessions]
        if missing:
            raise ValueError(f"{len(missing)} device sessions missing (e.g. {missing[0]!r})")
        engine.sessions = {d: sessions[d] for d in engine.sessions}
        for device, scheduled in state.pop("scheduled", {}).items():
            if device in engine.sessions:
                engine.sessions[device].scheduled = scheduled
    return state
