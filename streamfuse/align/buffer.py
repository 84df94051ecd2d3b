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

from ..kernels.ring import EMPTY, new_ring, ring_count, ring_write

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

    tally : dict[str, int], optional
        Totals that outlive this buffer (the device's counters): its ``gaps``,
        ``gap_samples``, ``reordered`` and ``overlaps`` entries get the same increments as the
        attributes below, as they happen (so no caller has to diff them after every put).

    Attributes
    ----------
    end_pos : int
        One past the newest position written.
    gaps, gap_samples, reordered, overlaps : int
        Discontinuities seen on arrival, samples still missing behind ``end_pos``, chunks that
        started behind ``end_pos``, and samples written over a present position.
    version : int
        Number of chunks stored so far: what :meth:`count` answers can only change when it
        moves (a write fills positions and may evict the oldest ones).
    """

    def __init__(
        self,
        channels: int,
        fs: float,
        origin: float,
        retain_s: float,
        reorder_s: float,
        tally: dict[str, int] | None = None,
    ) -> None:
        self.fs = float(fs)
        self.origin = float(origin)
        self.reorder = int(math.ceil(reorder_s * self.fs))
        self.values, self.slot_pos = new_ring(int(math.ceil(retain_s * self.fs)) + 1, channels)
        self.capacity = int(self.values.shape[0])
        self.end_pos = 0
        self.gaps = 0
        self.gap_samples = 0
        self.reordered = 0
        self.overlaps = 0
        self.version = 0
        self._tally = {} if tally is None else tally

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
        n = data.shape[0]
        cap = self.capacity
        if n > cap // 2:
            return TOO_LONG
        pos0 = int(round((t0 - self.origin) * self.fs))
        end = pos0 + n
        end_pos = self.end_pos
        if end <= end_pos - self.reorder or pos0 < end_pos - cap:
            return STALE
        overlap = ring_write(self.values, self.slot_pos, data, pos0)
        self.version += 1
        if overlap:
            self.overlaps += overlap
            self._tally["overlaps"] = self._tally.get("overlaps", 0) + overlap
        if pos0 == end_pos:  # the usual case: nothing to count
            self.end_pos = end
            return OK
        tally = self._tally
        if pos0 > end_pos:
            self.gaps += 1
            self.gap_samples += pos0 - end_pos
            tally["gaps"] = tally.get("gaps", 0) + 1
            tally["gap_samples"] = tally.get("gap_samples", 0) + pos0 - end_pos
        else:
            self.reordered += 1
            below = min(end, end_pos) - pos0
            filled = max(0, below - overlap)
            self.gap_samples -= filled
            tally["reordered"] = tally.get("reordered", 0) + 1
            tally["gap_samples"] = tally.get("gap_samples", 0) - filled
        self.end_pos = max(end_pos, end)
        return OK

    def count(self, lo: int, hi: int) -> int:
        """Present positions in ``lo .. hi - 1``."""
        return int(ring_count(self.slot_pos, lo, hi))

    def next_time(self, t_device: float) -> float | None:
        """Device time of the oldest sample stored at or after ``t_device`` (None if none): a
        full scan of the ring, for the rare paths that pass over windows in bulk."""
        p = self.position(t_device)
        if not p < 2.0**62:  # beyond every position, or NaN
            return None
        pos = self.slot_pos
        pos = pos[pos >= (math.ceil(p) if p > EMPTY else EMPTY + 1)]
        if pos.size == 0:
            return None
        return self.origin + int(pos.min()) / self.fs
