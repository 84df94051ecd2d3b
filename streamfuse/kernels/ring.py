"""Ring-buffer kernels: write a chunk, read a span, count valid slots.

A ring holds ``values`` (``float32[cap, ch]``, ``cap`` a power of two) and ``slot_pos``
(``int64[cap]``): the absolute sample position stored in each slot. A position ``p`` is
present iff ``slot_pos[p & (cap - 1)] == p``, so overwritten or never-written positions read as
missing without any clearing, and a stale slot can never be mistaken for a fresh one.
Unused slots hold :data:`EMPTY`.

The ``@njit`` functions take arrays and scalars only and never validate; the plain wrappers
(:func:`new_ring`, :func:`write`) do.
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit

from ..errors import ConfigError

log = logging.getLogger("streamfuse.kernels.ring")

#: ``slot_pos`` value of a slot that holds no sample (far below any real position).
EMPTY = np.int64(-(2**62))


@njit(cache=True, nogil=True)
def ring_write(values, slot_pos, data, pos0):  # pragma: no cover - compiled
    """Store ``data[i]`` at absolute position ``pos0 + i``; returns how many slots already held
    that same position (an overlap)."""
    mask = values.shape[0] - 1
    n = data.shape[0]
    ch = data.shape[1]
    overlap = 0
    for i in range(n):
        p = pos0 + i
        s = p & mask
        if slot_pos[s] == p:
            overlap += 1
        for c in range(ch):
            values[s, c] = data[i, c]
        slot_pos[s] = p
    return overlap


@njit(cache=True, nogil=True)
def ring_read(values, slot_pos, pos0, out, out_valid):  # pragma: no cover - compiled
    """Copy positions ``pos0 .. pos0 + len(out) - 1`` into ``out`` (0.0 where missing) and
    their presence into ``out_valid``; returns the number present."""
    mask = values.shape[0] - 1
    ch = values.shape[1]
    n_ok = 0
    for i in range(out.shape[0]):
        p = pos0 + i
        s = p & mask
        if slot_pos[s] == p:
            for c in range(ch):
                out[i, c] = values[s, c]
            out_valid[i] = True
            n_ok += 1
        else:
            for c in range(ch):
                out[i, c] = 0.0
            out_valid[i] = False
    return n_ok


@njit(cache=True, nogil=True)
def ring_count(slot_pos, lo, hi):  # pragma: no cover - compiled
    """How many of the positions ``lo .. hi - 1`` are present."""
    mask = slot_pos.shape[0] - 1
    n = 0
    for p in range(lo, hi):
        if slot_pos[p & mask] == p:
            n += 1
    return n


def new_ring(capacity: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Allocate an empty ring of at least ``capacity`` slots (rounded up to a power of two).

    Returns
    -------
    values, slot_pos : ndarray
        ``float32[cap, channels]`` zeros and ``int64[cap]`` filled with :data:`EMPTY`.
    """
    if capacity < 1 or channels < 1:
        raise ConfigError(
            f"a ring needs capacity >= 1 and channels >= 1, got {capacity} and {channels}"
        )
    cap = 1 << int(capacity - 1).bit_length()
    return np.zeros((cap, channels), np.float32), np.full(cap, EMPTY, np.int64)


def write(values: np.ndarray, slot_pos: np.ndarray, data: np.ndarray, pos0: int) -> int:
    """Validated :func:`ring_write`: store ``data`` (``float32[n, ch]``) from position ``pos0``."""
    if data.dtype != np.float32 or data.ndim != 2:
        raise ConfigError(
            f"ring data must be float32[n, ch], got {data.dtype}{list(data.shape)}; "
            "pass e.g. `x.astype(np.float32).reshape(n, -1)`"
        )
    if data.shape[1] != values.shape[1]:
        raise ConfigError(
            f"ring has {values.shape[1]} channels but data has {data.shape[1]}"
        )
    if data.shape[0] > values.shape[0]:
        raise ConfigError(
            f"chunk of {data.shape[0]} samples exceeds ring capacity {values.shape[0]}; "
            "use a larger ring (more reorder/lateness budget) or smaller chunks"
        )
    return int(ring_write(values, slot_pos, np.ascontiguousarray(data), np.int64(pos0)))
