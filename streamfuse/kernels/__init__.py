"""Every Numba kernel of streamfuse: ring buffers, align + interleave, minimum-delay clock fit,
frame scans, filters, features (QRS, heart, motion, spectra, moments), early fusion, the
neuro-fuzzy and linear models' updates and the rank AUC.

Kernels take arrays and scalars only and write into preallocated outputs; call :func:`warmup`
once at start so the first message does not pay for compilation (``cache=True`` makes later
starts cheap).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .align import align_window, new_scratch, resample_into
from .clockfit import envelope_fit
from .frames import copy_count_nonfinite, scan_bundle
from .ring import EMPTY, new_ring, ring_count, ring_read, ring_write

log = logging.getLogger("streamfuse.kernels")

__all__ = [
    "EMPTY",
    "align_window",
    "envelope_fit",
    "new_ring",
    "new_scratch",
    "resample_into",
    "ring_count",
    "ring_read",
    "ring_write",
    "warmup",
]


def warmup() -> float:
    """Compile (or load from cache) every kernel on tiny inputs; returns the seconds it took."""
    t0 = time.perf_counter()
    values, slot_pos = new_ring(8, 2)
    ring_write(values, slot_pos, np.ones((4, 2), np.float32), np.int64(0))
    ring_read(values, slot_pos, np.int64(0), np.zeros((4, 2), np.float32), np.zeros(4, np.bool_))
    ring_count(slot_pos, np.int64(0), np.int64(4))
    out = np.zeros((3, 2), np.float32)
    valid = np.zeros(3, np.bool_)
    idx, wt = new_scratch(3)
    for p0, step in ((0.0, 0.5), (0.0, 1.5), (6.0, 0.5)):  # fast, decimating, gap paths
        resample_into(values, slot_pos, p0, step, out, np.int64(0), valid, np.int64(1), idx, wt)
    params = np.array([[0.0, 0.5, 0.0, 0.0]])
    align_window(
        (values,), (slot_pos,), params, out, np.zeros((1, 3), np.bool_), np.zeros(1, np.int64),
        idx, wt,
    )
    bx = np.array([0.0, 1.0, 2.0])
    bid = np.arange(3, dtype=np.int64)
    envelope_fit(bx, bx.copy(), bid, np.int64(2), np.zeros(3), np.zeros(3), np.zeros(3, np.int64))
    # a frame's samples: a read-only view of the payload bytes, as codec passes them
    copy_count_nonfinite(np.frombuffer(bytes(8), "<f4"), np.zeros(2, np.float32))
    # a bundle at once: its bytes a read-only view too
    scan_bundle(np.frombuffer(bytes(0), np.uint8), np.zeros((1, 12), np.uint8),
                np.ones(1, np.int64), 32, 65536, 0.01, 2e4, 1e11, True,
                np.zeros(1, np.float32), np.zeros((32, 5), np.int64), np.zeros((32, 2)))
    dt = time.perf_counter() - t0
    log.info("kernels warmed up in %.3f s", dt)
    return dt
