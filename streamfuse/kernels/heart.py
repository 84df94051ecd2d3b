"""ECG window kernel: beats in the window, RR intervals over trailing spans, time-domain HRV
and the kurtosis of the valid samples, in one pass over the beat history.

HRV definitions as in :func:`streamfuse.features.ecg.hrv` (Task Force of the ESC and NASPE,
1996). Sums follow NumPy's order (:mod:`streamfuse.kernels.moments`). Plain reference:
``tests.golden.features.NaiveECGFeatures`` (the NumPy code this replaced).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .moments import kurtosis_of, pairwise_sum, var_of

#: layout of :func:`ecg_window`'s output
OUT_BEATS, OUT_KURT, OUT_SQI, OUT_RR, OUT_HR, OUT_SDNN, OUT_RMSSD, OUT_PNN50 = range(8)
OUT_N_HR, OUT_N_HRV = 8, 9
OUT_SIZE = 10


@njit(cache=True, nogil=True)
def _rr_since(
    beats: np.ndarray,
    breaks: np.ndarray,
    t_from: float,
    t_end: float,
    rr_lo: float,
    rr_hi: float,
    rr: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Plausible RR intervals ending in ``[t_from, t_end)`` (into ``rr``), not spanning a
    break; returns (how many are plausible, how many ended there)."""
    n_ok = 0
    n_keep = 0
    for i in range(1, beats.shape[0]):
        start = beats[i - 1]
        end = beats[i]
        if not (end >= t_from and end < t_end):
            continue
        spans = False
        for b in breaks:
            if start < b and end >= b:
                spans = True
                break
        if spans:
            continue
        n_keep += 1
        d = end - start
        if d >= rr_lo and d <= rr_hi:
            rr[n_ok] = d
            n_ok += 1
    return n_ok, n_keep


@njit(cache=True, nogil=True)
def hrv_kernel(
    rr: np.ndarray, n: int, scratch: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Time-domain HRV of ``rr[:n]`` (s) into ``out``: mean RR, HR (bpm), then, from two
    intervals on, SDNN and RMSSD (ms) and pNN50; NaN where undefined. ``scratch`` holds ``n``."""
    for i in range(5):
        out[i] = np.nan
    if n == 0:
        return
    mean = pairwise_sum(rr, 0, n) / n
    out[0] = mean
    out[1] = 60.0 / mean
    if n < 2:
        return
    out[2] = math.sqrt(var_of(rr, n, 1, scratch)) * 1e3
    nd = n - 1
    big = 0
    for i in range(nd):
        d = (rr[i + 1] - rr[i]) * 1e3
        scratch[i] = d * d
        if abs(d) > 50.0:
            big += 1
    out[3] = math.sqrt(pairwise_sum(scratch, 0, nd) / nd)
    out[4] = big / nd


@njit(cache=True, nogil=True)
def ecg_window(
    beats: np.ndarray,
    breaks: np.ndarray,
    t_start: float,
    t_end: float,
    hr_from: float,
    hrv_from: float,
    rr_lo: float,
    rr_hi: float,
    x: np.ndarray,
    valid: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """ECG features of one window into ``out`` (indices ``OUT_*``; NaN where undefined).

    ``beats`` and ``breaks`` are increasing times (s); ``x``/``valid`` the window's samples.
    RR intervals for heart rate end in ``[hr_from, t_end)``, for HRV in ``[hrv_from, t_end)``.
    """
    for i in range(OUT_SIZE):
        out[i] = np.nan
    in_win = 0
    for b in beats:
        if b >= t_start and b < t_end:
            in_win += 1
    k = x.shape[0]
    buf = np.empty(3 * k + beats.shape[0] + 2)
    nv = 0
    for i in range(k):
        if valid[i]:
            buf[nv] = x[i]
            nv += 1
    kurt = kurtosis_of(buf, nv, buf[nv:])
    out[OUT_BEATS] = in_win
    out[OUT_KURT] = kurt
    rr = np.empty(max(beats.shape[0], 1))
    n_hr, n_keep = _rr_since(beats, breaks, hr_from, t_end, rr_lo, rr_hi, rr)
    plausible = n_hr / n_keep if n_keep else 0.0
    valid_frac = nv / k if k else 0.0
    q = kurt / 5.0
    out[OUT_SQI] = valid_frac * (q if q < 1.0 else 1.0) * plausible
    out[OUT_N_HR] = n_hr
    hv = np.empty(5)
    hrv_kernel(rr, n_hr, buf, hv)
    out[OUT_RR] = hv[0]
    out[OUT_HR] = hv[1]
    n_hrv, _ = _rr_since(beats, breaks, hrv_from, t_end, rr_lo, rr_hi, rr)
    out[OUT_N_HRV] = n_hrv
    hrv_kernel(rr, n_hrv, buf, hv)
    out[OUT_SDNN] = hv[2]
    out[OUT_RMSSD] = hv[3]
    out[OUT_PNN50] = hv[4]
