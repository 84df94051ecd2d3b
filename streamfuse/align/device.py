"""All streams of one device: buffers, clock model(s), windower, align + interleave kernel.

Flow of one chunk (:meth:`DeviceAligner.add`): drop exact redeliveries (same seq, t0 and
length), feed its (device end time, arrival) pair to the device's clock model, write its samples
into the stream's ring at their device-time position, then close every window that became
complete or whose lateness budget ran out at the chunk's arrival time. A decoded bundle's parts
take the same path through :meth:`DeviceAligner.add_parts`, as fields, without a ``Chunk`` each.

A closed window is made by :class:`~streamfuse.align.fuse.WindowFuser` (every stream resampled
onto the window's grid and interleaved into the early-fusion matrix in one kernel call).

Windows that cannot be made are counted by reason: ``windows_dropped`` (some data, but fewer
than ``min_modalities`` modalities or a required one missing) and ``windows_empty`` (no data
from any stream: a silence or outage between data, counted once data follows it). Empty
windows are passed over in bulk, never one by one: a device back from a day's silence, or a
clock epoch that starts far from the last, costs a handful of window closes, not one per hop.

Clock jumps: when the clock model starts a new epoch, the windows holding the old epoch's data
are closed under the old epoch's mapping (:attr:`ClockModel.retired`) before its buffers are
let go; the new epoch's data is stored from scratch.

Gaps: a run of missing samples no longer than ``config.max_gap_s`` (at the stream's rate) is
interpolated across linearly and left unmasked; a longer run is masked exactly over its span
(grid points strictly between the last sample before it and the first after it). With the
default ``max_gap_s = 0`` every gap is masked.

Everything is a pure function of the sequence of ``(chunk, arrival)`` and ``advance(now)``
calls: no clock is read, so replaying the same sequence gives bit-identical windows.
"""

from __future__ import annotations

import logging
import math
import struct
from collections import deque

import numpy as np

from ..config import EngineConfig
from ..types import Chunk, FusedWindow
from .buffer import OK as BUF_OK
from .buffer import STALE, StreamBuffer
from .clock import OK, OUTLIER, RESET, ClockMapping, ClockModel
from .fuse import WindowFuser
from .stream import KEY, SEEN_MAX, Stream, redelivery_key
from .windower import Windower, window_phase

log = logging.getLogger("streamfuse.align.device")

_F32 = np.dtype(np.float32)
_pack_key = KEY.pack  # redelivery_key's packing, for add_parts

COUNTERS = (
    "chunks",
    "duplicates",
    "gaps",
    "gap_samples",
    "late_chunks",
    "reordered",
    "overlaps",
    "clock_resets",
    "clock_outliers",
    "rejected",
    "windows",
    "windows_dropped",
    "windows_empty",
    "held_dropped",
)

#: a timed-out backlog longer than this many windows is first searched for where data starts
_SKIP_FROM = 2
#: gateway seconds kept before a stream's oldest stored sample when passing over empty windows,
#: besides ``max_gap_s`` and two samples (more than any grid sample's taps reach back)
_SKIP_MARGIN_S = 1.0
_NO_LIMIT = 2**62
#: seconds of data (at the configured rates) a device's chunks held as possible clock jumps may
#: hold: a backlog replayed after an outage of up to this long is placed whole; beyond it the
#: oldest held chunks are dropped and counted (``held_dropped``)
HOLD_LIMIT_S = 120.0
#: a stream may run at up to this multiple of its configured rate; a chunk claiming more is
#: refused, so that a stream's ring is sized by configuration, not by what a frame claims
RATE_LIMIT = 2.0


_NEG_INF = -math.inf


def _as_f32(data: np.ndarray) -> np.ndarray:
    """``data`` as float32 and C-contiguous (itself when it is: the usual case)."""
    if data.dtype is not _F32 or not data.flags.c_contiguous:
        if data.dtype != np.float32 or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data, dtype=np.float32)
    return data


