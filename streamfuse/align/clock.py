"""Device clock -> gateway clock, estimated causally from (device time, arrival time) pairs.

Model: ``gateway(d) = d + a + b * (d - d_ref)``, ``a`` the offset at ``d_ref`` (the first
device time seen in the current epoch) and ``b`` the drift (80 ppm -> ``b = 8e-5``).

Estimation. Every observation is the device time at which a chunk could first be sent (the end
of its span, ``t0 + n / fs``) and its arrival on the gateway clock. Network delay is one-sided
(it only makes arrivals later), so the apparent offset ``y = arrival - d`` is the true offset
plus a non-negative delay. Points are reduced to the minimum ``y`` per ``bin_s`` of device time
over a sliding ``horizon_s`` (bounded memory, forgets old drift), and the line is the lower
envelope of those minima (:mod:`streamfuse.kernels.clockfit`): the LP minimum-delay skew
estimator of Moon et al. (1999). Until the bins span ``min_span_s`` the drift is held at 0 and
the offset is the running minimum of ``y``.

What cannot be observed: a *constant* part of the network delay (the minimum delay) is
indistinguishable from clock offset, so "gateway time" here means "device time mapped by the
true offset and drift, plus the path's minimum delay". Tests define their truth that way.

Clock jumps (device reboot, clock set): an observation whose residual against the current line
exceeds ``jump_s`` in either direction is held as an *outlier*. When at least ``confirm``
outliers agree with each other (apparent offsets within ``jump_s / 10``) and those have kept
arriving for ``confirm_s`` seconds (a backlog delivered in a burst after an outage is late data,
not a jump: its observations agree only within an instant of device time, all arriving at
once), the model resets to a new epoch fitted on them; a single in-model
observation instead releases them (a network stall or a stale redelivery, not a jump). The
epoch's mapping is kept as :attr:`ClockModel.retired`, so the data stored under it can be
closed under it (mapped by the new epoch, data from before a backward jump of 1e5 s lay 1e5 s
in the future and the aligner walked every window up to it).
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left, bisect_right, insort

import numpy as np

from ..kernels.clockfit import envelope_fit
from ..kernels.ring import EMPTY

log = logging.getLogger("streamfuse.align.clock")

OK = "ok"
OUTLIER = "outlier"
RESET = "reset"


class ClockMapping:
    """A clock model's mapping frozen as it stood (what :attr:`ClockModel.retired` holds: the
    last epoch's, so the windows of data stored under it can still be closed under it)."""

    __slots__ = ("d_ref", "offset", "drift", "version")

    def __init__(self, d_ref: float, offset: float, drift: float, version: int) -> None:
        self.d_ref = d_ref
        self.offset = offset
        self.drift = drift
        self.version = version

    def to_gateway(self, t_device: float) -> float:
        return t_device + self.offset + self.drift * (t_device - self.d_ref)

    def to_device(self, t_gateway: float) -> float:
        return self.d_ref + (t_gateway - self.d_ref - self.offset) / (1.0 + self.drift)


