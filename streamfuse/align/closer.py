"""When a device's windows close: complete, timed out, passed over empty, or at the end.

:class:`WindowCloser` is the base class of :class:`~streamfuse.align.device.DeviceAligner`
holding its window-closing half (moved here from ``align/device.py`` to keep that module
small): which window is next and when its lateness budget runs out (:meth:`next_deadline`,
:meth:`advance`, :meth:`sync`), whether every live stream holds what it needs, and the fused
window made by :class:`~streamfuse.align.fuse.WindowFuser`. The aligner's state is set up by
``DeviceAligner.__init__`` (declared below for the type checker); methods are inherited, not
delegated, so a chunk costs the same calls as before, and a pickled aligner is still a
``streamfuse.align.device.DeviceAligner`` with the same attributes.

Windows that cannot be made are counted by reason: ``windows_dropped`` (some data, but fewer
than ``min_modalities`` modalities or a required one missing) and ``windows_empty`` (no data
from any stream: a silence or outage between data, counted once data follows it). Empty
windows are passed over in bulk, never one by one: a device back from a day's silence, or a
clock epoch that starts far from the last, costs a handful of window closes, not one per hop.
"""

from __future__ import annotations

import math

from ..config import EngineConfig
from ..types import FusedWindow
from .buffer import StreamBuffer
from .clock import ClockMapping, ClockModel
from .fuse import WindowFuser
from .stream import Stream
from .windower import Windower

#: a timed-out backlog longer than this many windows is first searched for where data starts
SKIP_FROM = 2
#: gateway seconds kept before a stream's oldest stored sample when passing over empty windows,
#: besides ``max_gap_s`` and two samples (more than any grid sample's taps reach back)
SKIP_MARGIN_S = 1.0
NO_LIMIT = 2**62


