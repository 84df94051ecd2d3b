"""GOLDEN MASTER, not a reference: the per-chunk bookkeeping of ``streamfuse.align`` frozen.

A plain copy of DeviceAligner / ClockModel / StreamBuffer / Windower as they stood at commit
a66a243 (dict lookups per chunk, completeness recomputed for every live stream on every chunk),
before the fast path (issue 8). ``tests/test_align_equivalence.py`` drives it and the real
aligner with the same calls and requires bit-identical windows, counters and clock estimates;
``tests/test_align_clock.py`` replays clock scenarios through its clock model. Do not optimise it
and do not update it to follow the production code: its worth is that it stands still. (Issue 17
changed the rules on purpose: clock epochs keep the previous mapping, jumps and silences cost
bounded work, the drift guard; those rules were written into this copy, as plain loops, in the
same commit as the production change.)

It shares the production Numba kernels (``streamfuse.kernels.ring``, ``clockfit``, ``align``):
what it freezes is the bookkeeping around them. Those kernels are checked against independent
plain-loop references in ``tests/naive.py`` (``naive_resample``, ``naive_lower_envelope``).
"""

from __future__ import annotations


class NaiveWindower:
    def __init__(self, config, phase=0.0):
        self.phase = float(phase)
        self.window_s = float(config.window_s)
        self.hop_s = float(config.hop_s)
        self.lateness_s = float(config.lateness_s)
        self.next_index = None
        self.closed_end = float("-inf")

    def bounds(self, w):
        t0 = self.phase + w * self.hop_s
        return t0, t0 + self.window_s

    def first_containing(self, t):
        import math

        return math.floor((t - self.phase - self.window_s) / self.hop_s) + 1

    def start(self, t_first):
        if self.next_index is None:
            self.next_index = self.first_containing(t_first)

    def timed_out(self, w, now):
        return now >= self.bounds(w)[1] + self.lateness_s

    def first_open(self, now):
        import math

        return math.floor((now - self.phase - self.lateness_s - self.window_s) / self.hop_s) + 1

    def closed(self, w):
        self.closed_end = self.bounds(w)[1]
        self.next_index = w + 1


class NaiveStreamBuffer:
    def __init__(self, channels, fs, origin, retain_s, reorder_s):
        import math

        from streamfuse.kernels.ring import new_ring

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
    def end_time(self):
        return self.origin + self.end_pos / self.fs

    def position(self, t_device):
        return (t_device - self.origin) * self.fs

    def put(self, t0, data):
        import numpy as np

        from streamfuse.kernels.ring import ring_write

        n = int(data.shape[0])
        cap = int(self.values.shape[0])
        if n > cap // 2:
            return "too_long"
        pos0 = int(round((t0 - self.origin) * self.fs))
        end = pos0 + n
        if end <= self.end_pos - self.reorder or pos0 < self.end_pos - cap:
            return "stale"
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
        return "ok"

    def count(self, lo, hi):
        import numpy as np

        from streamfuse.kernels.ring import ring_count

        return int(ring_count(self.slot_pos, np.int64(lo), np.int64(hi)))


