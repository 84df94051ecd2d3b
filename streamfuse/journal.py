"""The gateway journal's format, and reading it back: what the gateway's engine was fed, in order.

The gateway (:mod:`streamfuse.gateway.journal`) appends a record for every message it accepts
(before the MQTT acknowledgement is sent) and for every call it makes into the engine (before
the engine sees it); ``streamfuse replay JOURNAL_DIR`` and the gateway's own recovery read the
records back and make the same calls (:func:`apply`), so they get the same predictions.

A journal is a folder of segments ``journal-<start>.wal``, ``<start>`` the segment's first
position as 16 hex digits; a position is a byte offset in the concatenation of all segments
(segment headers included), so positions grow across segments and name records uniquely.
A segment is ``MAGIC`` then records; each record is::

    length u32 | crc32(kind + body) u32 | kind (1 byte) | body (length - 1 bytes)

little-endian. The kinds:

========  =====================================  ============================================
kind      body                                   meaning
========  =====================================  ============================================
``R``     topic length u16, topic, payload       a message accepted (queued for the engine)
``P``     position of an ``R`` u64, now f64      ``Engine.push(that message, now)``
``T``     now f64                                ``Engine.tick(now)``
``E``     now f64, idle_s f64                    ``Engine.evict_idle(now, idle_s)``
``D``     position of an ``R`` u64               that message dropped unprocessed (counted)
``O``     index i64, t_start f64, device         a prediction about to be published
``S``     fresh u8                               a gateway start: 1 = a fresh engine, 0 = the
                                                 state of everything journalled before
========  =====================================  ============================================

A record that does not fit in what is left of its file, or whose CRC does not match, ends the
readable part of that segment (a torn write after a kill -9); :func:`records` reports it and
goes on with the next segment.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .types import Prediction, RawMessage

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("streamfuse.journal")

MAGIC = b"SFJRNL1\n"
HEAD = struct.Struct("<IIc")  # length (kind + body), crc32 (kind + body), kind
TOPIC_LEN = struct.Struct("<H")
PUSH = struct.Struct("<Qd")
TICK = struct.Struct("<d")
EVICT = struct.Struct("<dd")
DROP = struct.Struct("<Q")
OUT = struct.Struct("<qd")
START = struct.Struct("<B")
#: the largest record a reader accepts (a message is bounded well below this by the broker
#: and ``engine.max_payload_bytes``; a larger length is a torn or foreign header)
MAX_RECORD = 1 << 28
SEGMENT = re.compile(r"^journal-([0-9a-f]{16})\.wal$")


def segment_name(start: int) -> str:
    return f"journal-{start:016x}.wal"


def segments(directory: str | Path) -> list[tuple[int, Path]]:
    """``(start position, path)`` of each segment in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1), 16), p) for p in d.iterdir() if (m := SEGMENT.match(p.name))]
    return sorted(found)


def frame(kind: bytes, *parts: bytes) -> list[bytes]:
    """One record as buffers (for ``os.writev`` or joining): header, then ``parts``."""
    crc = zlib.crc32(kind)
    n = 1
    for p in parts:
        crc = zlib.crc32(p, crc)
        n += len(p)
    return [HEAD.pack(n, crc, kind), *parts]


@dataclass(slots=True)
class Scan:
    """What reading a journal found besides its records."""

    torn: list[tuple[Path, int, int]] = field(default_factory=list)  # (segment, at, bytes cut)
    missing: list[tuple[int, int]] = field(default_factory=list)  # (from, to) positions absent
    end: int = 0  # position after the last good record


def scan_segment(path: Path, start: int, report: Scan) -> Iterator[tuple[int, bytes, bytes]]:
    """``(position, kind, body)`` of each good record of one segment; the first bad one ends it
    (its offset and the bytes after it go to ``report.torn``)."""
    blob = path.read_bytes()
    if not blob.startswith(MAGIC):
        report.torn.append((path, 0, len(blob)))
        return
    at = len(MAGIC)
    size = len(blob)
    while at < size:
        if at + HEAD.size > size:
            break
        n, crc, kind = HEAD.unpack_from(blob, at)
        body_at = at + HEAD.size
        if n < 1 or n > MAX_RECORD or body_at - 1 + n > size:
            break
        body = blob[body_at : body_at - 1 + n]
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            break
        yield start + at, kind, body
        at = body_at - 1 + n
    if at < size:
        report.torn.append((path, at, size - at))
    report.end = start + at


