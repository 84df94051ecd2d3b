"""All streams of one device: buffers, clock model(s), windower, align + interleave kernel.

Flow of one chunk (:meth:`DeviceAligner.add`): drop exact redeliveries (same seq, t0 and
length), feed its (device end time, arrival) pair to the device's clock model, write its samples
into the stream's ring at their device-time position, then close every window that became
complete or whose lateness budget ran out at the chunk's arrival time. A decoded bundle's parts
take the same path through :meth:`DeviceAligner.add_parts`, as fields, without a ``Chunk`` each.

This module takes chunks in, holds possible clock jumps and stores samples; closing windows
(:meth:`~WindowCloser.next_deadline`, :meth:`~WindowCloser.advance`, passing over empty
windows, counting dropped ones, and making each closed window with
:class:`~streamfuse.align.fuse.WindowFuser`: every stream resampled onto the window's grid
and interleaved into the early-fusion matrix in one kernel call) is the base class
:class:`~streamfuse.align.closer.WindowCloser`, in ``align/closer.py``.

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
from .closer import NO_LIMIT, SKIP_MARGIN_S, WindowCloser
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


class DeviceAligner(WindowCloser):
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
        self._search_from = -NO_LIMIT
        self._search_stride = 1 + math.ceil(
            (config.window_s + 2 * (SKIP_MARGIN_S + config.max_gap_s + 1.0)) / config.hop_s
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
