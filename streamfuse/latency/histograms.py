"""Latency histograms: a thin layer over HdrHistogram (``hdrhistogram`` package).

Values are recorded in whole microseconds from 1 µs to 10 min with three significant digits
(so a reported percentile is within 0.1 % of the true sample value), and summarised in
milliseconds at :data:`PERCENTILES`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import SupportsFloat

from hdrh.histogram import HdrHistogram

log = logging.getLogger("streamfuse.latency.histograms")

#: percentiles every summary reports
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 min
DIGITS = 3


def _key(q: float) -> str:
    return f"p{q:g}"


class LatencyHistogram:
    """Latencies of one kind (a stage, end to end, the broker floor), in seconds in, ms out.

    Negative values (clock reading order across processes on one machine can be a few µs off)
    are counted in :attr:`negative` and recorded as 0; values above the range are clamped to
    the top and counted in :attr:`clamped`; NaN is counted in :attr:`invalid` and dropped.

    Examples
    --------
    >>> h = LatencyHistogram("e2e")
    >>> for ms in range(1, 101):
    ...     h.record(ms / 1000)
    >>> s = h.summary()
    >>> s["count"], round(s["p50"], 1), round(s["p99"], 1), round(s["max"], 1)
    (100, 50.0, 99.0, 100.0)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._h = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
        self.negative = 0
        self.clamped = 0
        self.invalid = 0

    def record(self, seconds: float) -> None:
        """Add one latency given in seconds."""
        if math.isnan(seconds):
            self.invalid += 1
            return
        us = round(seconds * 1e6)
        if us < 0:
            self.negative += 1
            us = 0
        elif us > HIGHEST_US:
            self.clamped += 1
            us = HIGHEST_US
        self._h.record_value(us)

    def record_many(self, seconds: Iterable[SupportsFloat]) -> None:
        """Add every value of an iterable of seconds."""
        for s in seconds:
            self.record(float(s))

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile in milliseconds (NaN when empty)."""
        if self.count == 0:
            return math.nan
        return self._h.get_value_at_percentile(q) / 1e3

    def max_ms(self) -> float:
        return self._h.get_max_value() / 1e3 if self.count else math.nan

    def mean_ms(self) -> float:
        return self._h.get_mean_value() / 1e3 if self.count else math.nan

    def summary(self) -> dict[str, float]:
        """``count``, ``mean``, ``p50`` ... ``p99.9`` and ``max`` (milliseconds)."""
        out: dict[str, float] = {"count": self.count, "mean": self.mean_ms()}
        for q in PERCENTILES:
            out[_key(q)] = self.percentile_ms(q)
        out["max"] = self.max_ms()
        if self.negative or self.clamped or self.invalid:
            out.update(negative=self.negative, clamped=self.clamped, invalid=self.invalid)
        return out

    def curve(self, points: int = 60) -> tuple[list[float], list[float]]:
        """Percentiles (0–99.99…) and their values in ms, for a percentile-distribution plot."""
        if self.count == 0:
            return [], []
        qs = [100.0 * (1.0 - 10 ** (-4.0 * i / (points - 1))) for i in range(points)]
        return qs, [self.percentile_ms(q) for q in qs]

    def encode(self) -> str:
        """The compressed HdrHistogram encoding (base64), for exact re-analysis later."""
        return self._h.encode().decode("ascii")

    @classmethod
    def decode(cls, name: str, text: str) -> LatencyHistogram:
        """Rebuild a histogram from :meth:`encode`'s output."""
        out = cls(name)
        out._h = HdrHistogram.decode(text.encode("ascii"))
        return out
