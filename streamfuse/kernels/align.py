"""Align + interleave: resample one stream's ring buffer onto a window grid, straight into its
columns of the early-fusion matrix.

Grid sample ``j`` of a window sits at fractional ring position ``p_j = p0 + j * step``
(``step = stream rate / grid rate``, drift included; the caller derives ``p0`` and ``step``
from the clock model). Per grid sample:

- ``step <= 1 + DECIMATE_ABOVE`` (upsampling or same rate): linear interpolation between the
  nearest present sample at or before ``p_j`` (``L``) and the nearest at or after it (``R``).
  Normally ``R = L + 1`` (or ``L = R = p_j`` on an exact hit). The grid sample is valid iff
  ``R - L - 1 <= max_missing``: with ``max_missing = 0`` a missing run of samples masks exactly
  the grid points strictly between the last sample before it and the first sample after it;
  a larger ``max_missing`` bridges runs of up to that many missing samples linearly.
- ``step > 1 + DECIMATE_ABOVE`` (downsampling): a triangle (tent) filter of half-width
  ``step`` input samples, normalised, i.e. linear interpolation stretched to the output
  spacing, which averages away content above the output Nyquist rate instead of aliasing it.
  It equals linear interpolation as ``step -> 1``. Valid iff every tap with non-zero weight is
  present or bridgeable (missing run of at most ``max_missing`` samples, filled linearly).

Invalid grid samples are written as ``0.0`` and flagged False in ``out_valid``. The kernel
allocates nothing: callers pass preallocated ``out`` (``float32[k, C]``), ``out_valid``
(``bool[k]``) and two scratch tables ``idx`` (``uint32[2, >= k]``) and ``wt``
(``float32[>= k]``),
and several streams fill disjoint column ranges of one ``out``.

Fast path (every position the window touches is present, the usual case): one vectorised loop
computes the per-row ring offset and weight tables (``idx``, ``wt``), a second gathers and
interpolates the rows; narrow streams (1-4 channels) get a loop unrolled for their width.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numba import njit

from ..errors import ConfigError

log = logging.getLogger("streamfuse.kernels.align")

#: Relative downsampling above which the anti-aliasing tent filter replaces linear interpolation
#: (so clock drift of a few hundred ppm on an equal-rate stream keeps the cheap path).
DECIMATE_ABOVE = 1e-3

@njit(cache=True, nogil=True, inline="always")
def _lerp_rows(vf, of, ia, ib, wt, k, n_cols, col0, ch):  # pragma: no cover - compiled
    """Rows ``0 .. k-1`` of ``of`` (flat ``[k, n_cols]``), columns ``col0 .. col0 + ch - 1``:
    ``row ia[j] + wt[j] * (row ib[j] - row ia[j])`` of ``vf`` (flat ring, offsets in floats)."""
    for j in range(k):
        a = np.uint64(ia[j])
        b = np.uint64(ib[j])
        w = wt[j]
        o = np.uint64(j) * n_cols + col0
        for c in range(ch):
            uc = np.uint64(c)
            va = vf[a + uc]
            of[o + uc] = va + w * (vf[b + uc] - va)


@njit(cache=True, nogil=True, inline="always")
def _rows_for_width(vf, of, ia, ib, wt, k, n_cols, col0, ch):  # pragma: no cover - compiled
    """Literal widths let LLVM unroll narrow rows; wide rows keep the vectorised channel loop."""
    if ch == 1:
        _lerp_rows(vf, of, ia, ib, wt, k, n_cols, col0, 1)
    elif ch == 2:
        _lerp_rows(vf, of, ia, ib, wt, k, n_cols, col0, 2)
    elif ch == 3:
        _lerp_rows(vf, of, ia, ib, wt, k, n_cols, col0, 3)
    elif ch == 4:
        _lerp_rows(vf, of, ia, ib, wt, k, n_cols, col0, 4)
    else:
        _lerp_rows(vf, of, ia, ib, wt, k, n_cols, col0, ch)


@njit(cache=True, nogil=True)
def _fast_linear(values, slot_pos, p0, step, out, col0, out_valid, idx, wt):  # pragma: no cover
    """All positions present: fill and return ``k``; otherwise touch nothing and return -1."""
    cap = values.shape[0]
    mask = cap - 1
    ch = values.shape[1]
    k = out.shape[0]
    fl = math.floor(p0)
    i_lo = np.int64(fl)
    fb = p0 - fl
    n = np.int64(fb + (k - 1) * step) + 2  # positions i_lo .. i_lo + n - 1 are needed
    if n > cap:
        return -1
    base = i_lo & mask
    seg = min(n, cap - base)
    bad = np.int64(0)
    head = slot_pos[base : base + seg]  # slices: loop indices need no wraparound fix-up
    for t in range(seg):  # OR-reduction, no early exit: vectorises
        bad |= head[t] ^ (i_lo + t)
    tail = slot_pos[: n - seg]  # the part that wrapped around the ring
    for t in range(n - seg):
        bad |= tail[t] ^ (i_lo + seg + t)
    if bad != 0:
        return -1
    uch = np.uint32(ch)
    umask = np.uint32(mask)
    ubase = np.uint32(base)
    ia = idx[0]
    ib = idx[1]
    for j in range(k):  # offset/weight tables: no loads, vectorises
        p = fb + j * step
        ii = np.uint32(np.int64(p))
        w = np.float32(p - np.int64(p))
        a = ((ii + ubase) & umask) * uch
        ia[j] = a
        # an exact hit interpolates a row with itself: the sample, bit for bit
        ib[j] = a if w == 0 else ((ii + ubase + np.uint32(1)) & umask) * uch
        wt[j] = w
    vf = values.reshape(-1)
    of = out.reshape(-1)
    _rows_for_width(vf, of, ia, ib, wt, k, np.uint64(out.shape[1]), np.uint64(col0), ch)
    out_valid[:k] = True
    return k


@njit(cache=True, nogil=True)
def _neighbours(slot_pos, i, f, max_missing):  # pragma: no cover - compiled
    """Nearest present positions ``L <= i + f <= R`` (``0 <= f < 1``) with at most
    ``max_missing`` missing between them; returns ``(L, R, ok)``."""
    mask = slot_pos.shape[0] - 1
    if f == 0.0 and slot_pos[i & mask] == i:
        return i, i, True
    lo = i
    while slot_pos[lo & mask] != lo:
        lo -= 1
        if i - lo > max_missing:
            return i, i, False
    hi = i + 1
    while slot_pos[hi & mask] != hi:
        hi += 1
        if hi - lo - 1 > max_missing:
            return lo, hi, False
    return lo, hi, True


@njit(cache=True, nogil=True)
def _general(values, slot_pos, p0, step, out, col0, out_valid, max_missing):  # pragma: no cover
    mask = values.shape[0] - 1
    ch = values.shape[1]
    k = out.shape[0]
    n_ok = 0
    if step <= 1.0 + DECIMATE_ABOVE:
        # positions as in the fast path (integer part of p0 split off first), so a window gets
        # bit-identical values whichever path fills it
        fl = math.floor(p0)
        i_lo = np.int64(fl)
        fb = p0 - fl
        for j in range(k):
            p = fb + j * step
            ii = np.int64(p)
            f = p - ii
            lo, hi, ok = _neighbours(slot_pos, i_lo + ii, f, max_missing)
            if ok:
                sa = lo & mask
                if hi == lo:
                    for c in range(ch):
                        out[j, col0 + c] = values[sa, c]
                else:
                    sb = hi & mask
                    if hi - lo == 1:
                        w = np.float32(f)
                    else:  # bridged gap
                        w = np.float32(((i_lo + ii - lo) + f) / (hi - lo))
                    for c in range(ch):
                        a = values[sa, c]
                        out[j, col0 + c] = a + w * (values[sb, c] - a)
                n_ok += 1
            else:
                for c in range(ch):
                    out[j, col0 + c] = 0.0
            out_valid[j] = ok
        return n_ok
    s = step
    for j in range(k):
        p = p0 + j * s
        lo = np.int64(math.ceil(p - s))
        hi = np.int64(math.floor(p + s))
        ok = True
        wsum = 0.0
        for i in range(lo, hi + 1):
            d = abs(i - p)
            if d >= s:
                continue
            if slot_pos[i & mask] != i:
                a, b, ok = _neighbours(slot_pos, i, 0.0, max_missing)
                if not ok:
                    break
            wsum += 1.0 - d / s
        if ok and wsum > 0.0:
            for c in range(ch):
                acc = 0.0
                for i in range(lo, hi + 1):
                    d = abs(i - p)
                    if d < s:
                        if slot_pos[i & mask] == i:
                            v = np.float64(values[i & mask, c])
                        else:  # bridged tap: linear between its present neighbours
                            a, b, _ = _neighbours(slot_pos, i, 0.0, max_missing)
                            va = np.float64(values[a & mask, c])
                            vb = np.float64(values[b & mask, c])
                            v = va + (i - a) / (b - a) * (vb - va)
                        acc += (1.0 - d / s) * v
                out[j, col0 + c] = acc / wsum
            n_ok += 1
            out_valid[j] = True
        else:
            for c in range(ch):
                out[j, col0 + c] = 0.0
            out_valid[j] = False
    return n_ok


@njit(cache=True, nogil=True)
def resample_into(
    values, slot_pos, p0, step, out, col0, out_valid, max_missing, idx, wt
):  # pragma: no cover - compiled
    """Fill ``out[:, col0:col0 + ch]`` and ``out_valid`` from the ring; returns valid count.

    ``max_missing`` is the longest run of missing samples bridged by interpolation (0: none);
    ``idx`` (``uint32[2, >= k]``) and ``wt`` (``float32[>= k]``) are scratch.
    """
    if out.shape[0] == 0:
        return 0
    if step <= 1.0 + DECIMATE_ABOVE:
        n = _fast_linear(values, slot_pos, p0, step, out, col0, out_valid, idx, wt)
        if n >= 0:
            return n
    return _general(values, slot_pos, p0, step, out, col0, out_valid, max_missing)


@njit(cache=True, nogil=True)
def align_window(values, slot_pos, params, out, out_valid, n_ok, idx, wt):  # pragma: no cover
    """Every stream of one window in one call (one dispatch instead of one per stream).

    ``values`` and ``slot_pos`` are tuples of the streams' rings, ``params`` is
    ``float64[s, 4]`` holding per stream ``p0, step, col0, max_missing``; stream ``i`` fills
    ``out_valid[i]`` (``bool[s, k]``) and ``n_ok[i]`` (``int64[s]``) as
    :func:`resample_into` would.
    """
    for i in range(len(values)):
        n_ok[i] = resample_into(
            values[i],
            slot_pos[i],
            params[i, 0],
            params[i, 1],
            out,
            np.int64(params[i, 2]),
            out_valid[i],
            np.int64(params[i, 3]),
            idx,
            wt,
        )


def new_scratch(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch tables for :func:`resample_into` on windows of ``k`` grid samples."""
    return np.zeros((2, max(k, 1)), np.uint32), np.zeros(max(k, 1), np.float32)


