"""What goes wrong between a wearable and the gateway: clocks, network delay, loss, duplicates.

Seeded per device and per stream. Defaults (for the demo) are harmless: device clocks agree with
the gateway and the only fault is a small one-sided network jitter (mean 2 ms). Turn faults on
with a :class:`FaultProfile`, e.g. ``FaultProfile(clock_offset_s=2.0, drift_ppm=80.0,
jitter_mean_s=0.02)`` (the fixed parts) or the ``*_spread`` fields (each device draws its own
value uniformly within ± spread).

Times: a :class:`DeviceClock` maps gateway time ``t`` to device time
``offset + (1 + drift_ppm * 1e-6) * t`` and back.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from streamfuse.errors import ConfigError

log = logging.getLogger("streamfuse.simulators.faults")

JITTER_DISTS: tuple[str, ...] = ("lognormal", "pareto", "exponential", "none")


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """Which faults a simulated device suffers, and how badly.

    Parameters
    ----------
    clock_offset_s, clock_offset_spread_s
        Device clock offset: the fixed part plus a per-device uniform draw in ± spread.
    drift_ppm, drift_spread_ppm
        Device clock rate error in parts per million (fixed part + uniform ± spread).
    shared_clock
        True: all streams of a device share one clock (a typical single-MCU wearable).
        False: each stream (and the label publisher) draws its own offset and drift.
    jitter_mean_s
        Mean one-sided network delay added to every message (never negative).
    jitter_dist
        ``"lognormal"`` (heavy-tailed, shape = sigma of the log), ``"pareto"`` (Lomax,
        shape = tail index alpha > 1), ``"exponential"`` or ``"none"``.
    jitter_shape
        The shape parameter above (ignored by exponential and none).
    base_delay_s
        A constant delay under the jitter (the fastest possible transit).
    loss
        Fraction of data messages lost (their sequence numbers are consumed).
    loss_burst
        Mean length of a run of lost messages (1: independent losses; > 1: Gilbert bursts).
    duplicate
        Fraction of data messages delivered twice (QoS 1 style redelivery).
    duplicate_delay_s
        The second copy leaves up to this long (uniform) after the first.
    reorder
        Fraction of data messages held back so that later ones overtake them.
    reorder_hold_s
        A held message waits an extra uniform ``[hold/2, hold]`` seconds.
    label_delay_s
        Labels (ground truth) are published this much later than the second they cover ends.
    clock_jump_s, clock_jump_at_s
        The device's timestamps jump by ``clock_jump_s`` (either sign: a clock set forward or
        back, a restart at 0 is ``-t``) for every message made at or after gateway time
        ``clock_jump_at_s`` (``inf``: never). Sampling goes on unchanged; only the stamps move.
    outage_start_s, outage_end_s
        The gateway is unreachable over this span of gateway time (``inf``: never): every
        message sent inside it is queued, as a broker holds a persistent session's QoS 1
        messages, and delivered in one burst as the outage ends, in send order (squeezed a
        thousandfold into its last instants: 20 s of messages arrive in the last 20 ms).
    """

    clock_offset_s: float = 0.0
    clock_offset_spread_s: float = 0.0
    drift_ppm: float = 0.0
    drift_spread_ppm: float = 0.0
    shared_clock: bool = True
    jitter_mean_s: float = 0.002
    jitter_dist: str = "lognormal"
    jitter_shape: float = 1.0
    base_delay_s: float = 0.0
    loss: float = 0.0
    loss_burst: float = 1.0
    duplicate: float = 0.0
    duplicate_delay_s: float = 0.2
    reorder: float = 0.0
    reorder_hold_s: float = 0.4
    label_delay_s: float = 0.0
    clock_jump_s: float = 0.0
    clock_jump_at_s: float = math.inf
    outage_start_s: float = math.inf
    outage_end_s: float = math.inf

    def __post_init__(self) -> None:
        for name in (
            "clock_offset_s",
            "drift_ppm",
            "jitter_mean_s",
            "jitter_shape",
            "base_delay_s",
            "duplicate_delay_s",
            "reorder_hold_s",
            "label_delay_s",
            "clock_offset_spread_s",
            "drift_spread_ppm",
            "clock_jump_s",
        ):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v)):
                raise ConfigError(f"FaultProfile.{name} must be a finite number, got {v!r}")
            if name not in ("clock_offset_s", "drift_ppm", "clock_jump_s") and v < 0:
                raise ConfigError(f"FaultProfile.{name} must be >= 0, got {v!r}")
        for name in ("clock_jump_at_s", "outage_start_s", "outage_end_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v == v and v != -math.inf):
                raise ConfigError(f"FaultProfile.{name} must be a time or inf, got {v!r}")
        if self.outage_end_s < self.outage_start_s:
            raise ConfigError(
                f"an outage ends after it starts, got [{self.outage_start_s}, "
                f"{self.outage_end_s})"
            )
        if abs(self.drift_ppm) + self.drift_spread_ppm >= 1e5:
            raise ConfigError("drift beyond ±100000 ppm is not a clock; use ppm, e.g. 80.0")
        for name in ("loss", "duplicate", "reorder"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v < 1.0):
                raise ConfigError(f"FaultProfile.{name} is a probability in [0, 1), got {v!r}")
        if self.loss_burst < 1.0:
            raise ConfigError(f"loss_burst is a mean run length >= 1, got {self.loss_burst}")
        if self.jitter_dist not in JITTER_DISTS:
            raise ConfigError(
                f"jitter_dist {self.jitter_dist!r} unknown; use one of {JITTER_DISTS}"
            )
        if self.jitter_dist == "pareto" and self.jitter_shape <= 1.0:
            raise ConfigError(
                f"a Pareto jitter needs shape (tail index) > 1 for a finite mean, "
                f"got {self.jitter_shape}"
            )

    @classmethod
    def ideal(cls) -> FaultProfile:
        """No faults at all: perfect clocks, zero delay."""
        return cls(jitter_mean_s=0.0, jitter_dist="none")

    @classmethod
    def harsh(cls) -> FaultProfile:
        """Everything on: ±2 s offsets, ±100 ppm drift, 20 ms heavy-tailed jitter, 1 % each of
        loss, duplicates and reordering."""
        return cls(
            clock_offset_spread_s=2.0,
            drift_spread_ppm=100.0,
            jitter_mean_s=0.02,
            loss=0.01,
            duplicate=0.01,
            reorder=0.01,
        )


@dataclass(frozen=True, slots=True)
class DeviceClock:
    """A device clock: ``device = offset_s + (1 + drift_ppm * 1e-6) * gateway``."""

    offset_s: float = 0.0
    drift_ppm: float = 0.0

    @property
    def rate(self) -> float:
        return 1.0 + self.drift_ppm * 1e-6

    def to_device(self, t_gateway: float) -> float:
        """Device clock reading at gateway time ``t_gateway``."""
        return self.offset_s + self.rate * t_gateway

    def to_gateway(self, t_device: float) -> float:
        """Gateway time at which the device clock reads ``t_device``."""
        return (t_device - self.offset_s) / self.rate

    @classmethod
    def draw(cls, profile: FaultProfile, rng: np.random.Generator) -> DeviceClock:
        """This device's clock under ``profile`` (fixed parts + uniform ± spreads)."""
        off = profile.clock_offset_s + profile.clock_offset_spread_s * float(rng.uniform(-1, 1))
        ppm = profile.drift_ppm + profile.drift_spread_ppm * float(rng.uniform(-1, 1))
        return cls(off, ppm)


