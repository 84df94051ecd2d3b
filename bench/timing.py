"""What the benchmark files read of a pytest-benchmark result."""

from __future__ import annotations

import math
from typing import Any


def median_s(benchmark: Any) -> float:
    """The median round in seconds; NaN under ``--benchmark-disable`` (the function then ran
    once, untimed, and only the checks beside the timing mean anything)."""
    stats = benchmark.stats
    return float(stats.stats.median) if stats is not None else math.nan
