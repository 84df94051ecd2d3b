"""One stream's record in a device aligner: its clock, buffer, redelivery keys and the
cached answer to "does it hold the next window's samples"."""

from __future__ import annotations

import math
import struct

from .buffer import StreamBuffer
from .clock import ClockModel

#: Redelivery keys remembered per stream: at least the last ``SEEN_MAX``, at most twice
#: that (bounds memory; QoS-1 redelivery is near in time).
SEEN_MAX = 4096
#: A chunk's redelivery key packed exactly: (seq, t0, n) as int64, float64, int64.
KEY = struct.Struct("<qdq")


def redelivery_key(seq: int, t0: float, n: int) -> bytes:
    """(seq, t0, n) as one bytes object, exactly.

    Bytes, not a tuple: a dict of bytes keys and ``None`` values holds nothing the garbage
    collector tracks, so it stays untracked and a full collection never walks it (tuple keys
    kept every stream's thousands of keys on each full collection's path). A ``seq`` outside
    int64 (JSON allows any integer) falls back to its text, which is longer than any packed
    key, so the two forms never meet.
    """
    try:
        return KEY.pack(seq, t0, n)
    except struct.error:
        return repr((seq, t0, n)).encode()


class Stream:
    """What the per-chunk path needs of one configured modality, in one place.

    ``lo``/``hi`` are the ring positions window ``w``'s grid needs from this stream, valid
    while the clock's ``version`` and the buffer are those they were derived from (they are
    pure functions of ``w``, the clock mapping and the buffer's origin and rate); ``ok`` is
    whether ``count(lo, hi)`` found all of them, valid while the buffer's ``version`` is
    ``ok_version``.
    """

    __slots__ = (
        "name",
        "channels",
        "max_fs",
        "seen",
        "seen_old",
        "seq_max",
        "clock",
        "registered",
        "buf",
        "last_arrival",
        "w",
        "clock_version",
        "for_buf",
        "lo",
        "hi",
        "ok_version",
        "ok",
    )

    def __init__(self, name: str, channels: int, clock: ClockModel, max_fs: float) -> None:
        self.name = name
        self.channels = channels
        self.max_fs = max_fs  # the highest rate a chunk may claim (sizes the ring)
        # redelivery keys in two generations: when ``seen`` is full it becomes ``seen_old``
        self.seen: dict[bytes, None] = {}
        self.seen_old: dict[bytes, None] = {}
        # the largest seq given a key so far: a chunk with a larger one is no redelivery,
        # and its key need not be looked up (an in-order stream's every chunk)
        self.seq_max: int | float = -math.inf
        self.clock = clock
        self.registered = False  # clock listed in DeviceAligner._clocks (on first use)
        self.buf: StreamBuffer | None = None
        self.last_arrival = -math.inf  # meaningful once in DeviceAligner._arrived
        self.w: int | None = None
        self.clock_version = -1
        self.for_buf: StreamBuffer | None = None
        self.lo = 0
        self.hi = 0
        self.ok_version = -1
        self.ok = False

    def holds(self, w: int, t_start: float, k: int, grid_fs: float) -> bool:
        """This stream holds every sample the ``k``-point, ``grid_fs`` Hz grid of window ``w``
        (starting at gateway time ``t_start``) needs (a buffer is stored)."""
        buf = self.buf
        clock = self.clock
        assert buf is not None
        if self.w != w or self.clock_version != clock.version or self.for_buf is not buf:
            # WindowFuser.needed(buf, clock, t_start) written out (same operations, same order)
            drift = clock.drift
            t_device = clock.d_ref + (t_start - clock.d_ref - clock.offset) / (1.0 + drift)
            fs = buf.fs
            p0 = (t_device - buf.origin) * fs
            step = fs / (grid_fs * (1.0 + drift))
            reach = max(1.0, step)
            self.lo = math.ceil(p0 - reach)
            self.hi = math.floor(p0 + (k - 1) * step + reach) + 1
            self.w = w
            self.clock_version = clock.version
            self.for_buf = buf
            self.ok_version = -1
        if self.hi > buf.end_pos:
            return False
        if self.ok_version != buf.version:
            self.ok = buf.count(self.lo, self.hi) >= self.hi - self.lo
            self.ok_version = buf.version
        return self.ok