@dataclass(slots=True)
class FaultCounts:
    """What a stream's faults did so far."""

    sent: int = 0  # messages offered by the device
    lost: int = 0
    duplicated: int = 0
    held: int = 0  # held back for reordering


_BATCH = 256
#: how much an outage's queued messages are squeezed when delivered at its end
OUTAGE_SQUEEZE = 1e-3


@dataclass(slots=True)
class StreamFaults:
    """The network path of one stream: turns a ready time into zero, one or two send times.

    Random numbers are drawn in batches (cheap per message) from the stream's own generator.
    With ``record=True`` every jitter draw is kept in :attr:`delays` (for tests).
    """

    profile: FaultProfile
    rng: np.random.Generator
    data: bool = True  # labels get jitter and label_delay_s only
    record: bool = False
    counts: FaultCounts = field(default_factory=FaultCounts)
    delays: list[float] = field(default_factory=list)
    _i: int = _BATCH
    _u: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    _jit: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    _bad: bool = False

    def _jitter(self, n: int) -> np.ndarray:
        p = self.profile
        m = p.jitter_mean_s
        if p.jitter_dist == "none" or m == 0.0:
            return np.zeros(n)
        if p.jitter_dist == "lognormal":
            s = p.jitter_shape
            return self.rng.lognormal(math.log(m) - 0.5 * s * s, s, n)
        if p.jitter_dist == "pareto":
            a = p.jitter_shape
            return self.rng.pareto(a, n) * (m * (a - 1.0))
        return self.rng.exponential(m, n)

    def _refill(self) -> None:
        # Columns: loss, duplicate, reorder, duplicate delay, hold fraction.
        self._u = self.rng.random((_BATCH, 5))
        self._jit = self._jitter(2 * _BATCH).reshape(_BATCH, 2) + self.profile.base_delay_s
        self._i = 0

    def send_times(self, ready: float) -> list[float]:
        """Gateway times at which a message ready at ``ready`` reaches the gateway (empty when
        it is lost; just before ``outage_end_s`` when sent during the outage)."""
        times = self._send_times(ready)
        p = self.profile
        if p.outage_start_s == math.inf:
            return times
        start, end = p.outage_start_s, p.outage_end_s
        # squeezed into the outage's last instants, so the order of all messages is kept
        return [end - (end - t) * OUTAGE_SQUEEZE if start <= t < end else t for t in times]

    def _send_times(self, ready: float) -> list[float]:
        if self._i >= _BATCH:
            self._refill()
        i = self._i
        self._i += 1
        p = self.profile
        u = self._u[i]
        jit = self._jit[i]
        self.counts.sent += 1
        if not self.data:
            if self.record:
                self.delays.append(float(jit[0]))
            return [ready + p.label_delay_s + float(jit[0])]
        if p.loss > 0.0:
            if p.loss_burst <= 1.0:
                lost = u[0] < p.loss
            else:
                lost = self._bad
                p_exit = 1.0 / p.loss_burst
                p_enter = p.loss * p_exit / (1.0 - p.loss)
                self._bad = u[0] < ((1.0 - p_exit) if self._bad else p_enter)
            if lost:
                self.counts.lost += 1
                return []
        if self.record:
            self.delays.append(float(jit[0]))
        t = ready + float(jit[0])
        if p.reorder > 0.0 and u[2] < p.reorder:
            self.counts.held += 1
            t += p.reorder_hold_s * (0.5 + 0.5 * float(u[4]))
        if p.duplicate > 0.0 and u[1] < p.duplicate:
            self.counts.duplicated += 1
            return [t, t + float(jit[1]) + p.duplicate_delay_s * float(u[3])]
        return [t]