class NaiveClockModel:
    def __init__(self, *, bin_s=0.5, horizon_s=300.0, min_span_s=10.0, jump_s=1.0, confirm=6,
                 confirm_s=1.0, max_drift=0.01):
        import math

        import numpy as np

        from streamfuse.kernels.ring import EMPTY

        self.bin_s = bin_s
        self.min_span_s = min_span_s
        self.jump_s = jump_s
        self.confirm = confirm
        self.confirm_s = confirm_s
        self.max_drift = max_drift
        self.previous = None  # (d_ref, offset, drift) of the epoch before the last reset
        nb = max(2, int(math.ceil(horizon_s / bin_s)))
        self._bx = np.zeros(nb)
        self._by = np.zeros(nb)
        self._bid = np.full(nb, EMPTY, np.int64)
        self._xs = np.zeros(nb)
        self._ys = np.zeros(nb)
        self._hull = np.zeros(nb, np.int64)
        self._newest = int(EMPTY)
        self._pending = []
        self.resets = 0
        self.epoch = 0
        self.d_ref = math.nan
        self.offset = math.nan
        self.drift = 0.0
        self._ymin = math.inf

    @property
    def ready(self):
        import math

        return math.isfinite(self.offset)

    def to_gateway(self, t_device):
        return t_device + self.offset + self.drift * (t_device - self.d_ref)

    def to_device(self, t_gateway):
        return self.d_ref + (t_gateway - self.d_ref - self.offset) / (1.0 + self.drift)

    def residual(self, t_device, arrival):
        return arrival - self.to_gateway(t_device)

    def observe(self, t_device, arrival):
        if not self.ready:
            self.d_ref = t_device
            self._add(t_device, arrival)
            return "ok"
        r = self.residual(t_device, arrival)
        if abs(r) <= self.jump_s:
            for d, a in self._pending:
                if self.residual(d, a) > 0:
                    self._add(d, a)
            self._pending.clear()
            self._add(t_device, arrival)
            return "ok"
        self._pending.append((t_device, arrival))
        if len(self._pending) > 8 * self.confirm:
            del self._pending[0]
        ys = sorted(a - d for d, a in self._pending)
        agree = sum(1 for y in ys if y - ys[0] <= self.jump_s / 10)
        # the span of arrival times of the agreeing ones only
        times = [a for d, a in self._pending if (a - d) - ys[0] <= self.jump_s / 10]
        span = max(times) - min(times)
        if agree >= self.confirm and span >= self.confirm_s:
            import math

            from streamfuse.kernels.ring import EMPTY

            held = self._pending
            self._pending = []
            self.previous = (self.d_ref, self.offset, self.drift)
            self._bid.fill(EMPTY)
            self._newest = int(EMPTY)
            self.offset = math.nan
            self.drift = 0.0
            self._ymin = math.inf
            self.d_ref = min(d for d, _ in held)
            for d, a in held:
                self._add(d, a)
            self.resets += 1
            self.epoch += 1
            return "reset"
        return "outlier"

    def _add(self, t_device, arrival):
        import math

        from streamfuse.kernels.clockfit import envelope_fit

        x = t_device - self.d_ref
        y = arrival - t_device
        k = int(math.floor(x / self.bin_s))
        nb = self._bid.shape[0]
        if k <= self._newest - nb:
            return
        s = k % nb
        if self._bid[s] == k and self._by[s] <= y:
            return
        saved = (self._bid.copy(), self._bx.copy(), self._by.copy(), self._newest)
        self._bid[s] = k
        self._bx[s] = x
        self._by[s] = y
        self._newest = max(self._newest, k)
        a, b, n, span = envelope_fit(
            self._bx, self._by, self._bid, self._newest, self._xs, self._ys, self._hull
        )
        if span >= self.min_span_s and abs(b) > self.max_drift:
            # an implausible drift: the point stays out, the bins as they were
            self._bid, self._bx, self._by, self._newest = saved
            return
        if span < self.min_span_s:
            self._ymin = min(self._ymin, y)
            self.offset, self.drift = self._ymin, 0.0
        else:
            self.offset, self.drift = float(a), float(b)


NAIVE_ALIGN_COUNTERS = (
    "chunks", "duplicates", "gaps", "gap_samples", "late_chunks", "reordered", "overlaps",
    "clock_resets", "clock_outliers", "rejected", "windows", "windows_dropped", "windows_empty",
    "held_dropped",
)


class _NaiveOldEpoch:
    """A retired epoch's mapping (d_ref, offset, drift), mapped the same way."""

    def __init__(self, d_ref, offset, drift):
        self.d_ref, self.offset, self.drift = d_ref, offset, drift

    def to_gateway(self, t_device):
        return t_device + self.offset + self.drift * (t_device - self.d_ref)

    def to_device(self, t_gateway):
        return self.d_ref + (t_gateway - self.d_ref - self.offset) / (1.0 + self.drift)


