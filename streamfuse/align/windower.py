"""Event-time windows on the gateway clock: which window is next, when it may close.

Window ``w`` covers ``[phase + w * hop_s, phase + w * hop_s + window_s)`` on the gateway clock
and is sampled at ``t_start + j / grid_fs`` for ``j < k``. ``phase`` (in ``[0, hop_s)``) is
:func:`window_phase` of the device: with ``EngineConfig.window_phase = "device"`` each device's
grid is shifted by a fixed amount derived from its id, so a fleet's windows close spread over
the hop instead of all at once; ``"aligned"`` gives every device ``phase = 0``.

Windows close strictly in index order. Window ``w`` closes as soon as every live stream holds
all the samples its grid needs, or once the gateway clock reaches ``t_end + lateness_s`` (the
lateness budget), whichever is first; the device aligner supplies both facts, this class keeps
the bookkeeping.
"""

from __future__ import annotations

import logging
import math
import zlib

from ..config import EngineConfig

log = logging.getLogger("streamfuse.align.windower")


def window_phase(device: str, config: EngineConfig) -> float:
    """Offset in ``[0, hop_s)`` of ``device``'s window grid under ``config.window_phase``.

    ``"device"``: ``crc32(device id, UTF-8) / 2**32 * hop_s``, the same on every machine and in
    every run (Python's ``hash`` is salted per process, CRC-32 is not); ``"aligned"``: 0.

    Examples
    --------
    >>> from streamfuse.config import EngineConfig
    >>> round(window_phase("dev-1", EngineConfig(hop_s=1.0)), 6)
    0.530768
    >>> window_phase("dev-1", EngineConfig(window_phase="aligned"))
    0.0
    """
    if config.window_phase == "aligned":
        return 0.0
    return zlib.crc32(device.encode("utf-8")) / 2.0**32 * float(config.hop_s)


class Windower:
    """Index bookkeeping of one device's windows.

    Parameters
    ----------
    config : EngineConfig
        Window length, hop, grid rate and lateness budget.
    phase : float
        Offset of window 0's start on the gateway clock (see :func:`window_phase`).

    Attributes
    ----------
    next_index : int or None
        The next window to close (None until the first data arrives).
    closed_end : float
        ``t_end`` of the last window closed (``-inf`` before any).
    """

    def __init__(self, config: EngineConfig, phase: float = 0.0) -> None:
        self.phase = float(phase)
        self.window_s = float(config.window_s)
        self.hop_s = float(config.hop_s)
        self.grid_fs = float(config.grid_fs)
        self.k = config.window_samples
        self.lateness_s = float(config.lateness_s)
        self.next_index: int | None = None
        self.closed_end = -math.inf

    def bounds(self, w: int) -> tuple[float, float]:
        """``(t_start, t_end)`` of window ``w``."""
        t0 = self.phase + w * self.hop_s
        return t0, t0 + self.window_s

    def first_containing(self, t: float) -> int:
        """Smallest ``w`` whose window ends after gateway time ``t``."""
        return math.floor((t - self.phase - self.window_s) / self.hop_s) + 1

    def start(self, t_first: float) -> None:
        """Begin at the first window holding gateway time ``t_first`` (no-op once started)."""
        if self.next_index is None:
            self.next_index = self.first_containing(t_first)

    def timed_out(self, w: int, now: float) -> bool:
        """True once the lateness budget of window ``w`` ran out at gateway time ``now``."""
        return now >= self.bounds(w)[1] + self.lateness_s

    def first_open(self, now: float) -> int:
        """The first window whose lateness budget has not run out at ``now``."""
        return math.floor((now - self.phase - self.lateness_s - self.window_s) / self.hop_s) + 1

    def closed(self, w: int) -> None:
        """Record that window ``w`` closed (emitted or dropped)."""
        self.closed_end = self.bounds(w)[1]
        self.next_index = w + 1