def records(
    directory: str | Path, start: int = 0, report: Scan | None = None
) -> Iterator[tuple[int, bytes, bytes]]:
    """Every good record at or after position ``start``, oldest first: ``(position, kind,
    body)``. Torn tails and positions missing between segments are noted in ``report``."""
    report = report if report is not None else Scan()
    expected: int | None = None
    for seg_start, path in segments(directory):
        size = path.stat().st_size
        if expected is not None and seg_start != expected and seg_start > start:
            report.missing.append((expected, seg_start))
        expected = seg_start + size
        if expected < start:
            report.end = expected
            continue
        for pos, kind, body in scan_segment(path, seg_start, report):
            if pos >= start:
                yield pos, kind, body


def decode_recv(body: bytes) -> RawMessage:
    (n,) = TOPIC_LEN.unpack_from(body)
    topic = body[2 : 2 + n].decode("utf-8", "backslashreplace")
    return RawMessage(topic, body[2 + n :])


def decode_out(body: bytes) -> tuple[str, int, float]:
    """``(device, index, t_start)`` of an ``O`` record: the key of a published window."""
    index, t_start = OUT.unpack_from(body)
    return body[OUT.size :].decode("utf-8", "backslashreplace"), index, t_start


def window_key(p: Prediction) -> tuple[str, int, float]:
    """What identifies a published window (``O`` records hold it)."""
    return p.device, p.index, p.t_start


@dataclass(slots=True)
class Applied:
    """What :func:`apply` did."""

    pushed: int = 0
    ticks: int = 0
    evictions: int = 0
    dropped: int = 0
    missing_messages: int = 0  # ``P`` records whose message was not found (pruned or torn)
    starts: int = 0
    fresh_starts: int = 0
    published: set[tuple[str, int, float]] = field(default_factory=set)
    unprocessed: dict[int, RawMessage] = field(default_factory=dict)  # accepted, never pushed


def apply(
    engine: Engine,
    stream: Iterator[tuple[int, bytes, bytes]],
    *,
    ops_from: int = 0,
    pending: dict[int, RawMessage] | None = None,
    emit: Callable[[list], None] = lambda outputs: None,
    on_evict: Callable[[Engine, float, float], list] | None = None,
    new_engine: Callable[[], Engine] | None = None,
) -> tuple[Engine, Applied]:
    """Make the engine calls journalled at or after ``ops_from``; returns the engine (a new one
    after a fresh-start record, when ``new_engine`` is given) and what was done.

    ``pending`` holds messages accepted before ``ops_from`` and not yet pushed then (from the
    checkpoint); messages accepted in the stream are added as they come. ``emit`` sees what each
    call returned; ``on_evict`` replaces ``engine.evict_idle`` (the gateway keeps counters of
    evicted devices).
    """
    done = Applied()
    waiting = dict(pending or {})
    for pos, kind, body in stream:
        if kind == b"R":
            waiting[pos] = decode_recv(body)
            continue
        if pos < ops_from:
            continue
        if kind == b"P":
            ref, now = PUSH.unpack_from(body)
            message = waiting.pop(ref, None)
            if message is None:
                done.missing_messages += 1
                continue
            done.pushed += 1
            emit(engine.push(message, now))
        elif kind == b"T":
            (now,) = TICK.unpack_from(body)
            done.ticks += 1
            emit(engine.tick(now))
        elif kind == b"E":
            now, idle_s = EVICT.unpack_from(body)
            done.evictions += 1
            emit(on_evict(engine, now, idle_s) if on_evict else engine.evict_idle(now, idle_s))
        elif kind == b"D":
            (ref,) = DROP.unpack_from(body)
            if waiting.pop(ref, None) is not None:
                done.dropped += 1
        elif kind == b"O":
            done.published.add(decode_out(body))
        elif kind == b"S":
            done.starts += 1
            if START.unpack_from(body)[0] and new_engine is not None:
                done.fresh_starts += 1
                engine = new_engine()
                waiting.clear()
        else:
            log.warning("journal record of unknown kind %r at %d skipped", kind, pos)
    done.unprocessed = waiting
    return engine, done
