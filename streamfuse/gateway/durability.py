"""The gateway's write-ahead discipline: every input journalled before it takes effect, and
recovery from the newest checkpoint plus the journal after it.

- **Accepted messages** are journalled in paho's callback (:meth:`Durability.accept`) and
  written to the OS after each socket read (:meth:`Durability.commit`), before paho sends
  their acknowledgements (manual acknowledgement, :func:`streamfuse.mqtt.fastpath.install_ingest`);
  what the bounded queue sheds is journalled as dropped (``R`` then ``D``) and counted, so
  every acknowledged message is in the journal; what arrives once the gateway is stopping is
  refused and not acknowledged (the broker delivers it on the next session).
- **Engine calls** (:meth:`push`, :meth:`tick`, :meth:`evict`) are journalled before the
  engine sees them, with the exact ``now`` it is given, so replaying the journal makes the same
  calls; a message dropped unprocessed (a label shed from the held-back queue) gets a ``D``.
- **Publishing**: :meth:`publishing` journals the windows about to be sent and writes the
  journal to the OS before the packets go out. Recovery never sends a window that has such a
  record again, so no window is published twice; one sent in the instant before a kill and not
  received by the broker is lost (at most once across a crash; its window is in the journal and
  ``streamfuse replay`` shows it).
- **Checkpoints** record the journal position they stand for, the messages accepted but not
  yet processed and the predictions not yet published (:meth:`checkpoint_state`).
- **Recovery** (:meth:`recover`): after the checkpoint is restored, the journal after its
  position is applied to the engine (:func:`streamfuse.journal.apply`): predictions not
  journalled as published go to the outbox, messages accepted but never processed go back to
  the queue. Without a usable checkpoint a journal that starts at position 0 is applied whole.
- **Pruning**: once every checkpoint on disk is one whose position is known, segments before the
  oldest one's position are removed (a corrupt newest checkpoint falls back to an older one,
  whose journal tail is still there).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import journal as fmt
from ..engine import Engine
from ..types import Prediction, RawMessage
from .journal import Journal

if TYPE_CHECKING:
    from .app import Gateway
    from .snapshot import Snapshot

log = logging.getLogger("streamfuse.gateway.durability")


class Durability:
    """The journal's use by one :class:`~.app.Gateway` (``journal`` None: no journal; the
    calls then go straight to the engine)."""

    def __init__(self, gateway: Gateway, journal: Journal | None) -> None:
        self.gateway = gateway
        self.journal = journal
        # id(message) -> (position of its R record, message): accepted, not yet pushed
        self.pending: dict[int, tuple[int, RawMessage]] = {}
        self.recovered: fmt.Applied | None = None
        self.requeued = 0
        self.resent = 0
        self.positions: dict[Path, int] = {}  # checkpoint file -> the journal position it holds
        self.scan = journal.open() if journal is not None else None  # torn tail cut here
        #: an incremental checkpoint being taken: told before every engine call, so that a
        #: device about to change is pickled first (:mod:`.snapshot`)
        self.snapshot: Snapshot | None = None

    # ------------------------------------------------------------------ intake
    def accept(self, raw: RawMessage) -> bool:
        """paho's message callback: journal ``raw`` (buffered; :meth:`commit` writes it before
        the acknowledgement) and queue it; when the queue is full, journal it as dropped and
        shed it (counted). False when the gateway is stopping: refused (counted), not
        journalled, left unacknowledged for the broker to deliver on the next session."""
        inbox = self.gateway.inbox
        journal = self.journal
        if inbox.closed:
            inbox.put_nowait(raw)  # counts it as refused
            return False
        if journal is None:
            inbox.put_nowait(raw)  # sheds and counts when full
            return True
        pos = journal.accept(raw.topic, raw.payload, write=False)
        if inbox.full():
            journal.drop(pos)  # acknowledged, in the journal, counted as shed: a stated gap
            inbox.put_nowait(raw)
            return True
        self.pending[id(raw)] = (pos, raw)
        inbox.put_nowait(raw)
        return True

    def commit(self) -> None:
        """After each socket read, before paho acknowledges what it read: the journal's buffer
        written to the OS (fsynced under ``journal.fsync = "always"``)."""
        if self.journal is not None:
            self.journal.commit()

    def push(self, raw: RawMessage, now: float) -> list:
        """``engine.push(raw, now)``, journalled first."""
        journal = self.journal
        if journal is not None:
            entry = self.pending.pop(id(raw), None)
            ref = entry[0] if entry is not None and entry[1] is raw else None
            if ref is None:  # not through accept (a direct call): journal it now
                ref = journal.accept(raw.topic, raw.payload)
            journal.push(ref, now)
        snap = self.snapshot
        if snap is not None and snap.todo:
            snap.before_push(raw.topic, now)
        return self.gateway.engine.push(raw, now)

    def drop(self, raw: RawMessage) -> None:
        """``raw`` was accepted but will not be processed (shed later, counted elsewhere)."""
        entry = self.pending.pop(id(raw), None)
        if entry is not None and self.journal is not None:
            self.journal.drop(entry[0])

    def tick(self, now: float) -> list:
        if self.journal is not None:
            self.journal.tick(now)
        snap = self.snapshot
        if snap is not None and snap.todo:
            snap.before_tick(now)
        return self.gateway.engine.tick(now)

    def evict(self, now: float, idle_s: float) -> list:
        if self.journal is not None:
            self.journal.evict(now, idle_s)
        snap = self.snapshot
        if snap is not None and snap.todo:
            snap.before_evict(now, idle_s)
        return self.gateway.house.evict_from(self.gateway.engine, now, idle_s)

    def publishing(self, predictions: Any) -> None:
        """Journal the windows about to be sent and write the journal to the OS."""
        journal = self.journal
        if journal is None:
            return
        for p in predictions:
            journal.published(p)
        journal.flush()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, *, sync: bool = True) -> dict[str, Any]:
        """The journal's part of a checkpoint: its position (everything before it is in the
        engine), what was accepted and not processed, and what was not yet published. The
        journal is written to the OS, and fsynced unless ``sync`` is False (a background
        writer fsyncs it before the checkpoint: :attr:`fsync_fds`)."""
        journal = self.journal
        outbox = list(self.gateway.outbox.queue)
        if journal is None:
            return {"outbox": outbox}
        if sync:
            journal.sync()
        else:
            journal.flush()
        return {
            "journal": {
                "position": journal.position,
                "pending": sorted((pos, raw) for pos, raw in self.pending.values()),
            },
            "outbox": outbox,
        }

    @property
    def fsync_fds(self) -> tuple[int, ...]:
        """Descriptors a checkpoint writer fsyncs before writing (the journal's)."""
        return self.journal.descriptors() if self.journal is not None else ()

    def saved(self, path: Path, state: dict[str, Any]) -> None:
        """A checkpoint holding ``state`` is on disk: prune what every kept checkpoint is past."""
        j = state.get("journal")
        if self.journal is None or not isinstance(j, dict):
            return
        self.positions[path] = j["position"]
        store = self.gateway.store
        if store is None or not self.gateway.config.journal.prune:
            return
        files = store.files()
        known = [self.positions[f] for f in files if f in self.positions]
        if files and len(known) == len(files):
            self.journal.prune(min(known))
        for gone in set(self.positions) - set(files):
            del self.positions[gone]

    # ------------------------------------------------------------------ recovery
    def recover(self, state: dict[str, Any] | None, path: Path | None) -> None:
        """Bring the engine restored from ``state`` (None: a fresh one) up to the journal's end;
        see the module's note. Writes a start record either way."""
        gateway = self.gateway
        journal = self.journal
        if journal is None:
            if state is not None:
                gateway.outbox.emit(state.get("outbox", []))
            return
        scan = fmt.Scan()
        j = state.get("journal") if state is not None else None
        first = journal.first
        if isinstance(j, dict):
            start, pending = int(j["position"]), dict(j["pending"])
            if path is not None:
                self.positions[path] = start
        elif state is None and first == 0:
            start, pending = 0, {}  # no checkpoint: the whole journal from a fresh engine
        else:
            start, pending = journal.position, {}
            log.warning(
                "the journal in %s cannot bring this state up to date (%s); its records up to "
                "position %d are not applied",
                journal.dir,
                "the checkpoint has no journal position" if state is not None
                else f"no checkpoint, and the journal starts at {first}, not 0",
                start,
            )
        if start < first:
            log.error(
                "the checkpoint stands for journal position %d but the journal starts at %d: "
                "the records between are lost; restoring the checkpoint without them",
                start, first,
            )  # fmt: skip
        journal.skip_to(start)  # a journal shorter than its checkpoint (lost in a power cut)
        outputs: list = []
        restored_outbox = state.get("outbox", []) if state is not None else []
        config = gateway.engine.config
        prefix = gateway.engine.prefix
        timer = gateway.engine._timer

        def new_engine() -> Engine:
            return Engine(config, prefix=prefix, timer=timer)

        engine, done = fmt.apply(
            gateway.engine,
            fmt.records(journal.dir, max(start, first), scan),
            ops_from=start,
            pending=pending,
            emit=outputs.extend,
            on_evict=lambda e, now, idle_s: gateway.house.evict_from(e, now, idle_s),
            new_engine=new_engine,
        )
        gateway.engine = engine
        self.recovered = done
        if done.fresh_starts:
            restored_outbox = []
        unsent = [
            p for p in [*restored_outbox, *outputs]
            if isinstance(p, Prediction) and fmt.window_key(p) not in done.published
        ]  # fmt: skip
        self.resent = len(unsent)
        gateway.outbox.emit(unsent)
        for pos, raw in sorted(done.unprocessed.items()):
            if gateway.inbox.full():
                journal.drop(pos)
                gateway.inbox.put_nowait(raw)  # counted as shed
                continue
            self.pending[id(raw)] = (pos, raw)
            gateway.inbox.put_nowait(raw)
            self.requeued += 1
        continued = isinstance(j, dict) or (state is None and first == 0)
        journal.start(fresh=not continued)
        log.info(
            "journal %s: from position %d applied %d messages, %d ticks, %d evictions "
            "(%d torn tails cut, %d gaps between segments, %d messages missing); %d "
            "predictions to publish "
            "again, %d already published, %d accepted messages queued again",
            journal.dir,
            start,
            done.pushed,
            done.ticks,
            done.evictions,
            len(self.scan.torn) if self.scan is not None else 0,
            len(scan.missing),
            done.missing_messages,
            self.resent,
            len(done.published),
            self.requeued,
        )

    def figures(self) -> dict[str, Any] | None:
        """The journal's figures for ``/metrics`` (None without a journal)."""
        j = self.journal
        if j is None:
            return None
        done = self.recovered
        return {
            "records": j.records, "messages": j.accepted, "bytes": j.bytes_written,
            "segments": j.segment_count, "pruned": j.pruned, "fsyncs": j.fsyncs,
            "fsync_s": j.fsync_total_s, "fsync_max_s": j.fsync_max_s,
            "replayed": {} if done is None else {
                "messages": done.pushed, "ticks": done.ticks, "evictions": done.evictions,
                "requeued": self.requeued, "resent": self.resent,
            },
        }  # fmt: skip

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def make_journal(config: Any) -> Journal | None:
    """The journal a :class:`~.config.GatewayConfig` asks for, or None."""
    j = config.journal
    if not j.enabled:
        return None
    directory = j.dir or (str(Path(config.checkpoint.dir) / "journal") if config.checkpoint.dir
                          else "")
    if not directory:
        return None
    return Journal(
        directory,
        segment_bytes=j.segment_bytes,
        fsync=j.fsync,
        fsync_interval_s=j.fsync_interval_s,
    )

