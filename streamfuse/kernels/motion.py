"""Accelerometer kernels: window statistics of the magnitude and the streaming pass that holds
gaps, band-passes the magnitude twice (activity counts, steps), finds steps and keeps the
history the dominant frequency and the counts are taken from.

Golden master: ``tests.golden.features.NaiveAccFeatures`` (the NumPy/SciPy code these
replaced).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .filters import biquads_one, step_one
from .moments import col_sums, pairwise_sum
from .spectral import welch_psd, welch_segments


@njit(cache=True, nogil=True)
def acc_window(
    block: np.ndarray, valid: np.ndarray, scale: float, mag: np.ndarray, out: np.ndarray
) -> int:  # pragma: no cover - compiled
    """Magnitude of every row of ``block * scale`` into ``mag``; statistics of the valid rows.

    ``out`` = [mean magnitude, its standard deviation, ENMO, summed per-axis variance, its
    square root]; returns the number of valid rows (``out`` untouched when 0). Sums follow
    NumPy's order for ``x.sum(axis=1)``, ``x[m].var(axis=0)``, ``mag[m].mean()``.
    """
    k = block.shape[0]
    ch = block.shape[1]
    row = np.empty(ch)
    nv = 0
    for i in range(k):
        if ch < 8:  # pairwise below 8 values is a plain loop from 0.0
            s = 0.0
            for c in range(ch):
                v = np.float64(block[i, c]) * scale
                s += v * v
        else:
            for c in range(ch):
                v = np.float64(block[i, c]) * scale
                row[c] = v * v
            s = pairwise_sum(row, 0, ch)
        mag[i] = math.sqrt(s)
        if valid[i]:
            nv += 1
    if nv == 0:
        return 0
    xv = np.empty((nv, ch))
    mv = np.empty(nv)
    j = 0
    for i in range(k):
        if valid[i]:
            for c in range(ch):
                xv[j, c] = np.float64(block[i, c]) * scale
            mv[j] = mag[i]
            j += 1
    col = np.empty(nv)
    var = np.empty(ch)
    if ch == 1:  # a single column is one contiguous vector to NumPy: pairwise
        for i in range(nv):
            col[i] = xv[i, 0]
        mean = pairwise_sum(col, 0, nv) / nv
        for i in range(nv):
            d = xv[i, 0] - mean
            col[i] = d * d
        var[0] = pairwise_sum(col, 0, nv) / nv
    else:  # along the outer axis of a 2-D array NumPy sums row by row
        means = np.empty(ch)
        col_sums(xv, 0, nv, means)
        for c in range(ch):
            means[c] /= nv
        for i in range(nv):
            for c in range(ch):
                d = xv[i, c] - means[c]
                xv[i, c] = d * d
        col_sums(xv, 0, nv, var)
        for c in range(ch):
            var[c] /= nv
    total_var = pairwise_sum(var, 0, ch)
    mean = pairwise_sum(mv, 0, nv) / nv
    for i in range(nv):
        d = mv[i] - mean
        col[i] = d * d
    std = math.sqrt(pairwise_sum(col, 0, nv) / nv)
    for i in range(nv):
        d = mv[i] - 1.0
        col[i] = 0.0 if d < 0.0 else d
    out[0] = mean
    out[1] = std
    out[2] = pairwise_sum(col, 0, nv) / nv
    out[3] = total_var
    out[4] = math.sqrt(total_var)
    return nv


@njit(cache=True, nogil=True)
def _biquad(
    c: np.ndarray, v: float, z0: float, z1: float
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """One section of :func:`~streamfuse.kernels.filters.biquads_one` with its state passed
    and returned: (output, new z0, new z1)."""
    y = c[0] * v + z0
    return y, c[1] * v - c[4] * y + z1, c[2] * v - c[5] * y


@njit(cache=True, nogil=True)
def acc_consume(
    mag: np.ndarray,
    valid: np.ndarray,
    start: int,
    gap: int,
    window: int,
    sos: np.ndarray,
    zi: np.ndarray,
    zi_unit: np.ndarray,
    fstate: np.ndarray,
    istate: np.ndarray,
    step_state: np.ndarray,
    min_amp: float,
    min_gap: int,
    fs: float,
    steps: np.ndarray,
    mag_hist: np.ndarray,
    counts_hist: np.ndarray,
    valid_hist: np.ndarray,
    counts_scratch: np.ndarray,
) -> float:  # pragma: no cover - compiled
    """Consume ``gap`` missing samples, then ``mag[start:]``; return the window's mean count.

    Each sample's magnitude is held over gaps (``fstate[0]`` carries the last valid one), run
    through the counts band-pass (``sos[0]``, state ``zi[0]``) and the step band-pass
    (``sos[1]``, ``zi[1]``); both start in the steady state of the first held sample
    (``zi_unit`` times it) while ``istate[1] == 0``. Steps (see :func:`step_one`) are appended
    to ``steps[istate[2]:]`` as times ``fstate[1] + index / fs``. The magnitude (0.0 in gaps),
    the rectified count signal and the mask are appended to histories of ``len(mag_hist)``
    samples filled to ``istate[0]``. Returns the mean rectified count over the valid samples of
    the last ``window`` history samples (0.0 without any).
    """
    cap = mag_hist.shape[0]
    total = gap + (mag.shape[0] - start)
    filled = istate[0]
    # make room: keep the newest samples that still fit, then write the last `cap` new ones
    keep = min(filled, cap - total) if total < cap else 0
    shift = filled - keep
    if shift > 0:
        for i in range(keep):
            mag_hist[i, 0] = mag_hist[i + shift, 0]
            counts_hist[i] = counts_hist[i + shift]
            valid_hist[i] = valid_hist[i + shift]
    skip = total - cap if total > cap else 0
    last = fstate[0]
    n_steps = istate[2]
    count_sos, count_zi = sos[0], zi[0]
    step_sos, step_zi = sos[1], zi[1]
    # two sections per filter (order-2 band-passes): the filter state in registers across the
    # loop instead of in memory, the same operations in the same order (biquads_one's)
    two = zi.shape[1] == 2
    c0, c1, s0, s1 = count_sos[0], count_sos[1], step_sos[0], step_sos[1]
    cz00, cz01, cz10, cz11 = count_zi[0, 0], count_zi[0, 1], count_zi[1, 0], count_zi[1, 1]
    sz00, sz01, sz10, sz11 = step_zi[0, 0], step_zi[0, 1], step_zi[1, 0], step_zi[1, 1]
    for t in range(total):
        if t < gap:
            v = 0.0
            ok = False
        else:
            v = mag[start + t - gap]
            ok = valid[start + t - gap]
        if ok:
            last = v
        held = last
        if istate[1] == 0:
            for f in range(zi.shape[0]):
                for s in range(zi.shape[1]):
                    zi[f, s, 0] = zi_unit[f, s, 0] * held
                    zi[f, s, 1] = zi_unit[f, s, 1] * held
            istate[1] = 1
            cz00, cz01, cz10, cz11 = count_zi[0, 0], count_zi[0, 1], count_zi[1, 0], count_zi[1, 1]
            sz00, sz01, sz10, sz11 = step_zi[0, 0], step_zi[0, 1], step_zi[1, 0], step_zi[1, 1]
        if two:
            y, cz00, cz01 = _biquad(c0, held, cz00, cz01)
            counts, cz10, cz11 = _biquad(c1, y, cz10, cz11)
            y, sz00, sz01 = _biquad(s0, held, sz00, sz01)
            bp, sz10, sz11 = _biquad(s1, y, sz10, sz11)
        else:
            counts = biquads_one(count_sos, count_zi, held)
            bp = biquads_one(step_sos, step_zi, held)
        idx = step_one(bp, ok, step_state, min_amp, min_gap)
        if idx >= 0:
            steps[n_steps] = fstate[1] + idx / fs
            n_steps += 1
        if t >= skip:
            p = keep + t - skip
            mag_hist[p, 0] = v
            counts_hist[p] = abs(counts)
            valid_hist[p] = ok
    if two:
        count_zi[0, 0], count_zi[0, 1], count_zi[1, 0], count_zi[1, 1] = cz00, cz01, cz10, cz11
        step_zi[0, 0], step_zi[0, 1], step_zi[1, 0], step_zi[1, 1] = sz00, sz01, sz10, sz11
    fstate[0] = last
    istate[2] = n_steps
    filled = keep + total - skip
    istate[0] = filled
    nk = min(window, filled)
    nc = 0
    for i in range(filled - nk, filled):
        if valid_hist[i]:
            counts_scratch[nc] = counts_hist[i]
            nc += 1
    return pairwise_sum(counts_scratch, 0, nc) / nc if nc else 0.0


@njit(cache=True, nogil=True)
def prune_steps(
    steps: np.ndarray, istate: np.ndarray, oldest: float, t_end: float
) -> int:  # pragma: no cover - compiled
    """Drop step times before ``oldest`` (``steps[:istate[2]]`` in place); return how many of
    the rest fall before ``t_end``."""
    n = 0
    before = 0
    for i in range(istate[2]):
        s = steps[i]
        if s >= oldest:
            steps[n] = s
            n += 1
            if s < t_end:
                before += 1
    istate[2] = n
    return before


#: what :func:`acc_update` leaves to its caller
ACC_EMPTY, ACC_DONE, ACC_SPECTRUM, ACC_SHORT = -1, 0, 1, 2


@njit(cache=True, nogil=True)
def acc_update(
    block: np.ndarray,
    valid: np.ndarray,
    scale: float,
    t_start: float,
    start: int,
    gap: int,
    sos: np.ndarray,
    zi: np.ndarray,
    zi_unit: np.ndarray,
    fstate: np.ndarray,
    istate: np.ndarray,
    step_state: np.ndarray,
    min_amp: float,
    min_gap: int,
    fs: float,
    steps: np.ndarray,
    mag_hist: np.ndarray,
    counts_hist: np.ndarray,
    valid_hist: np.ndarray,
    counts_scratch: np.ndarray,
    cadence_s: float,
    win: np.ndarray,
    peak_lo: int,
    peak_hi: int,
    segs: np.ndarray,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """One window of the accelerometer extractor: :func:`acc_window`, :func:`acc_consume`,
    :func:`prune_steps`, then the Welch segment of the magnitude history for the dominant
    frequency, in one call.

    ``out`` receives [mean magnitude, its SD, ENMO, variance, activity, mean count, dominant
    frequency, cadence]. Returns :data:`ACC_EMPTY` (no valid row: no features),
    :data:`ACC_DONE` (``out`` complete: the dominant frequency is 0.0 without a spectrum),
    :data:`ACC_SPECTRUM` (``segs[0]`` holds the segment: the caller takes its spectrum and
    calls :func:`acc_peak`) or :data:`ACC_SHORT` (the history is shorter than ``win``, the
    steady segment: the caller computes the dominant frequency with the shorter plan).
    ``peak_lo .. peak_hi - 1`` are the PSD bins inside the dominant frequency's range.
    """
    k = block.shape[0]
    mag = np.empty(k)
    n_valid = acc_window(block, valid, scale, mag, out)
    if math.isnan(fstate[1]):
        fstate[1] = t_start
    counts = acc_consume(
        mag,
        valid,
        start,
        gap,
        k,
        sos,
        zi,
        zi_unit,
        fstate,
        istate,
        step_state,
        min_amp,
        min_gap,
        fs,
        steps,
        mag_hist,
        counts_hist,
        valid_hist,
        counts_scratch,
    )
    t_end = t_start + k / fs
    n_steps = prune_steps(steps, istate, t_end - cadence_s, t_end)
    if n_valid == 0:
        return ACC_EMPTY
    covered = min(cadence_s, t_end - fstate[1])
    out[5] = counts
    out[6] = 0.0
    out[7] = n_steps * 60.0 / covered if covered > 0 else 0.0
    n = istate[0]
    if n < 4:
        return ACC_DONE
    if n != win.shape[0]:
        return ACC_SHORT
    if peak_hi <= peak_lo:
        return ACC_DONE
    if welch_segments(mag_hist, valid_hist, n, n, win, segs) == 0:
        return ACC_DONE
    return ACC_SPECTRUM


@njit(cache=True, nogil=True)
def acc_peak(
    mag: np.ndarray,
    scale: float,
    nperseg: int,
    psd: np.ndarray,
    freqs: np.ndarray,
    lo: int,
    hi: int,
    floor: float,
) -> float:  # pragma: no cover - compiled
    """The dominant frequency of one segment's spectrum magnitudes ``mag`` (``[1, nf]``):
    the frequency of the largest PSD bin in ``lo .. hi - 1`` (the first one, or the first
    NaN, as ``numpy.argmax``), 0.0 unless that bin exceeds ``floor``."""
    welch_psd(mag, 1, 1, scale, nperseg, psd)
    j = lo
    best = psd[0, lo]
    if not math.isnan(best):
        for i in range(lo + 1, hi):
            v = psd[0, i]
            if math.isnan(v):
                j = i
                best = v
                break
            if v > best:
                best = v
                j = i
    return freqs[j] if best > floor else 0.0
