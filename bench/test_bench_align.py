"""Align + interleave one 10 s window (ECG 1 ch @ 250 Hz, EEG 8 ch @ 256 Hz, ACC 3 ch @ 50 Hz onto
a 256 Hz grid: 2560 x 12 = 30,720 output values), our kernel vs the NumPy reference
(``np.interp`` per channel + ``np.column_stack``), in the same run.

Run: ``/work/venv/bin/pytest bench/test_bench_align.py -p no:cacheprovider``
(ns per output value is in each benchmark's ``extra_info``; the summary prints it too).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from streamfuse.kernels import new_ring, resample_into, ring_write, warmup

GRID_FS, SECONDS = 256.0, 10.0
K = int(GRID_FS * SECONDS)
STREAMS = (("ecg", 250.0, 1), ("eeg", 256.0, 8), ("acc", 50.0, 3))
C = sum(ch for _, _, ch in STREAMS)
DRIFT = 80e-6


def _setup():
    rng = np.random.default_rng(0)
    rings, linear = [], []
    col = 0
    for _, fs, ch in STREAMS:
        n = int(fs * (SECONDS + 4))  # a ring as the aligner holds it, with margin
        x = rng.standard_normal((n, ch)).astype(np.float32)
        values, slot_pos = new_ring(2 * n, ch)
        base = 1_000_000  # absolute positions as in a long-running stream
        ring_write(values, slot_pos, x, np.int64(base))
        t = np.arange(n) / fs  # device time of each sample
        p0 = (1.0 * (1 + DRIFT)) * fs + base  # window starts 1 s into the data
        step = fs / (GRID_FS * (1 + DRIFT))
        rings.append((values, slot_pos, p0, step, np.int64(col), np.zeros(K, np.bool_)))
        linear.append((t, x))
        col += ch
    g = 1.0 * (1 + DRIFT) + np.arange(K) / (GRID_FS * (1 + DRIFT))  # grid in device time
    return rings, linear, g


RINGS, LINEAR, GRID = _setup()
OUT = np.zeros((K, C), np.float32)


def kernel_window(out: np.ndarray) -> np.ndarray:
    for values, slot_pos, p0, step, col0, valid in RINGS:
        resample_into(values, slot_pos, p0, step, out, col0, valid)
    return out


def numpy_window() -> np.ndarray:
    cols = []
    for t, x in LINEAR:
        for c in range(x.shape[1]):
            cols.append(np.interp(GRID, t, x[:, c]))
    return np.column_stack(cols).astype(np.float32)


def test_kernel_matches_numpy_reference() -> None:
    warmup()
    np.testing.assert_allclose(kernel_window(OUT), numpy_window(), rtol=1e-5, atol=1e-5)


def test_zero_allocations_steady_state() -> None:
    """tracemalloc over 200 windows after warm-up: no array-sized allocation, no growth."""
    kernel_window(OUT)
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    for _ in range(200):
        kernel_window(OUT)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before <= 512, after - before  # nothing retained per window
    assert peak - before < 4096, peak - before  # one window's output alone is 122,880 bytes


@pytest.mark.benchmark(group="align-10s-window")
def test_bench_kernel(benchmark) -> None:
    warmup()
    benchmark(kernel_window, OUT)
    benchmark.extra_info["ns_per_value"] = benchmark.stats.stats.median * 1e9 / (K * C)


@pytest.mark.benchmark(group="align-10s-window")
def test_bench_numpy_reference(benchmark) -> None:
    benchmark(numpy_window)
    benchmark.extra_info["ns_per_value"] = benchmark.stats.stats.median * 1e9 / (K * C)
