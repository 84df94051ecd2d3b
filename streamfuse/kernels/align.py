"""Align + interleave: resample one stream's ring buffer onto a window grid, straight into its
columns of the early-fusion matrix.

Grid sample ``j`` of a window sits at fractional ring position ``p_j = p0 + j * step``
(``step = stream rate / grid rate``, drift included; the caller derives ``p0`` and ``step``
from the clock model). Per grid sample:

- ``step <= 1 + DECIMATE_ABOVE`` (upsampling or same rate): linear interpolation between the
  two neighbouring samples. The sample is valid iff both neighbours are present (only one is
  needed when ``p_j`` falls exactly on a sample), so a missing run of samples masks exactly the
  grid points strictly between the last sample before it and the first sample after it.
- ``step > 1 + DECIMATE_ABOVE`` (downsampling): a triangle (tent) filter of half-width
  ``step`` input samples, normalised, i.e. linear interpolation stretched to the output
  spacing, which averages away content above the output Nyquist rate instead of aliasing it.
  It equals linear interpolation as ``step -> 1``. Valid iff every tap with non-zero weight is
  present.

Invalid grid samples are written as ``0.0`` and flagged False in ``out_valid``. The kernel
allocates nothing: callers pass preallocated ``out`` (``float32[k, C]``) and ``out_valid``
(``bool[k]``), and several streams fill disjoint column ranges of one ``out``.
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


@njit(cache=True, nogil=True)
def resample_into(values, slot_pos, p0, step, out, col0, out_valid):  # pragma: no cover
    """Fill ``out[:, col0:col0 + ch]`` and ``out_valid`` from the ring; returns valid count."""
    mask = values.shape[0] - 1
    ch = values.shape[1]
    k = out.shape[0]
    n_ok = 0
    if step <= 1.0 + DECIMATE_ABOVE and k > 0 and p0 >= 0.0:
        # fast path: every position the window touches is present and the run does not wrap
        # around the ring, so rows need no presence checks and no index masking
        i_lo = np.int64(p0)
        i_hi = np.int64(p0 + (k - 1) * step) + 1
        base = i_lo & mask
        if base + (i_hi - i_lo) < values.shape[0]:
            present = True
            for q in range(i_lo, i_hi + 1):
                if slot_pos[(q - i_lo) + base] != q:
                    present = False
                    break
            if present:
                shift = base - i_lo
                for j in range(k):
                    p = p0 + j * step
                    i = np.int64(p)
                    f = p - i
                    a = i + shift
                    if f > 0.0:
                        w = np.float32(f)
                        for c in range(ch):
                            va = values[a, c]
                            out[j, col0 + c] = va + w * (values[a + 1, c] - va)
                    else:
                        for c in range(ch):
                            out[j, col0 + c] = values[a, c]
                    out_valid[j] = True
                return k
    if step <= 1.0 + DECIMATE_ABOVE:
        for j in range(k):
            p = p0 + j * step
            fl = math.floor(p)
            i = np.int64(fl)
            f = p - fl
            sa = i & mask
            ok = slot_pos[sa] == i
            if f > 0.0:
                sb = (i + 1) & mask
                ok = ok and slot_pos[sb] == i + 1
                if ok:
                    w = np.float32(f)
                    for c in range(ch):
                        a = values[sa, c]
                        out[j, col0 + c] = a + w * (values[sb, c] - a)
            elif ok:
                for c in range(ch):
                    out[j, col0 + c] = values[sa, c]
            if ok:
                n_ok += 1
            else:
                for c in range(ch):
                    out[j, col0 + c] = 0.0
            out_valid[j] = ok
    else:
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
                    ok = False
                    break
                wsum += 1.0 - d / s
            if ok and wsum > 0.0:
                for c in range(ch):
                    acc = 0.0
                    for i in range(lo, hi + 1):
                        d = abs(i - p)
                        if d < s:
                            acc += (1.0 - d / s) * values[i & mask, c]
                    out[j, col0 + c] = acc / wsum
                n_ok += 1
                out_valid[j] = True
            else:
                for c in range(ch):
                    out[j, col0 + c] = 0.0
                out_valid[j] = False
    return n_ok


def resample(
    values: np.ndarray,
    slot_pos: np.ndarray,
    p0: float,
    step: float,
    out: np.ndarray,
    col0: int,
    out_valid: np.ndarray,
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
    return int(
        resample_into(values, slot_pos, float(p0), float(step), out, np.int64(col0), out_valid)
    )