class NaiveDeviceAligner:
    """streamfuse.align.DeviceAligner as of a66a243 (same public interface), with issue 17's
    changes: a clock jump closes the old epoch's windows under the old epoch's mapping;
    windows without data are counted (``windows_empty``); a timed-out window that no stored
    data reaches waits for data instead of being passed over; held chunks are replayed each at
    the time the clock says it would have arrived, at most 120 s of them (at the configured
    rates) held; a chunk claiming over twice its configured rate is refused. It walks every
    window one by one."""

    def __init__(self, device, config, *, clock_per_stream=False):
        import math
        from collections import OrderedDict

        import numpy as np

        from streamfuse.align.windower import window_phase
        from streamfuse.kernels.align import new_scratch

        self.device = device
        self.config = config
        self.clock_per_stream = clock_per_stream
        self.windower = NaiveWindower(config, window_phase(device, config))
        self.k = config.window_samples
        self.counters = dict.fromkeys(NAIVE_ALIGN_COUNTERS, 0)
        cols = {}
        names = []
        for name, spec in config.modalities.items():
            cols[name] = (len(names), spec.channels)
            names.extend(f"{name}:{ch}" for ch in spec.channel_names)
        self.columns = cols
        self.channels = tuple(names)
        self.C = len(names)
        self._retain_s = (
            config.window_s + 2 * config.hop_s + config.lateness_s + config.reorder_s + 2.0
        )
        self._clocks = {}
        self._buffers = {}
        self._seen = {m: OrderedDict() for m in config.modalities}
        self._last_arrival = {}
        self._held = []
        self._now = -math.inf
        self._old_epoch = {}  # modality -> _NaiveOldEpoch while the old epoch's windows close
        self._virtual_now = math.inf  # while replaying held chunks
        self._scratch = new_scratch(self.k)
        self._params = np.zeros((len(config.modalities), 4))
        self._n_ok = np.zeros(len(config.modalities), np.int64)

    def add(self, chunk):
        import math

        import numpy as np

        c = self.counters
        c["chunks"] += 1
        spec = self.config.modalities.get(chunk.modality)
        d = chunk.data
        if spec is None or not (
            isinstance(d, np.ndarray)
            and d.ndim == 2
            and d.shape[0] > 0
            and d.shape[1] == spec.channels
            and math.isfinite(chunk.t0)
            and math.isfinite(chunk.arrival)
            and math.isfinite(chunk.fs)
            and chunk.fs > 0
            and chunk.fs <= 2.0 * spec.fs
        ):
            c["rejected"] += 1
            return []
        key = (chunk.seq, float(chunk.t0), chunk.n)
        seen = self._seen[chunk.modality]
        if key in seen:
            c["duplicates"] += 1
            return []
        seen[key] = None
        if len(seen) > 4096:
            seen.popitem(last=False)
        clock = self._clock(chunk.modality)
        status = clock.observe(chunk.t0 + chunk.duration, chunk.arrival)
        if status == "outlier":
            c["clock_outliers"] += 1
            self._held.append(chunk)
            limit = math.ceil(120.0 * sum(s.fs for s in self.config.modalities.values()))
            while sum(h.data.shape[0] for h in self._held) > limit:
                del self._held[0]
                c["held_dropped"] += 1
            return []
        out = []
        if status == "reset":
            c["clock_resets"] += 1
            sharing = (chunk.modality,) if self.clock_per_stream else tuple(self._buffers)
            old = _NaiveOldEpoch(*clock.previous)
            self._old_epoch = {m: old for m in sharing}
            out.extend(self._close_all())
            self._old_epoch = {}
            for m in sharing:
                self._buffers.pop(m, None)
        held, self._held = self._held, []
        for h in held:
            self._virtual_now = self._clock(h.modality).to_gateway(h.t0 + h.duration)
            out.extend(self._ingest(h))
        self._virtual_now = math.inf
        out.extend(self._ingest(chunk))
        return out

    def advance(self, now):
        import math

        if math.isfinite(now):
            self._now = max(self._now, now)
        return self._close_ready()

    def sync(self, now):
        import math

        if math.isfinite(now) and now > self._now:
            self._now = now

    def next_deadline(self):
        import math

        win = self.windower
        if win.next_index is None:
            return math.inf
        t = win.bounds(win.next_index)[1] + win.lateness_s
        if self._now >= t and not self._has_data_from(win.bounds(win.next_index)[0]):
            return math.inf
        silence = self.config.silence_s
        for arrival in self._last_arrival.values():
            quiet = arrival + silence - 1e-6
            if self._now <= quiet < t:
                t = quiet
        return t

    def flush(self):
        self.counters["held_dropped"] += len(self._held)
        self._held = []
        return self._close_all()

    def to_gateway(self, t_device):
        import math

        for clock in self._clocks.values():
            if clock.ready:
                return clock.to_gateway(t_device)
        return math.nan

    def _clock(self, modality):
        if modality in self._old_epoch:
            return self._old_epoch[modality]
        key = modality if self.clock_per_stream else ""
        clock = self._clocks.get(key)
        if clock is None:
            clock = self._clocks[key] = NaiveClockModel()
        return clock

    def _ingest(self, chunk):
        import numpy as np

        m = chunk.modality
        c = self.counters
        self._now = max(self._now, chunk.arrival)
        clock = self._clock(m)
        buf = self._buffers.get(m)
        if buf is None or abs(buf.fs - chunk.fs) > 1e-9 * chunk.fs:
            buf = NaiveStreamBuffer(
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
        if status != "ok":
            if status == "stale":
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

    def _needed(self, buf, clock, t_start):
        p0 = buf.position(clock.to_device(t_start))
        step = buf.fs / (self.config.grid_fs * (1.0 + clock.drift))
        return p0, step

    def _complete(self, w):
        import math

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

    def _has_data_from(self, t):
        for m, buf in self._buffers.items():
            if self._clock(m).to_gateway(buf.end_time) > t:
                return True
        return False

    def _close_ready(self):
        out = []
        win = self.windower
        while win.next_index is not None:
            w = win.next_index
            t_start, _ = win.bounds(w)
            if win.timed_out(w, min(self._now, self._virtual_now)):
                if not self._has_data_from(t_start):
                    break
            elif not self._complete(w):
                break
            fw = self._emit(w)
            win.closed(w)
            if fw is not None:
                out.append(fw)
        return out

    def _close_all(self):
        out = []
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

    def _emit(self, w):
        import math

        import numpy as np

        from streamfuse.kernels.align import align_window
        from streamfuse.types import FusedWindow, Window

        t_start, t_end = self.windower.bounds(w)
        k, cfg = self.k, self.config
        matrix = np.zeros((k, self.C), np.float32)
        mask = np.zeros((k, self.C), np.bool_)
        blocks = {}
        masks = {}
        quality = {}
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
            self.counters["windows_dropped" if blocks else "windows_empty"] += 1
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
