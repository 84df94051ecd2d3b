"""All streams of one device: buffers, clock model(s), windower, align + interleave kernel.

Flow of one chunk (:meth:`DeviceAligner.add`): drop exact redeliveries (same seq, t0 and
length), feed its (device end time, arrival) pair to the device's clock model, write its samples
into the stream's ring at their device-time position, then close every window that became
complete or whose lateness budget ran out at the chunk's arrival time.

A closed window is resampled with :func:`streamfuse.kernels.align.align_window` (every stream in
one kernel call) onto the grid ``t_start + j / grid_fs`` (grid times mapped back to each
stream's device clock through the clock model as it stands at closing time), straight into the
columns of the early-fusion matrix. Columns are all channels of all configured modalities, in
``config.modalities`` order then channel order, named ``"modality:channel"``; the column layout
never changes, so a modality without data in a window has zero columns and a False mask.

Masked samples hold ``0.0`` both in the fused matrix and in the per-modality blocks.

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
from collections import OrderedDict

import numpy as np

from ..config import EngineConfig, ModalitySpec
from ..kernels.align import align_window, new_scratch
from ..types import Chunk, FusedWindow, Window
from .buffer import OK as BUF_OK
from .buffer import STALE, StreamBuffer
from .clock import OUTLIER, RESET, ClockModel
from .windower import Windower, window_phase

log = logging.getLogger("streamfuse.align.device")

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
)

#: Redelivery keys remembered per stream (bounds memory; QoS-1 redelivery is near in time).
_SEEN_MAX = 4096


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
        ``rejected`` (unknown modality or wrong channel count), ``windows`` emitted and
        ``windows_dropped`` (fewer than ``min_modalities`` modalities with data, or one of
        ``required_modalities`` without any).
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
        cols: dict[str, tuple[int, int]] = {}
        names: list[str] = []
        for name, spec in config.modalities.items():
            cols[name] = (len(names), spec.channels)
            names.extend(f"{name}:{ch}" for ch in spec.channel_names)
        self.columns = cols
        self.channels = tuple(names)
        self.C = len(names)
        self._retain_s = (
            config.window_s + 2 * config.hop_s + config.lateness_s + config.reorder_s + 2.0
        )
        self._clocks: dict[str, ClockModel] = {}
        self._buffers: dict[str, StreamBuffer] = {}
        self._seen: dict[str, OrderedDict[tuple[int, float, int], None]] = {
            m: OrderedDict() for m in config.modalities
        }
        self._last_arrival: dict[str, float] = {}
        self._held: list[Chunk] = []
        self._now = -math.inf
        self._scratch = new_scratch(self.k)
        self._params = np.zeros((len(config.modalities), 4))
        self._n_ok = np.zeros(len(config.modalities), np.int64)

    # -- public interface ----------------------------------------------------------------
    def add(self, chunk: Chunk) -> list[FusedWindow]:
        """Take one chunk (``chunk.arrival`` on the gateway clock); return the windows it closed.

        Ordinary anomalies (gap, duplicate, late, reordered, clock jump) are counted in
        :attr:`counters`, never raised.
        """
        c = self.counters
        c["chunks"] += 1
        spec = self.config.modalities.get(chunk.modality)
        if spec is None or not self._acceptable(chunk, spec):
            c["rejected"] += 1
            log.debug(
                "rejected chunk [device=%s, modality=%s, seq=%d]",
                self.device,
                chunk.modality,
                chunk.seq,
            )
            return []
        key = (chunk.seq, float(chunk.t0), chunk.n)
        seen = self._seen[chunk.modality]
        if key in seen:
            c["duplicates"] += 1
            return []
        seen[key] = None
        if len(seen) > _SEEN_MAX:
            seen.popitem(last=False)
        clock = self._clock(chunk.modality)
        status = clock.observe(chunk.t0 + chunk.duration, chunk.arrival)
        if status == OUTLIER:
            c["clock_outliers"] += 1
            self._held.append(chunk)
            return []
        out: list[FusedWindow] = []
        if status == RESET:
            c["clock_resets"] += 1
            log.info("device %s: clock jump, starting a new epoch", self.device)
            out.extend(self._close_all())
            for m in self._sharing(chunk.modality):
                self._buffers.pop(m, None)
        held, self._held = self._held, []
        for h in held:
            out.extend(self._ingest(h))
        out.extend(self._ingest(chunk))
        return out

    def advance(self, now: float) -> list[FusedWindow]:
        """Close windows whose lateness budget ran out at gateway time ``now``."""
        if math.isfinite(now):
            self._now = max(self._now, now)
        return self._close_ready()

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
        win = self.windower
        if win.next_index is None:
            return math.inf
        t = win.bounds(win.next_index)[1] + win.lateness_s  # the test of Windower.timed_out
        silence = self.config.silence_s
        for arrival in self._last_arrival.values():
            quiet = arrival + silence - 1e-6  # early rather than late by a rounding error
            if self._now <= quiet < t:
                t = quiet
        return t

    def flush(self) -> list[FusedWindow]:
        """End of stream: close every remaining window that holds any data."""
        return self._close_all()

    def to_gateway(self, t_device: float) -> float:
        """Map a device-clock time to the gateway clock (NaN before any chunk arrived)."""
        clock = self._any_clock()
        return math.nan if clock is None else clock.to_gateway(t_device)

    # -- internals -----------------------------------------------------------------------
    def _acceptable(self, chunk: Chunk, spec: ModalitySpec) -> bool:
        d = chunk.data
        return (
            isinstance(d, np.ndarray)
            and d.ndim == 2
            and d.shape[0] > 0
            and d.shape[1] == spec.channels
            and math.isfinite(chunk.t0)
            and math.isfinite(chunk.arrival)
            and math.isfinite(chunk.fs)
            and chunk.fs > 0
        )

    def _clock(self, modality: str) -> ClockModel:
        key = modality if self.clock_per_stream else ""
        clock = self._clocks.get(key)
        if clock is None:
            clock = self._clocks[key] = ClockModel()
        return clock

    def _any_clock(self) -> ClockModel | None:
        for clock in self._clocks.values():
            if clock.ready:
                return clock
        return None

    def _sharing(self, modality: str) -> tuple[str, ...]:
        """Streams whose buffers depend on the clock of ``modality``."""
        return (modality,) if self.clock_per_stream else tuple(self._buffers)

    def _ingest(self, chunk: Chunk) -> list[FusedWindow]:
        m = chunk.modality
        c = self.counters
        self._now = max(self._now, chunk.arrival)
        clock = self._clock(m)
        buf = self._buffers.get(m)
        if buf is None or abs(buf.fs - chunk.fs) > 1e-9 * chunk.fs:
            buf = StreamBuffer(
                chunk.channels, chunk.fs, chunk.t0, self._retain_s, self.config.reorder_s
            )
            self._buffers[m] = buf
        data = chunk.data
        if data.dtype != np.float32 or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data, dtype=np.float32)
        before = (buf.gaps, buf.gap_samples, buf.reordered, buf.overlaps)
        status = buf.put(chunk.t0, data)
        c["gaps"] += buf.gaps - before[0]
        c["gap_samples"] += buf.gap_samples - before[1]
        c["reordered"] += buf.reordered - before[2]
        c["overlaps"] += buf.overlaps - before[3]
        if status != BUF_OK:
            if status == STALE:
                c["late_chunks"] += 1
            else:
                c["rejected"] += 1
            return self._close_ready()
        self._last_arrival[m] = chunk.arrival
        g0 = clock.to_gateway(chunk.t0)
        if self.windower.next_index is None:
            self.windower.start(g0)
        elif g0 < self.windower.closed_end:
            c["late_chunks"] += 1
        return self._close_ready()

    def _needed(self, buf: StreamBuffer, clock: ClockModel, t_start: float) -> tuple[float, float]:
        """Ring position of grid sample 0 and positions per grid sample."""
        p0 = buf.position(clock.to_device(t_start))
        step = buf.fs / (self.config.grid_fs * (1.0 + clock.drift))
        return p0, step

    def _complete(self, w: int) -> bool:
        """Every live stream holds every sample window ``w``'s grid needs."""
        t_start, _ = self.windower.bounds(w)
        live = [
            m
            for m, t in self._last_arrival.items()
            if t >= self._now - self.config.silence_s and m in self._buffers
        ]
        if not live:
            return False
        for m in live:
            buf = self._buffers[m]
            p0, step = self._needed(buf, self._clock(m), t_start)
            reach = max(1.0, step)
            lo = math.ceil(p0 - reach)
            hi = math.floor(p0 + (self.k - 1) * step + reach) + 1
            if hi > buf.end_pos or buf.count(lo, hi) < hi - lo:
                return False
        return True

    def _has_data_from(self, t: float) -> bool:
        """Some stream holds samples at or after gateway time ``t``."""
        for m, buf in self._buffers.items():
            if self._clock(m).to_gateway(buf.end_time) > t:
                return True
        return False

    def _close_ready(self) -> list[FusedWindow]:
        out: list[FusedWindow] = []
        win = self.windower
        while win.next_index is not None:
            w = win.next_index
            t_start, _ = win.bounds(w)
            if win.timed_out(w, self._now):
                if not self._has_data_from(t_start):
                    win.next_index = max(w + 1, win.first_open(self._now))
                    continue
            elif not self._complete(w):
                break
            fw = self._emit(w)
            win.closed(w)
            if fw is not None:
                out.append(fw)
        return out

    def _close_all(self) -> list[FusedWindow]:
        out: list[FusedWindow] = []
        win = self.windower
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
        t_start, t_end = self.windower.bounds(w)
        k, cfg = self.k, self.config
        matrix = np.zeros((k, self.C), np.float32)
        mask = np.zeros((k, self.C), np.bool_)
        blocks: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        quality: dict[str, dict[str, float]] = {}
        lateness = self._now - t_end if math.isfinite(self._now) else 0.0
        present = [m for m in cfg.modalities if m in self._buffers]
        valid = np.zeros((len(present), k), np.bool_)
        if present:
            params = self._params
            for i, m in enumerate(present):
                buf = self._buffers[m]
                p0, step = self._needed(buf, self._clock(m), t_start)
                max_missing = math.floor(cfg.max_gap_s * buf.fs + 1e-9)
                params[i] = (p0, step, self.columns[m][0], max_missing)
            idx, wt = self._scratch
            align_window(
                tuple(self._buffers[m].values for m in present),
                tuple(self._buffers[m].slot_pos for m in present),
                params[: len(present)],
                matrix,
                valid,
                self._n_ok,
                idx,
                wt,
            )
        for i, m in enumerate(present):
            n_ok = int(self._n_ok[i])
            if n_ok == 0:
                continue
            col0, ch = self.columns[m]
            mask[:, col0 : col0 + ch] = valid[i][:, None]
            blocks[m] = matrix[:, col0 : col0 + ch].copy()
            masks[m] = valid[i]
            quality[m] = {"gap_fraction": 1.0 - n_ok / k, "lateness_s": lateness}
        if len(blocks) < cfg.min_modalities or not all(
            m in blocks for m in cfg.required_modalities
        ):
            self.counters["windows_dropped"] += 1
            return None
        self.counters["windows"] += 1
        window = Window(
            device=self.device,
            t_start=t_start,
            t_end=t_end,
            fs=cfg.grid_fs,
            blocks=blocks,
            masks=masks,
            quality=quality,
            index=w,
        )
        return FusedWindow(window=window, matrix=matrix, channels=self.channels, mask=mask)
