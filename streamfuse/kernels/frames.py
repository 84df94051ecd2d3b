"""Samples out of a binary frame: copy the little-endian float32 payload into an owned array
and count the values that are NaN or infinite, in one pass (see :mod:`streamfuse.codec`).

Plain reference: ``np.isfinite(src).all()`` and ``src.astype(np.float32)``
(``tests/test_codec.py`` checks both outcomes).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def copy_count_nonfinite(src: np.ndarray, dst: np.ndarray) -> int:  # pragma: no cover
    """``dst[:] = src`` (1-D float32, ``src`` may be a read-only view of the payload); returns
    how many values are not finite."""
    bad = 0
    for i in range(src.shape[0]):
        v = src[i]
        dst[i] = v
        if not math.isfinite(v):
            bad += 1
    return bad


#: bytes of a version-1 frame header (``codec.HEADER``: ``<2sBB12sHHIQdd``)
_HEAD = 48


@njit(cache=True, nogil=True)
def _u(buf: np.ndarray, at: int, width: int) -> int:  # pragma: no cover - compiled
    """Little-endian unsigned integer of ``width`` bytes at ``buf[at]``."""
    v = 0
    for b in range(width - 1, -1, -1):
        v = (v << 8) | int(buf[at + b])
    return v


@njit(cache=True, nogil=True)
def scan_bundle(
    buf: np.ndarray,
    names: np.ndarray,
    channels: np.ndarray,
    max_parts: int,
    max_samples: int,
    min_fs: float,
    max_fs: float,
    max_abs_t0: float,
    reject_nonfinite: bool,
    out: np.ndarray,
    meta_i: np.ndarray,
    meta_f: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Every part of a bundle (``buf``: its bytes as ``uint8``) in one pass, when every part
    is a well-formed, valid version-1 frame of a configured modality; else ``-1`` (the caller
    then takes the part-by-part path, which says what is wrong with which part).

    ``names[j]`` is modality ``j``'s name as the header holds it (12 bytes, NUL-padded) and
    ``channels[j]`` its channel count (``-1``: a name no header can hold). Part ``i``'s
    samples are copied to ``out[pos : pos + n * ch]``; ``meta_i[i] = (j, n, ch, seq, pos)``
    and ``meta_f[i] = (t0, fs)``. Returns the number of parts. The checks are the decoder's:
    magic, version, flags and reserved 0, configured modality and channel count,
    ``1 <= n <= max_samples``, the frame inside the payload, a finite rate in
    ``[min_fs, max_fs]``, a finite ``|t0| <= max_abs_t0``, ``seq`` below 2**63 (larger ones
    are left to the Python path) and, with ``reject_nonfinite``, no NaN or infinite sample.
    """
    size = buf.shape[0]
    off = 0
    part = 0
    pos = 0
    while off < size:
        if part == max_parts or size - off < _HEAD:
            return -1
        if buf[off] != 83 or buf[off + 1] != 70 or buf[off + 2] != 1 or buf[off + 3] != 0:
            return -1  # magic b"SF", version 1, flags 0
        j = -1
        for k in range(names.shape[0]):
            same = True
            for b in range(12):
                if buf[off + 4 + b] != names[k, b]:
                    same = False
                    break
            if same:
                j = k
                break
        if j < 0:
            return -1
        ch = _u(buf, off + 16, 2)
        if ch != channels[j] or _u(buf, off + 18, 2) != 0:
            return -1
        n = _u(buf, off + 20, 4)
        if n == 0 or n > max_samples or buf[off + 31] >= 128:
            return -1
        seq = _u(buf, off + 24, 8)
        t0 = buf[off + 32 : off + 40].view(np.float64)[0]
        fs = buf[off + 40 : off + 48].view(np.float64)[0]
        if not (math.isfinite(fs) and min_fs <= fs <= max_fs):
            return -1
        if not (math.isfinite(t0) and abs(t0) <= max_abs_t0):
            return -1
        m = n * ch
        end = off + _HEAD + 4 * m
        if end > size:
            return -1
        bad = copy_count_nonfinite(buf[off + _HEAD : end].view(np.float32), out[pos : pos + m])
        if bad and reject_nonfinite:
            return -1
        meta_i[part, 0] = j
        meta_i[part, 1] = n
        meta_i[part, 2] = ch
        meta_i[part, 3] = seq
        meta_i[part, 4] = pos
        meta_f[part, 0] = t0
        meta_f[part, 1] = fs
        pos += m
        off = end
        part += 1
    return part