class ClockModel:
    """Causal minimum-delay clock model of one device clock.

    Parameters
    ----------
    bin_s : float
        Device-time width of the bins whose minima feed the envelope fit.
    horizon_s : float
        How much device time the fit looks back.
    min_span_s : float
        Bins must span this long before drift is estimated.
    jump_s : float
        Residual beyond which an observation is treated as a possible clock jump.
    confirm : int
        Agreeing outliers needed to accept a jump.
    confirm_s : float
        Gateway time over which those outliers must have arrived.
    max_drift : float
        Largest plausible drift (0.01: 1 %, a hundred times a cheap crystal's). A point whose
        fit would put the drift beyond it is left out of the fit and counted in
        ``implausible``: a stale redelivery from before the epoch, released as "late but
        in the past", once tilted the line to a drift of -1, and with it time itself.

    Examples
    --------
    >>> m = ClockModel()
    >>> for i in range(200):
    ...     d = 0.25 * (i + 1)
    ...     _ = m.observe(d, 2.0 + d * (1 + 80e-6) + 0.001 * (i % 7))
    >>> round((m.to_gateway(60.0) - (2.0 + 60.0 * (1 + 80e-6))) * 1e6)
    0
    """

    def __init__(
        self,
        *,
        bin_s: float = 0.5,
        horizon_s: float = 300.0,
        min_span_s: float = 10.0,
        jump_s: float = 1.0,
        confirm: int = 6,
        confirm_s: float = 1.0,
        max_drift: float = 0.01,
    ) -> None:
        self.bin_s = bin_s
        self.horizon_s = horizon_s
        self.min_span_s = min_span_s
        self.jump_s = jump_s
        self.confirm = confirm
        self.confirm_s = confirm_s
        self.max_drift = max_drift
        #: points left out because their fit would have had an implausible drift
        self.implausible = 0
        nb = max(2, int(math.ceil(horizon_s / bin_s)))
        self._bx = np.zeros(nb)
        self._by = np.zeros(nb)
        self._bid = np.full(nb, EMPTY, np.int64)
        self._xs = np.zeros(nb)
        self._ys = np.zeros(nb)
        self._hull = np.zeros(nb, np.int64)
        # copies of the bins' ids and minima for the per-observation test (indexing an
        # array.array is several times cheaper than a NumPy scalar read); not lists: a list's
        # every entry is visited by each full garbage collection, an array.array's never
        self._bid_list = array("q", [int(EMPTY)]) * nb
        self._by_list = array("d", [0.0]) * nb
        self._newest = int(EMPTY)
        self._pending: list[tuple[float, float]] = []
        self._pending_ys: list[float] = []  # their apparent offsets (arrival - d), sorted
        self.resets = 0
        self.epoch = 0
        self.d_ref = math.nan
        self.offset = math.nan
        self.drift = 0.0
        self._ymin = math.inf
        #: the previous epoch's mapping, from the last reset on (None before any)
        self.retired: ClockMapping | None = None
        #: moves whenever ``offset``, ``drift`` or ``d_ref`` may have changed (callers cache
        #: what they derive from the mapping against it)
        self.version = 0

    # -- mapping -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once at least one observation has been accepted."""
        return math.isfinite(self.offset)

    def to_gateway(self, t_device: float) -> float:
        """Map a device time to the gateway clock (NaN before the first observation)."""
        return t_device + self.offset + self.drift * (t_device - self.d_ref)

    def to_device(self, t_gateway: float) -> float:
        """Inverse of :meth:`to_gateway`."""
        return self.d_ref + (t_gateway - self.d_ref - self.offset) / (1.0 + self.drift)

    def residual(self, t_device: float, arrival: float) -> float:
        """How much later than the model predicts ``arrival`` is (the apparent delay)."""
        return arrival - self.to_gateway(t_device)

    # -- estimation ----------------------------------------------------------------------
    def observe(self, t_device: float, arrival: float) -> str:
        """Take one (device time, arrival) pair; returns ``"ok"``, ``"outlier"`` or ``"reset"``.

        ``"outlier"``: held as a possible clock jump (the caller should hold the chunk too);
        ``"ok"`` after outliers releases them (already folded into the fit); ``"reset"``:
        a new epoch began, fitted on the held observations and this one.
        """
        offset = self.offset
        if not math.isfinite(offset):  # not ready
            self._start_epoch(t_device)
            self._add(t_device, arrival)
            return OK
        # the residual (arrival - to_gateway(t_device)), written out: this runs per chunk
        r = arrival - (t_device + offset + self.drift * (t_device - self.d_ref))
        if abs(r) <= self.jump_s:
            if self._pending:
                for d, a in self._pending:
                    if self.residual(d, a) > 0:
                        self._add(d, a)
                self._pending.clear()
                self._pending_ys.clear()
            # _add(t_device, arrival), its two early returns written out: most observations
            # are no new bin minimum and change nothing
            x = t_device - self.d_ref
            y = arrival - t_device
            k = math.floor(x / self.bin_s)
            bid = self._bid_list
            if k > self._newest - len(bid):
                s = k % len(bid)
                if bid[s] != k or self._by_list[s] > y:
                    self._fit(s, k, x, y, t_device, arrival)
            return OK
        self._pending.append((t_device, arrival))
        ys = self._pending_ys  # the held apparent offsets, kept sorted
        insort(ys, arrival - t_device)
        if len(self._pending) > 8 * self.confirm:
            d0, a0 = self._pending.pop(0)
            del ys[bisect_left(ys, a0 - d0)]
        # how many agree with the smallest: y - ys[0] grows with y, so they are a prefix
        y0 = ys[0]
        near = self.jump_s / 10
        agree = bisect_right(ys, near, key=lambda y: y - y0)
        # the agreeing ones must themselves have kept arriving (a backlog delivered in a burst
        # holds observations of one instant that agree, all arriving at once: not a jump)
        span = 0.0
        if agree >= self.confirm:
            times = [a for d, a in self._pending if (a - d) - y0 <= near]
            span = max(times) - min(times)
        if agree >= self.confirm and span >= self.confirm_s:
            held = self._pending
            self._pending = []
            self._pending_ys = []
            self.retired = ClockMapping(self.d_ref, self.offset, self.drift, self.version)
            self._clear()
            self._start_epoch(min(d for d, _ in held))
            for d, a in held:
                self._add(d, a)
            self.resets += 1
            self.epoch += 1
            log.info(
                "clock jump accepted: new offset %.6f s after %d agreeing observations",
                self.offset,
                len(held),
            )
            return RESET
        return OUTLIER

    def _clear(self) -> None:
        self._bid.fill(EMPTY)
        self._bid_list = array("q", [int(EMPTY)]) * len(self._bid_list)
        self._newest = int(EMPTY)
        self.offset = math.nan
        self.drift = 0.0
        self._ymin = math.inf
        self.version += 1

    def _start_epoch(self, t_device: float) -> None:
        self.d_ref = t_device
        self.version += 1

    def _add(self, t_device: float, arrival: float) -> None:
        x = t_device - self.d_ref
        y = arrival - t_device
        k = math.floor(x / self.bin_s)
        bid = self._bid_list
        nb = len(bid)
        if k <= self._newest - nb:
            return  # older than the horizon
        s = k % nb
        if bid[s] == k and self._by_list[s] <= y:
            return  # not a new minimum: the fit cannot change
        self._fit(s, k, x, y, t_device, arrival)

    def _fit(self, s: int, k: int, x: float, y: float, t_device: float, arrival: float) -> None:
        """The rest of :meth:`_add`: ``y`` is a new minimum of bin ``k`` (slot ``s``); refit."""
        bid = self._bid_list
        before = (bid[s], self._by_list[s], self._bx[s], self._by[s], self._newest)
        bid[s] = k
        self._by_list[s] = y
        self._bid[s] = k
        self._bx[s] = x
        self._by[s] = y
        self._newest = max(self._newest, k)
        a, b, n, span = envelope_fit(
            self._bx, self._by, self._bid, self._newest, self._xs, self._ys, self._hull
        )
        if span >= self.min_span_s and not abs(b) <= self.max_drift:
            # leave the point out: restore its bin as it was (the fit is what it was)
            bid[s], self._by_list[s], self._bx[s], self._by[s], self._newest = before
            self._bid[s] = bid[s]
            self.implausible += 1
            if self.implausible == 1:
                log.warning(
                    "clock fit: a point (device time %.3f, arrival %.3f) would make the drift "
                    "%.4g; left out (further ones are only counted)", t_device, arrival, b
                )
            return
        if span < self.min_span_s:
            # offset only: the minimum apparent offset seen in this epoch so far
            self._ymin = min(self._ymin, y)
            self.offset, self.drift = self._ymin, 0.0
        else:
            self.offset, self.drift = float(a), float(b)
        self.version += 1
