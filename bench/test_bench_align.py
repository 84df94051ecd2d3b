"""Align + interleave one 10 s window (ECG 1 ch @ 250 Hz, EEG 8 ch @ 256 Hz, ACC 3 ch @ 50 Hz onto
a 256 Hz grid: 2560 x 12 = 30,720 output values), our kernel vs the NumPy reference
(``np.interp`` per channel + ``np.column_stack``), in the same run, plus a memory-bandwidth
yardstick (``np.copyto`` of the window's bytes) measured in the same run.

Run: ``/work/venv/bin/pytest bench/test_bench_align.py -p no:cacheprovider``
(ns per output value is in each benchmark's ``extra_info``; ``--benchmark-json`` keeps it).

Bytes a window must move at least: read every input sample it covers once (ECG 2,560 x 1,
EEG 2,560 x 8, ACC 500 x 3 float32 = 97,808 B) and write the fused matrix (122,880 B), about
220 kB, which fits in this machine's L2 cache; ``test_bench_memcpy_window`` copies that many
bytes as the floor.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from timing import median_s

from streamfuse.kernels import align_window, new_ring, new_scratch, ring_write, warmup
from streamfuse.kernels.align import resample_into

GRID_FS, SECONDS = 256.0, 10.0
K = int(GRID_FS * SECONDS)
STREAMS = (("ecg", 250.0, 1), ("eeg", 256.0, 8), ("acc", 50.0, 3))
C = sum(ch for _, _, ch in STREAMS)
DRIFT = 80e-6
#: float32 values read (each input sample in the window once) + written (the fused matrix)
BYTES = 4 * (sum(int(fs * SECONDS) * ch for _, fs, ch in STREAMS) + K * C)


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
        rings.append((values, slot_pos, p0, step, col))
        linear.append((t, x))
        col += ch
    g = 1.0 * (1 + DRIFT) + np.arange(K) / (GRID_FS * (1 + DRIFT))  # grid in device time
    return rings, linear, g


RINGS, LINEAR, GRID = _setup()
VALUES = tuple(r[0] for r in RINGS)
SLOTS = tuple(r[1] for r in RINGS)
PARAMS = np.array([[p0, step, col0, 0.0] for _, _, p0, step, col0 in RINGS])
OUT = np.zeros((K, C), np.float32)
VALID = np.zeros((len(RINGS), K), np.bool_)
N_OK = np.zeros(len(RINGS), np.int64)
IDX, WT = new_scratch(K)
SRC = np.random.default_rng(1).random(BYTES // 4).astype(np.float32)
DST = np.empty_like(SRC)


def kernel_window(out: np.ndarray) -> np.ndarray:
    """One call fills every stream's columns."""
    align_window(VALUES, SLOTS, PARAMS, out, VALID, N_OK, IDX, WT)
    return out


def kernel_window_per_stream(out: np.ndarray) -> np.ndarray:
    """One call per stream (what the aligner did before ``align_window``)."""
    for i, (values, slot_pos, p0, step, col0) in enumerate(RINGS):
        resample_into(
            values, slot_pos, p0, step, out, np.int64(col0), VALID[i], np.int64(0), IDX, WT
        )
    return out


def numpy_window() -> np.ndarray:
    cols = []
    for t, x in LINEAR:
        for c in range(x.shape[1]):
            cols.append(np.interp(GRID, t, x[:, c]))
    return np.column_stack(cols).astype(np.float32)


@pytest.mark.parametrize("fill", [kernel_window, kernel_window_per_stream])
def test_kernel_matches_numpy_reference(fill) -> None:
    warmup()
    out = np.full((K, C), np.nan, np.float32)
    VALID[:] = False
    N_OK[:] = 0
    np.testing.assert_allclose(fill(out), numpy_window(), rtol=1e-5, atol=1e-5)
    assert VALID.all()
    if fill is kernel_window:
        assert (N_OK == K).all()


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


#: arrays crossing the call boundary of ``align_window`` (3 + 3 rings, params, out, valid, n_ok,
#: idx, wt): numba wraps each in a small NRT MemInfo while the call runs, freed on return
ARRAY_ARGS = 2 * len(RINGS) + 6


def test_kernel_allocates_nothing_inside() -> None:
    """Numba's own allocator (invisible to tracemalloc): per window exactly the per-argument
    MemInfo wrappers of the call, all freed; an ``np.empty`` inside the kernel would add one."""
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    if not hasattr(nrt, "memsys_enable_stats"):
        pytest.skip("this numba has no NRT allocation statistics")
    from numba.core.runtime import rtsys

    kernel_window(OUT)
    was_on = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    try:
        s0 = rtsys.get_allocation_stats()
        for _ in range(100):
            kernel_window(OUT)
        s1 = rtsys.get_allocation_stats()
    finally:
        if not was_on:
            nrt.memsys_disable_stats()
    assert s1.alloc - s0.alloc == 100 * ARRAY_ARGS, s1.alloc - s0.alloc
    assert s1.alloc - s0.alloc == s1.free - s0.free  # nothing kept


def _per_value(benchmark) -> None:
    med = median_s(benchmark)
    benchmark.extra_info["ns_per_value"] = med * 1e9 / (K * C)
    benchmark.extra_info["GB_per_s"] = BYTES / med / 1e9


@pytest.mark.benchmark(group="align-10s-window")
def test_bench_kernel(benchmark) -> None:
    warmup()
    benchmark(kernel_window, OUT)
    _per_value(benchmark)


@pytest.mark.benchmark(group="align-10s-window")
def test_bench_kernel_per_stream(benchmark) -> None:
    benchmark(kernel_window_per_stream, OUT)
    _per_value(benchmark)


@pytest.mark.benchmark(group="align-10s-window")
def test_bench_numpy_reference(benchmark) -> None:
    benchmark(numpy_window)
    _per_value(benchmark)


@pytest.mark.benchmark(group="align-10s-window")
def test_bench_memcpy_window(benchmark) -> None:
    """Bandwidth floor: copy the bytes one window must at least read + write."""
    benchmark(np.copyto, DST, SRC)
    _per_value(benchmark)
