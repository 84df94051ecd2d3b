"""When and how one gateway saves and restores its checkpoints (the files: :mod:`.checkpoint`).

- **Restore** (:meth:`Checkpoints.load`): the newest usable checkpoint replaces the engine,
  unless its classes or configuration changed since it was written.
- **Periodic checkpoints** (:meth:`Checkpoints.save` with ``background=True``) are
  incremental (:class:`.snapshot.Snapshot`): the state as of one journal position, pickled a
  few devices per loop turn (a device about to change is pickled first), written by a thread.
  One at a time: one due while the previous one runs is skipped and counted.
- ``fork=True`` forks a writer instead (:meth:`.checkpoint.CheckpointStore.save_in_background`;
  the loop pays for the copy of the page tables): kept as the bench's baseline.
- **Inline** (the default, and at shutdown): pickled and written on the spot, after a running
  background one has finished.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..engine import Engine
from ..state_layout import code_layout
from .checkpoint import CheckpointStore, Restored, state_digest, unusable
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .app import Gateway


class Checkpoints:
    """The checkpoints of one :class:`~.app.Gateway` (``store`` None: none are kept)."""

    def __init__(self, gateway: Gateway, store: CheckpointStore | None) -> None:
        self.gateway = gateway
        self.store = store
        self.skipped = 0  # scheduled checkpoints skipped: the previous one still ran
        self.snapshot: Snapshot | None = None
        self.last: Snapshot | None = None  # the last incremental one (its figures)
        self._task: asyncio.Task[None] | None = None
        self._state: dict[str, Any] | None = None  # the journal part of the one being saved

    # ------------------------------------------------------------------ restore
    def load(self) -> Restored | None:
        """The newest usable checkpoint, installed in the gateway; None: start fresh."""
        gateway = self.gateway
        if self.store is None:
            return None
        found = self.store.load_latest()
        if self.store.corrupt:
            gateway.metrics.checkpoints_corrupt.inc(self.store.corrupt)
        if found is None:
            gateway.log.info("no checkpoint in %s; starting fresh", self.store.dir)
            return None
        state = found.state
        engine = state.get("engine") if isinstance(state, dict) else None
        problem = unusable(state, gateway.engine)
        if problem is not None:
            gateway.log.error("checkpoint %s %s; starting fresh and leaving the file in place",
                              found.path, problem)
            return None
        assert isinstance(engine, Engine)
        engine._timer = gateway.engine._timer  # the live timer (a checkpoint holds none)
        gateway.engine = engine
        gateway.house.retired_align = Counter(state.get("retired_align", {}))
        gateway.restored = found
        gateway.restored_digest = state_digest(engine.hub)
        gateway.log.info(
            "restored checkpoint %s (body sha256 %s, model state sha256 %s, %d devices, %d "
            "windows so far)", found.path, found.body_sha256, gateway.restored_digest,
            len(engine.sessions), engine.counters.get("windows", 0),
        )  # fmt: skip
        return found

    # ------------------------------------------------------------------ save
    @property
    def busy(self) -> bool:
        """A background checkpoint is being taken or written."""
        store = self.store
        return self.snapshot is not None or (store is not None and store.busy)

    def _state_now(self, *, sync: bool) -> dict[str, Any]:
        gateway = self.gateway
        return {
            "layout": code_layout(),
            "engine": gateway.engine,
            "retired_align": dict(gateway.house.retired_align),
            "saved_at": gateway.clock(),
            **gateway.durable.checkpoint_state(sync=sync),
        }

    def save(self, *, background: bool = False, fork: bool = False) -> None:
        """Checkpoint now (no-op without a store); errors are logged, never raised."""
        store = self.store
        gateway = self.gateway
        if store is None:
            return
        self.done()
        if background and self.busy:
            self.skipped += 1
            gateway.log.warning("checkpoint skipped: the previous one is still being written")
            return
        try:
            if background and fork:
                state = self._state_now(sync=False)
                self._state = {"journal": state.get("journal")}
                store.save_in_background(state, fsync_first=gateway.durable.fsync_fds)
                if not store.busy:  # saved inline (no fork here)
                    self._saved(store.files()[0])
                return
            if background:
                self._begin(store)
                return
            self.done(wait=True)
            state = self._state_now(sync=True)
            path = store.save(state)
        except Exception as exc:  # a full disk or a failing pickle must not stop the gateway
            gateway.log.error("checkpoint to %s failed: %s", store.dir, exc)
            self._state = None
            return
        self._state = {"journal": state.get("journal")}
        self._saved(path)

    def _begin(self, store: CheckpointStore) -> None:
        """Start an incremental checkpoint; a task takes it a few devices per loop turn
        (without a running loop it is finished by :meth:`done` with ``wait``)."""
        gateway = self.gateway
        state = self._state_now(sync=False)
        self._state = {"journal": state.get("journal")}
        final, tmp = store._next()
        snap = Snapshot(gateway.engine, state, final, tmp, fsync_first=gateway.durable.fsync_fds)
        self.snapshot = self.last = snap
        gateway.durable.snapshot = snap
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._drive(snap), name="streamfuse[gateway].checkpoint")

    async def _drive(self, snap: Snapshot) -> None:
        try:
            while snap.step():
                # devices left: the next turn; only the pipe to fill: when it has drained
                await asyncio.sleep(0 if snap.todo else 0.005)
        except Exception as exc:  # noqa: BLE001 - reported when reaped
            self.gateway.log.error("checkpoint %s failed while pickling: %s", snap.final, exc)
        self.gateway.durable.snapshot = None

    def done(self, *, wait: bool = False) -> None:
        """Reap a finished background checkpoint (called on every tick); ``wait``: finish
        and wait for a running one."""
        store = self.store
        if store is None:
            return
        snap = self.snapshot
        if snap is not None:
            if wait and self._task is not None:
                self._task.cancel()
            result = snap.result(wait=wait)
            if result is None:
                return
            self.snapshot = None
            self._task = None
            self.gateway.durable.snapshot = None
            path, ok, message = result
            if ok:
                store.saved += 1
                self.gateway.log.info("checkpoint %s saved incrementally (%s bytes)", path,
                                      message[3:])
                # unlinking a large old file takes the file system a while: not on the loop
                threading.Thread(target=store._prune, name="streamfuse-checkpoint-prune",
                                 daemon=True).start()
            else:
                self.gateway.log.error("checkpoint %s failed: %s", path, message)
            self._reaped(result)
            return
        if store.busy:
            self._reaped(store.poll(block=wait))

    def _reaped(self, done: tuple[Any, bool, str] | None) -> None:
        if done is not None and done[1]:
            self._saved(done[0])
        elif done is not None:
            self._state = None

    def _saved(self, path: Any) -> None:
        self.gateway.metrics.checkpoints.inc()
        if self._state is not None:
            self.gateway.durable.saved(path, self._state)
        self._state = None