class DeviceAligner:
    """Aligns and fuses every stream of one device.

    Parameters
    ----------
    device : str
        Device id (copied into every window).
    config : EngineConfig
        Modalities, window length/hop, grid rate, lateness, reorder and silence budgets.
    clock_per_stream : bool
        One clock model per stream instead of one shared by the device (streams of one
        physical device share its clock, so sharing is the default and converges faster).

    Attributes
    ----------
    counters : dict[str, int]
        ``chunks`` seen, ``duplicates`` dropped, ``gaps`` (discontinuities on arrival),
        ``gap_samples`` (samples still missing behind each stream's newest one),
        ``late_chunks`` (data for windows already closed, or refused as older than the reorder
        bound), ``reordered`` (started behind the newest sample), ``overlaps`` (samples
        rewritten), ``clock_resets``, ``clock_outliers`` (held as possible jumps),
        ``rejected`` (unknown modality or wrong channel count), ``windows`` emitted,
        ``windows_dropped`` (fewer than ``min_modalities`` modalities with data, or one of
        ``required_modalities`` without any) and ``windows_empty`` (no data at all, between
        data: a silence, an outage, the hold before a clock jump was confirmed).

    Notes
    -----
    Cost per chunk (tens of thousands a second per core): one record per modality holds its
    channel count, redelivery keys, clock, buffer and last arrival; the next window's bounds and
    deadline are derived once per window; whether a stream holds all the samples the next
    window needs is cached against the window index, the clock's version and the buffer's
    version, so a chunk re-derives it only for what it changed, and the chunk's own stream
    (the one that just gained data, usually still short of the window) is asked first.
    """

    def __init__(
        self, device: str, config: EngineConfig, *, clock_per_stream: bool = False
    ) -> None:
        self.device = device
        self.config = config
        self.clock_per_stream = clock_per_stream
        self.windower = Windower(config, window_phase(device, config))
        self.k = config.window_samples
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._fuser = WindowFuser(device, config)
        self.columns = self._fuser.columns
        self.channels = self._fuser.channels
        self.C = self._fuser.C
        self._retain_s = (
            config.window_s + 2 * config.hop_s + config.lateness_s + config.reorder_s + 2.0
        )
        self._silence_s = config.silence_s
        self._grid_fs = config.grid_fs
        self._clocks: dict[str, ClockModel] = {}
        self._buffers: dict[str, StreamBuffer] = {}
        shared = ClockModel()
        self._streams = {
            m: Stream(
                m, spec.channels, ClockModel() if clock_per_stream else shared, RATE_LIMIT * spec.fs
            )
            for m, spec in config.modalities.items()
        }
        self._arrived: list[Stream] = []  # streams with data stored, in order of first data
        self._held: deque[Chunk] = deque()
        self._held_rows = 0
        self._held_max = math.ceil(HOLD_LIMIT_S * sum(s.fs for s in config.modalities.values()))
        self._now = -math.inf
        # while held chunks are replayed: the time the current one would have arrived, which
        # windows time out by (a backlog is placed and closed by device time)
        self._replay_at = math.inf
        # the next window (windower.next_index) as last derived: index, start, deadline
        self._w: int | None = None
        self._w_start = math.nan
        self._w_deadline = math.nan
        # while the windows of a retired clock epoch close: that epoch's mapping, per stream
        self._retired: dict[str, ClockMapping] = {}
        # _pass_empty found data near the window before this one: no use searching again
        # before the windows near that data are walked
        self._search_from = -_NO_LIMIT
        self._search_stride = 1 + math.ceil(
            (config.window_s + 2 * (_SKIP_MARGIN_S + config.max_gap_s + 1.0)) / config.hop_s
        )

    # -- public interface ----------------------------------------------------------------
    def add(self, chunk: Chunk) -> list[FusedWindow]:
        """Take one chunk (``chunk.arrival`` on the gateway clock); return the windows it closed.

        Ordinary anomalies (gap, duplicate, late, reordered, clock jump) are counted in
        :attr:`counters`, never raised.
        """
        c = self.counters
        c["chunks"] += 1
        st = self._streams.get(chunk.modality)
        d = chunk.data
        if st is None or not isinstance(d, np.ndarray) or d.ndim != 2:
            return self._reject(chunk)
        n, ch = d.shape
        t0 = chunk.t0
        fs = chunk.fs
        if (
            n <= 0
            or ch != st.channels
            or not math.isfinite(t0)
            or not math.isfinite(chunk.arrival)
            or not math.isfinite(fs)
            or not fs > 0
            or fs > st.max_fs
        ):
            return self._reject(chunk)
        return self._take(st, chunk.seq, t0, fs, _as_f32(d), chunk.arrival, chunk)

    def add_parts(
        self,
        names: list[str],
        ints: list[list[int]],
        floats: list[list[float]],
        samples: np.ndarray,
        arrival: float,
        start: int = 0,
    ) -> tuple[list[FusedWindow], int]:
        """:meth:`add` of each part of a decoded bundle in turn from part ``start``, the parts
        given as fields: part ``i`` is modality ``names[j]`` with
        ``(j, n, ch, seq, pos) = ints[i]``, ``(t0, fs) = floats[i]`` and samples
        ``samples[pos : pos + n * ch]`` (row-major ``[n, ch]``), all arriving at ``arrival``.
        Stops after the first part that closes windows and returns them with the index of the
        part after it (``len(ints)`` once all are taken): the caller reads the clock mapping
        for those windows before the next part's observation moves it. No
        :class:`~streamfuse.types.Chunk` is made unless a part is held or replayed (its
        samples then copied: the caller may reuse ``samples`` once this returns).

        The checks of :meth:`add` are known to pass: every modality configured, ``ch`` its
        channel count, ``n >= 1``, ``samples`` float32 and C-contiguous, ``t0`` and
        ``arrival`` finite and ``fs`` finite, positive and within the stream's rate limit
        (the bundle decoder's checks and the engine's rate check imply them all).
        """
        c = self.counters
        streams = self._streams
        end = len(ints)
        for i in range(start, end):
            c["chunks"] += 1
            j, n, ch, seq, p = ints[i]
            t0, fs = floats[i]
            st = streams[names[j]]
            # _take, written out (a call less per part)
            try:
                key = _pack_key(seq, t0, n)
            except struct.error:
                key = redelivery_key(seq, t0, n)
            seen = st.seen
            if seq > st.seq_max:
                st.seq_max = seq
            elif key in seen or key in st.seen_old:
                c["duplicates"] += 1
                continue
            seen[key] = None
            if len(seen) >= SEEN_MAX:
                st.seen_old = seen
                st.seen = {}
            if not st.registered:
                self._register(st)
            data = samples[p : p + n * ch].reshape(n, ch)
            status = st.clock.observe(t0 + n / fs, arrival)
            if status is not OK or self._held:
                # a held chunk outlives the call: its own samples, not a view of the caller's
                chunk = Chunk(self.device, st.name, seq, t0, fs, data.copy(), arrival)
                if status is not OK:
                    got = self._clock_event(chunk, status)
                else:
                    got = self._release_held(chunk, st)
            else:
                got = self._ingest(st, t0, fs, data, arrival)
            if got:
                return got, i + 1
        return [], end

    def _take(
        self,
        st: Stream,
        seq: int,
        t0: float,
        fs: float,
        data: np.ndarray,
        arrival: float,
        chunk: Chunk | None,
    ) -> list[FusedWindow]:
        """A checked chunk of stream ``st`` (``chunk``: the object itself, or None to make one
        only if it must be kept)."""
        n = data.shape[0]
        key = redelivery_key(seq, t0, n)
        seen = st.seen
        if seq > st.seq_max:
            st.seq_max = seq
        elif key in seen or key in st.seen_old:
            self.counters["duplicates"] += 1
            return []
        seen[key] = None
        if len(seen) >= SEEN_MAX:
            st.seen_old = seen
            st.seen = {}
        if not st.registered:
            self._register(st)
        status = st.clock.observe(t0 + n / fs, arrival)
        if status is not OK or self._held:
            if chunk is None:
                chunk = Chunk(self.device, st.name, seq, t0, fs, data, arrival)
            if status is not OK:
                return self._clock_event(chunk, status)
            return self._release_held(chunk, st)
        return self._ingest(st, t0, fs, data, arrival)

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

    def flush(self) -> list[FusedWindow]:
        """End of stream: close every remaining window that holds any data. Chunks still held
        as a possible clock jump are let go, counted in ``held_dropped``."""
        if self._held:
            self.counters["held_dropped"] += len(self._held)
            self._held = deque()
            self._held_rows = 0
        return self._close_all()

    def to_gateway(self, t_device: float) -> float:
        """Map a device-clock time to the gateway clock (NaN before any chunk arrived)."""
        clock = self._any_clock()
        return math.nan if clock is None else clock.to_gateway(t_device)

    def to_device(self, t_gateway: float) -> float:
        """The inverse of :meth:`to_gateway` (NaN before any chunk arrived)."""
        clock = self._any_clock()
        return math.nan if clock is None else clock.to_device(t_gateway)

    # -- internals -----------------------------------------------------------------------
    def _register(self, st: Stream) -> None:
        """List ``st``'s clock in :attr:`_clocks` (in order of first use, which
        :meth:`to_gateway` follows)."""
        self._clocks.setdefault(st.name if self.clock_per_stream else "", st.clock)
        st.registered = True

    def _clock(self, modality: str) -> ClockModel | ClockMapping:
        if self._retired:
            old = self._retired.get(modality)
            if old is not None:
                return old
        return self._streams[modality].clock

    def _any_clock(self) -> ClockModel | None:
        return next((clock for clock in self._clocks.values() if clock.ready), None)

    def _sharing(self, modality: str) -> tuple[str, ...]:
        """Streams whose buffers depend on the clock of ``modality``."""
        return (modality,) if self.clock_per_stream else tuple(self._buffers)

    def _reject(self, chunk: Chunk) -> list[FusedWindow]:
        """Unknown modality, wrong shape, or a non-finite time or rate."""
        self.counters["rejected"] += 1
        log.debug(
            "rejected chunk [device=%s, modality=%s, seq=%d]",
            self.device,
            chunk.modality,
            chunk.seq,
        )
        return []

    def _clock_event(self, chunk: Chunk, status: str) -> list[FusedWindow]:
        """The clock held ``chunk`` as a possible jump, or started a new epoch with it."""
        c = self.counters
        if status == OUTLIER:
            c["clock_outliers"] += 1
            held = self._held
            held.append(chunk)
            self._held_rows += chunk.data.shape[0]
            while self._held_rows > self._held_max:
                self._held_rows -= held.popleft().data.shape[0]
                c["held_dropped"] += 1
            return []
        assert status == RESET
        c["clock_resets"] += 1
        log.info("device %s: clock jump, starting a new epoch", self.device)
        sharing = self._sharing(chunk.modality)
        old = self._streams[chunk.modality].clock.retired
        if old is not None:
            self._retired = dict.fromkeys(sharing, old)
        try:  # the old epoch's data, in the windows the old epoch's mapping puts it in
            out = self._close_all()
        finally:
            self._retired = {}
        for m in sharing:
            if self._buffers.pop(m, None) is not None:
                self._streams[m].buf = None
        return self._release_held(chunk, self._streams[chunk.modality], out)

    def _release_held(
        self, chunk: Chunk, st: Stream, out: list[FusedWindow] | None = None
    ) -> list[FusedWindow]:
        """Store the chunks held as outliers, then ``chunk``.

        Each held chunk is stored as if at the time the clock model says it would have
        arrived (``to_gateway`` of its end): windows time out by that time, not by the burst's
        arrival, so a backlog delivered after an outage closes its windows as they complete,
        by device time, rather than each on the first chunk that reaches it.
        """
        if out is None:
            out = []
        held, self._held = self._held, deque()
        self._held_rows = 0
        try:
            for h in held:
                hst = self._streams[h.modality]
                self._replay_at = hst.clock.to_gateway(h.t0 + h.data.shape[0] / h.fs)
                out.extend(self._ingest(hst, h.t0, h.fs, _as_f32(h.data), h.arrival))
        finally:
            self._replay_at = math.inf
        out.extend(self._ingest(st, chunk.t0, chunk.fs, _as_f32(chunk.data), chunk.arrival))
        return out

    def _ingest(
        self, st: Stream, t0: float, fs: float, data: np.ndarray, arrival: float
    ) -> list[FusedWindow]:
        """Store a chunk's samples (``data`` float32, C-contiguous: :func:`_as_f32`) and close
        what that makes ready."""
        if arrival > self._now:
            self._now = arrival
        buf = st.buf
        if buf is None or abs(buf.fs - fs) > 1e-9 * fs:
            buf = StreamBuffer(
                data.shape[1],
                fs,
                t0,
                self._retain_s,
                self.config.reorder_s,
                tally=self.counters,
            )
            self._buffers[st.name] = st.buf = buf
        status = buf.put(t0, data)
        if status is not BUF_OK:
            self.counters["late_chunks" if status == STALE else "rejected"] += 1
            return self._close_ready(None)
        if st.last_arrival == _NEG_INF and st not in self._arrived:
            self._arrived.append(st)
        st.last_arrival = arrival
        win = self.windower
        w = win.next_index
        clock = st.clock
        if w is None:
            win.start(clock.to_gateway(t0))
        elif t0 + clock.offset + clock.drift * (t0 - clock.d_ref) < win.closed_end:
            # (clock.to_gateway(t0), written out)
            self.counters["late_chunks"] += 1
        elif (
            w == self._w
            and (self._now if self._now < self._replay_at else self._replay_at) < self._w_deadline
            and arrival >= self._now - self._silence_s
        ):
            # what _close_ready(st) would find first: window ``w`` has not timed out, and if
            # this stream (live) still lacks samples it needs, nothing closes. Most chunks end
            # here, on Stream.holds' cached answer (written out) or on holds itself.
            if (
                st.hi > buf.end_pos
                and st.w == w
                and st.for_buf is buf
                and st.clock_version == clock.version
            ) or not st.holds(w, self._w_start, self.k, self._grid_fs):
                return []
        return self._close_ready(st)

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
                if last - w >= _SKIP_FROM and self._pass_empty(w, last):
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

        From window ``w``'s start (less a reach of :data:`_SKIP_MARGIN_S` + ``max_gap_s`` + two
        samples, more than any grid sample's taps) each stream's next stored sample is found;
        the windows ending a reach before the earliest of them hold no data. What is left to
        walk one by one is what walking would have found, at most a few windows of it empty.
        """
        if w < self._search_from and last < _NO_LIMIT:
            return False
        t_start = self.windower.bounds(w)[0]
        start = math.inf
        for m, buf in self._buffers.items():
            clock = self._clock(m)
            reach = _SKIP_MARGIN_S + self.config.max_gap_s + 2.0 / buf.fs
            t_next = buf.next_time(clock.to_device(t_start - reach))
            if t_next is not None:
                start = min(start, clock.to_gateway(t_next) - reach)
        win = self.windower
        nxt = min(last, win.first_containing(start)) if math.isfinite(start) else w
        if nxt <= w:
            if last < _NO_LIMIT:
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
            self._pass_empty(w, _NO_LIMIT)
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
