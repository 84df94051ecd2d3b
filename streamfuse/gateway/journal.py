"""The gateway's journal writer: records appended to segments, written to the OS before they count.

The format is :mod:`streamfuse.journal`'s. What is written when:

- **an accepted message** (:meth:`Journal.accept`) is written to the OS (``os.write``) at
  once, together with every record buffered before it, inside paho's message callback, that is
  before paho sends the QoS 1 PUBACK (paho acknowledges when the callback returns). So a
  message the broker considers delivered is in the kernel's page cache: a kill -9 of the
  gateway cannot lose it;
- **engine calls and publish intents** (:meth:`push`, :meth:`tick`, :meth:`evict`,
  :meth:`drop`, :meth:`published`) are buffered and written with the next accepted message or
  :meth:`flush` (the gateway flushes before it publishes, so a published prediction's causes
  are always in the journal);
- **fsync** (what survives a power loss or a kernel crash) follows ``fsync``:

  - ``"interval"`` (default): a background thread fsyncs every ``fsync_interval_s`` when
    something was written; a machine crash can lose the last interval of acknowledged
    messages (a process crash loses nothing);
  - ``"always"``: every accepted message is fsynced before the acknowledgement;
  - ``"never"``: left to the OS (segments are still fsynced when rotated and closed).

A segment is rotated once it holds ``segment_bytes``; :meth:`prune` removes segments wholly
before a position (the gateway passes the oldest kept checkpoint's). :meth:`open` cuts a torn
tail (a record half written when the process died) off the newest segment and reports it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from pathlib import Path

from .. import journal as fmt
from ..errors import ConfigError
from ..types import Prediction

log = logging.getLogger("streamfuse.gateway.journal")

FSYNC_POLICIES = ("interval", "always", "never")
#: topics whose encoded record head is remembered
TOPICS_KEPT = 8192
_HEAD = fmt.HEAD
_PUSH = fmt.PUSH.pack
_PUSH_LEN = 1 + fmt.PUSH.size
_crc32 = zlib.crc32
_CRC_R = zlib.crc32(b"R")
_CRC_P = zlib.crc32(b"P")


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        view.release()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Appends journal records to segments in ``directory`` (created, mode 0700)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 << 20,
        fsync: str = "interval",
        fsync_interval_s: float = 0.1,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ConfigError(f"journal.fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"journal folder {self.dir} cannot be created: {exc}") from exc
        self.segment_bytes = max(1 << 16, int(segment_bytes))
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._buf = bytearray()
        self._topics: dict[str, tuple[bytes, int]] = {}
        self._fd = -1
        self._seg_start = 0
        self._seg_size = 0  # bytes of the current segment already written to the OS
        self._dirty = False
        self._retired: list[int] = []  # rotated segments' descriptors, closed by the syncer
        self._lock = threading.Lock()  # guards _retired and the descriptor swap
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self.records = 0
        self.accepted = 0  # R records and their payload bytes
        self.accepted_bytes = 0
        self.fsyncs = 0
        self.fsync_total_s = 0.0
        self.bytes_written = 0  # to the OS, this process
        self.segment_count = 0  # segments on disk
        self.pruned = 0  # segments removed
        self.fsync_max_s = 0.0
        self.torn_bytes = 0
        self.scan: fmt.Scan | None = None

    # ------------------------------------------------------------------ opening
    def open(self) -> fmt.Scan:
        """Find the end of what is there, cut a torn tail, open a segment to append to."""
        report = fmt.Scan()
        found = fmt.segments(self.dir)
        for _ in fmt.records(self.dir, found[-1][0] if found else 0, report):
            pass
        for path, at, n in report.torn:
            if found and path == found[-1][1]:
                log.error(
                    "journal segment %s ends in a torn record (%d bytes at offset %d, a write "
                    "cut short by a crash): cut off",
                    path, n, at,
                )  # fmt: skip
                if at < len(fmt.MAGIC):
                    path.unlink()
                    found.pop()
                else:
                    os.truncate(path, at)
                self.torn_bytes += n
        self.segment_count = len(found)
        if found:
            start, path = found[-1]
            self._seg_start, self._seg_size = start, path.stat().st_size
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            self._new_segment(0)
        self.scan = report
        return report

    def _new_segment(self, start: int) -> None:
        path = self.dir / fmt.segment_name(start)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        _write_all(fd, fmt.MAGIC)
        if self.fsync != "never":
            os.fsync(fd)
            _fsync_dir(self.dir)
        self._fd, self._seg_start, self._seg_size = fd, start, len(fmt.MAGIC)
        self.segment_count += 1

    @property
    def first(self) -> int:
        """The position the oldest segment starts at (0 if nothing was pruned)."""
        found = fmt.segments(self.dir)
        return found[0][0] if found else 0

    @property
    def position(self) -> int:
        """Where the next record goes."""
        return self._seg_start + self._seg_size + len(self._buf)

    # ------------------------------------------------------------------ records
    def accept(self, topic: str, payload: bytes, *, write: bool = True) -> int:
        """Journal an accepted message and write it (and what was buffered) to the OS now;
        fsync too under ``"always"``. ``write=False``: buffer it only, for :meth:`commit` to
        write with the others of the same socket read. Returns its position."""
        head = self._topics.get(topic)
        if head is None:
            head = self._topic_head(topic)
        prefix, crc = head
        if self._seg_size + len(self._buf) >= self.segment_bytes:
            self._rotate()
        buf = self._buf
        pos = self._seg_start + self._seg_size + len(buf)
        buf += _HEAD.pack(len(prefix) + 1 + len(payload), _crc32(payload, crc), b"R")
        buf += prefix
        buf += payload
        self.records += 1
        self.accepted += 1
        self.accepted_bytes += len(payload)
        if write:
            self.commit()
        return pos

    def commit(self) -> None:
        """Write what is buffered to the OS, and fsync it under ``"always"`` (what must hold
        before accepted messages are acknowledged)."""
        if self._buf:
            self.flush()
            if self.fsync == "always":
                self._fsync(self._fd)

    def _topic_head(self, topic: str) -> tuple[bytes, int]:
        """A topic's encoded part of an ``R`` record and the CRC up to it (remembered for a
        bounded number of topics: a device sends on the same few)."""
        t = topic.encode("utf-8", "surrogateescape")
        prefix = fmt.TOPIC_LEN.pack(len(t)) + t
        head = (prefix, _crc32(prefix, _CRC_R))
        if len(self._topics) < TOPICS_KEPT:
            self._topics[topic] = head
        return head

    def _add(self, kind: bytes, body: bytes) -> None:
        for part in fmt.frame(kind, body):
            self._buf += part
        self.records += 1

    def push(self, ref: int, now: float) -> None:
        body = _PUSH(ref, now)
        self._buf += _HEAD.pack(_PUSH_LEN, _crc32(body, _CRC_P), b"P")
        self._buf += body
        self.records += 1

    def tick(self, now: float) -> None:
        self._add(b"T", fmt.TICK.pack(now))

    def evict(self, now: float, idle_s: float) -> None:
        self._add(b"E", fmt.EVICT.pack(now, idle_s))

    def drop(self, ref: int) -> None:
        self._add(b"D", fmt.DROP.pack(ref))

    def published(self, p: Prediction) -> None:
        self._add(b"O", fmt.OUT.pack(p.index, p.t_start) + p.device.encode("utf-8"))

    def start(self, *, fresh: bool) -> None:
        self._add(b"S", fmt.START.pack(1 if fresh else 0))
        self.flush()

    def descriptors(self) -> tuple[int, ...]:
        """The open segments' descriptors (the current one last)."""
        with self._lock:
            return (*self._retired, self._fd)

    def skip_to(self, position: int) -> None:
        """Continue at ``position`` if the journal ends before it (a journal that lost its
        unsynced tail while a checkpoint past it survived): a new segment starts there, so
        new records are never numbered below what the checkpoint already holds."""
        if position <= self.position:
            return
        log.error(
            "journal %s ends at %d but the checkpoint holds everything up to %d (a tail lost "
            "to a power cut?): continuing at %d",
            self.dir, self.position, position, position,
        )  # fmt: skip
        self.flush()
        old = self._fd
        os.fsync(old)
        self._new_segment(position)
        if self._syncer is not None:
            with self._lock:
                self._retired.append(old)  # the syncer may be fsyncing it: it closes it
        else:
            os.close(old)

    def flush(self) -> None:
        """Write what is buffered to the OS (one system call)."""
        buf = self._buf
        if buf:
            _write_all(self._fd, buf)
            self._seg_size += len(buf)
            self.bytes_written += len(buf)
            buf.clear()
            self._dirty = True
            if self._syncer is None and self.fsync == "interval" and not self._stop.is_set():
                self._syncer = threading.Thread(
                    target=self._sync_loop, name="streamfuse-journal-fsync", daemon=True
                )
                self._syncer.start()

    def sync(self) -> None:
        """Flush and fsync now (before a checkpoint records a position, and at close)."""
        self.flush()
        self._fsync(self._fd)

    # ------------------------------------------------------------------ upkeep
    def _fsync(self, fd: int) -> None:
        t0 = time.perf_counter()
        os.fsync(fd)
        dt = time.perf_counter() - t0
        self.fsyncs += 1
        self.fsync_total_s += dt
        if dt > self.fsync_max_s:
            self.fsync_max_s = dt

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval_s):
            with self._lock:
                retired, self._retired = self._retired, []
                fd = self._fd
            for old in retired:
                os.fsync(old)
                os.close(old)
            if self._dirty and fd >= 0:
                self._dirty = False
                try:
                    self._fsync(fd)
                except OSError as exc:  # a full or failing disk: said, not fatal
                    log.error("journal fsync failed: %s", exc)

    def _rotate(self) -> None:
        self.flush()
        old = self._fd
        start = self._seg_start + self._seg_size
        if self.fsync == "interval":
            with self._lock:
                self._new_segment(start)
                self._retired.append(old)  # the syncer fsyncs and closes it
        else:
            os.fsync(old)
            os.close(old)
            self._new_segment(start)

    def prune(self, before: int) -> int:
        """Remove segments that end at or before position ``before`` (never the current one);
        returns how many were removed."""
        found = fmt.segments(self.dir)
        removed = 0
        for (start, path), (nxt, _) in zip(found, found[1:], strict=False):
            if nxt <= before and start != self._seg_start:
                path.unlink(missing_ok=True)
                removed += 1
        self.pruned += removed
        self.segment_count -= removed
        if removed:
            log.info("journal: %d segments before position %d removed", removed, before)
        return removed

    def close(self) -> None:
        """Flush, fsync and close (the syncer thread is stopped first)."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        if self._fd < 0:
            return
        self.sync()
        for old in self._retired:
            os.fsync(old)
            os.close(old)
        self._retired = []
        os.close(self._fd)
        self._fd = -1
