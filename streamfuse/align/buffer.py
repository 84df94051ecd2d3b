"""One stream's sample buffer: a ring indexed by absolute sample position on the device clock.

Position ``p`` holds the sample taken at device time ``origin + p / fs``; a chunk starting at
``t0`` goes to ``round((t0 - origin) * fs)`` (timestamp noise below half a sample is absorbed).
Gaps are never filled in: a missing position simply reads as absent, and the window kernel
masks every grid sample that would need it. Reordered chunks land in their own positions
(they are accepted while not older than ``reorder_s`` behind the newest sample); older ones
are refused as *stale*. Memory is the fixed ring, sized at construction.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..kernels.ring import new_ring, ring_count, ring_write

log = logging.getLogger("streamfuse.align.buffer")

OK = "ok"
STALE = "stale"
TOO_LONG = "too_long"


class StreamBuffer:
    """Ring buffer of one (device, modality) stream.

    Parameters
    ----------
    channels : int
        Channels per sample.
    fs : float
        Sampling rate (Hz) of the stream.
    origin : float
        Device time of position 0 (the first chunk's ``t0``).
    retain_s : float
        Seconds of samples the ring must hold (rounded up to a power of two of samples).
    reorder_s : float
        How far (device seconds) behind the newest sample a chunk may still start.

    Attributes
    ----------
    end_pos : int
        One past the newest position written.
    gaps, gap_samples, reordered, overlaps : int
        Discontinuities seen on arrival, samples still missing behind ``end_pos``, chunks that
        started behind ``end_pos``, and samples written over a present position.
    """

    def __init__(
        self, channels: int, fs: float, origin: float, retain_s: float, reorder_s: float
    ) -> None:
        self.fs = float(fs)
        self.origin = float(origin)
        self.reorder = int(math.ceil(reorder_s * self.fs))
        self.values, self.slot_pos = new_ring(int(math.ceil(retain_s * self.fs)) + 1, channels)
        self.end_pos = 0
        self.gaps = 0
        self.gap_samples = 0
        self.reordered = 0
        self.overlaps = 0

    @property
    def capacity(self) -> int:
        return int(self.values.shape[0])

    @property
    def end_time(self) -> float:
        """Device time just past the newest sample."""
        return self.origin + self.end_pos / self.fs

    def position(self, t_device: float) -> float:
        """Fractional ring position of a device time."""
        return (t_device - self.origin) * self.fs

    def put(self, t0: float, data: np.ndarray) -> str:
        """Store a chunk starting at device time ``t0``; returns ``"ok"``, ``"stale"`` or
        ``"too_long"`` (more samples than the ring holds)."""
        n = int(data.shape[0])
        if n > self.capacity // 2:
            return TOO_LONG
        pos0 = int(round((t0 - self.origin) * self.fs))
        end = pos0 + n
        if end <= self.end_pos - self.reorder or pos0 < self.end_pos - self.capacity:
            return STALE
        overlap = int(ring_write(self.values, self.slot_pos, data, np.int64(pos0)))
        self.overlaps += overlap
        if pos0 > self.end_pos:
            self.gaps += 1
            self.gap_samples += pos0 - self.end_pos
        elif pos0 < self.end_pos:
            self.reordered += 1
            below = min(end, self.end_pos) - pos0
            self.gap_samples -= max(0, below - overlap)
        self.end_pos = max(self.end_pos, end)
        return OK

    def count(self, lo: int, hi: int) -> int:
        """Present positions in ``lo .. hi - 1``."""
        return int(ring_count(self.slot_pos, np.int64(lo), np.int64(hi)))