class WindowCloser:
    """The window-closing half of :class:`~streamfuse.align.device.DeviceAligner` (its base
    class; never made on its own)."""

    # set by DeviceAligner.__init__
    config: EngineConfig
    counters: dict[str, int]
    windower: Windower
    k: int
    _fuser: WindowFuser
    _streams: dict[str, Stream]
    _buffers: dict[str, StreamBuffer]
    _arrived: list[Stream]
    _retired: dict[str, ClockMapping]
    _silence_s: float
    _grid_fs: float
    _now: float
    _replay_at: float
    _w: int | None
    _w_start: float
    _w_deadline: float
    _search_from: int
    _search_stride: int

    def advance(self, now: float) -> list[FusedWindow]:
        """Close windows whose lateness budget ran out at gateway time ``now``."""
        if math.isfinite(now):
            self._now = max(self._now, now)
        return self._close_ready(None)

    def sync(self, now: float) -> None:
        """Take note that the gateway clock reached ``now`` without closing anything.

        Only for a host that skips :meth:`advance` while :meth:`next_deadline` is later than
        ``now``: nothing would have closed, and this keeps the aligner's clock (which the
        ``lateness_s`` quality figure reads) where ``advance(now)`` would have left it.
        """
        if math.isfinite(now) and now > self._now:
            self._now = now

    def next_deadline(self) -> float:
        """The earliest gateway time at which :meth:`advance` could close a window.

        Until then, with no new chunk, ``advance`` closes nothing: the next window's lateness
        budget runs out at ``t_end + lateness_s``, and a stream falling silent (its last
        arrival ``silence_s`` behind the clock) may complete it earlier. ``inf`` before any
        data.
        """
        w = self.windower.next_index
        if w is None:
            return math.inf
        if w != self._w:
            self._derive_window(w)
        t = self._w_deadline  # the test of Windower.timed_out
        now = self._now
        if t <= now and not self._has_data_from(self._w_start):
            return math.inf  # the window waits for data (see _close_ready)
        silence = self._silence_s
        for st in self._arrived:
            quiet = st.last_arrival + silence - 1e-6  # early rather than late by a rounding error
            if now <= quiet < t:
                t = quiet
        return t

    def _clock(self, modality: str) -> ClockModel | ClockMapping:
        if self._retired:
            old = self._retired.get(modality)
            if old is not None:
                return old
        return self._streams[modality].clock

    def _derive_window(self, w: int) -> None:
        """Bounds and deadline of window ``w``, the next to close."""
        win = self.windower
        t_start, t_end = win.bounds(w)
        self._w = w
        self._w_start = t_start
        self._w_deadline = t_end + win.lateness_s  # exactly Windower.timed_out's test

    def _complete(self, w: int, first: Stream | None) -> bool:
        """Every live stream holds every sample window ``w``'s grid needs (``w`` derived).

        ``first``, the stream that just gained data, is asked first: the answer is the same
        in any order, and it is the one most likely to say no.
        """
        quiet = self._now - self._silence_s
        if (
            first is not None
            and first.buf is not None
            and first.last_arrival >= quiet
            and not first.holds(w, self._w_start, self.k, self._grid_fs)
        ):
            return False
        live = False
        for st in self._arrived:
            if st.buf is not None and st.last_arrival >= quiet:
                live = True
                if st is not first and not st.holds(w, self._w_start, self.k, self._grid_fs):
                    return False
        return live

    def _has_data_from(self, t: float) -> bool:
        """Some stream holds samples at or after gateway time ``t``."""
        for m, buf in self._buffers.items():
            if self._clock(m).to_gateway(buf.end_time) > t:
                return True
        return False

    def _close_ready(self, first: Stream | None) -> list[FusedWindow]:
        out: list[FusedWindow] = []
        win = self.windower
        now = self._now if self._now < self._replay_at else self._replay_at
        while win.next_index is not None:
            w = win.next_index
            if w != self._w:
                self._derive_window(w)
            if now >= self._w_deadline:  # timed out
                if not self._has_data_from(self._w_start):
                    # nothing stored reaches it: it waits for data (a backlog delivered after
                    # an outage fills it; data after a silence passes it over, counted)
                    break
                last = win.first_open(now) - 1
                if last - w >= SKIP_FROM and self._pass_empty(w, last):
                    continue
            elif not self._complete(w, first):
                break
            fw = self._emit(w)
            win.closed(w)
            if fw is not None:
                out.append(fw)
        return out

    def _pass_empty(self, w: int, last: int) -> bool:
        """Close windows ``w ..`` (at most to ``last``) that no stored sample can reach: each
        would be closed empty. Counts them; True if any were passed over.

        From window ``w``'s start (less a reach of :data:`SKIP_MARGIN_S` + ``max_gap_s`` + two
        samples, more than any grid sample's taps) each stream's next stored sample is found;
        the windows ending a reach before the earliest of them hold no data. What is left to
        walk one by one is what walking would have found, at most a few windows of it empty.
        """
        if w < self._search_from and last < NO_LIMIT:
            return False
        t_start = self.windower.bounds(w)[0]
        start = math.inf
        for m, buf in self._buffers.items():
            clock = self._clock(m)
            reach = SKIP_MARGIN_S + self.config.max_gap_s + 2.0 / buf.fs
            t_next = buf.next_time(clock.to_device(t_start - reach))
            if t_next is not None:
                start = min(start, clock.to_gateway(t_next) - reach)
        win = self.windower
        nxt = min(last, win.first_containing(start)) if math.isfinite(start) else w
        if nxt <= w:
            if last < NO_LIMIT:
                self._search_from = w + self._search_stride
            return False
        self.counters["windows_empty"] += nxt - w
        win.closed(nxt - 1)
        return True

    def _close_all(self) -> list[FusedWindow]:
        out: list[FusedWindow] = []
        win = self.windower
        w = win.next_index
        if w is not None and self._has_data_from(win.bounds(w)[0]):
            self._pass_empty(w, NO_LIMIT)
        while win.next_index is not None:
            w = win.next_index
            if not self._has_data_from(win.bounds(w)[0]):
                break
            fw = self._emit(w)
            win.closed(w)
            if fw is not None:
                out.append(fw)
        return out

    def _emit(self, w: int) -> FusedWindow | None:
        fw = self._fuser.fuse(w, self.windower.bounds(w), self._buffers, self._clock, self._now)
        if fw is None:
            self.counters["windows_empty" if self._fuser.last_empty else "windows_dropped"] += 1
        else:
            self.counters["windows"] += 1
        return fw