def resample(
    values: np.ndarray,
    slot_pos: np.ndarray,
    p0: float,
    step: float,
    out: np.ndarray,
    col0: int,
    out_valid: np.ndarray,
    max_missing: int = 0,
    scratch: tuple[np.ndarray, np.ndarray] | None = None,
) -> int:
    """Validated :func:`resample_into`.

    Parameters
    ----------
    values, slot_pos : ndarray
        The stream's ring (see :mod:`streamfuse.kernels.ring`).
    p0, step : float
        Ring position of grid sample 0 and ring positions per grid sample (> 0).
    out : ndarray
        ``float32[k, C]`` destination; columns ``col0 .. col0 + ch - 1`` are written.
    col0 : int
        First destination column.
    out_valid : ndarray
        ``bool[k]``, True where the grid sample is backed by data.
    max_missing : int
        Longest run of missing samples to interpolate across (0 masks every gap).
    scratch : tuple of ndarray, optional
        ``(idx, wt)`` from :func:`new_scratch`; allocated here when omitted.

    Returns
    -------
    int
        Number of valid grid samples.
    """
    cap = values.shape[0]
    if values.dtype != np.float32 or values.ndim != 2 or cap & (cap - 1):
        raise ConfigError(
            "values must be float32[cap, ch] with cap a power of two; build it with "
            "streamfuse.kernels.ring.new_ring"
        )
    if not values.flags.c_contiguous:
        raise ConfigError("values must be C-contiguous; build it with new_ring")
    if slot_pos.dtype != np.int64 or slot_pos.shape != (cap,):
        raise ConfigError(f"slot_pos must be int64[{cap}], got {slot_pos.dtype}{slot_pos.shape}")
    if out.dtype != np.float32 or out.ndim != 2 or not out.flags.c_contiguous:
        raise ConfigError(
            "out must be a C-contiguous float32[k, C]; use np.zeros((k, C), np.float32)"
        )
    if not 0 <= col0 <= out.shape[1] - values.shape[1]:
        raise ConfigError(
            f"columns {col0}..{col0 + values.shape[1] - 1} do not fit in out with "
            f"{out.shape[1]} columns"
        )
    if out_valid.dtype != np.bool_ or out_valid.shape != (out.shape[0],):
        raise ConfigError(f"out_valid must be bool[{out.shape[0]}]")
    if not (math.isfinite(p0) and math.isfinite(step) and step > 0):
        raise ConfigError(f"p0 and step must be finite and step > 0, got {p0}, {step}")
    if max_missing < 0:
        raise ConfigError(f"max_missing must be >= 0, got {max_missing}")
    if cap * values.shape[1] >= 2**32:
        raise ConfigError("ring too large for uint32 offsets; use fewer slots or channels")
    idx, wt = new_scratch(out.shape[0]) if scratch is None else scratch
    if (
        idx.dtype != np.uint32
        or wt.dtype != np.float32
        or idx.ndim != 2
        or idx.shape[0] != 2
        or idx.shape[1] < out.shape[0]
        or wt.shape[0] < out.shape[0]
    ):
        raise ConfigError(
            f"scratch must be (uint32[2, >= {out.shape[0]}], float32[>= {out.shape[0]}]); "
            "use new_scratch(k)"
        )
    return int(
        resample_into(
            values, slot_pos, float(p0), float(step), out, np.int64(col0), out_valid,
            np.int64(max_missing), idx, wt,
        )
    )
