"""End-to-end latency benchmarking: the ``streamfuse bench`` harness, HDR histograms, reports."""

from .histograms import PERCENTILES, LatencyHistogram

__all__ = ["PERCENTILES", "LatencyHistogram"]
