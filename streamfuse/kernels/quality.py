"""Kernels of the signal-quality indices (:mod:`streamfuse.features.quality`): run lengths of
flat and clipped samples, and a zero-phase band-pass for the beat detector.

Plain references: ``tests/naive_quality.py`` (``naive_flat``, ``naive_clipped``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .filters import biquads_one
from .reductions import column_means, median_of, np_sum, row_sum


@njit(cache=True, nogil=True)
def flat_count(
    v: np.ndarray, valid: np.ndarray, min_run: int, tol: float
) -> int:  # pragma: no cover - compiled
    """Valid samples of ``v`` inside runs of at least ``min_run`` consecutive valid samples
    whose successive differences are all ``<= tol``."""
    n = v.shape[0]
    total = 0
    i = 0
    while i < n:
        if not valid[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and valid[j + 1] and abs(v[j + 1] - v[j]) <= tol:
            j += 1
        if j - i + 1 >= min_run:
            total += j - i + 1
        i = j + 1
    return total


@njit(cache=True, nogil=True)
def held_count(
    x: np.ndarray, valid: np.ndarray, min_run: int, rel_tol: float
) -> int:  # pragma: no cover - compiled
    """Over every column of ``x``: valid samples within ``rel_tol`` of the column's valid range
    from its maximum (or minimum), inside runs of at least ``min_run`` such valid samples."""
    n, ch = x.shape
    total = 0
    for c in range(ch):
        hi = -np.inf
        lo = np.inf
        for i in range(n):
            if valid[i]:
                hi = max(hi, x[i, c])
                lo = min(lo, x[i, c])
        span = hi - lo
        if not span > 0:
            continue
        top, bottom = hi - rel_tol * span, lo + rel_tol * span
        for side in range(2):
            run = 0
            for i in range(n + 1):
                ok = False
                if i < n and valid[i]:
                    ok = x[i, c] >= top if side == 0 else x[i, c] <= bottom
                if ok:
                    run += 1
                else:
                    if run >= min_run:
                        total += run
                    run = 0
    return total


@njit(cache=True, nogil=True)
def zero_phase(sos: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``x`` through the biquads forward, then backward (zero phase, zero initial state; the
    caller removes the signal's level first so the start-up transient stays small)."""
    n = x.shape[0]
    zi = np.zeros((sos.shape[0], 2))
    for i in range(n):
        out[i] = biquads_one(sos, zi, x[i])
    zi[:] = 0.0
    for i in range(n - 1, -1, -1):
        out[i] = biquads_one(sos, zi, out[i])


# ---------------------------------------------------------------------------------------------
# Whole-window kernels: one call per modality and window does what the NumPy expressions of
# features/quality.py did in a dozen array passes (~610 us a window before). Each sum is done
# in NumPy's own order (:mod:`streamfuse.kernels.reductions`) so the indices stay bit-identical.
# Spectra stay with ``numpy.fft.rfft`` and ``numpy.abs`` (their SIMD paths are NumPy's), the
# matrix-vector product of the beat correlation with NumPy's BLAS.


@njit(cache=True, nogil=True)
def valid_rows(x: np.ndarray, mask: np.ndarray, out: np.ndarray) -> int:  # pragma: no cover
    """``out = mask & isfinite(x).all(axis=1)``; the number of valid rows."""
    n, ch = x.shape
    count = 0
    for i in range(n):
        ok = mask[i]
        if ok:
            for c in range(ch):
                if not np.isfinite(x[i, c]):
                    ok = False
                    break
        out[i] = ok
        if ok:
            count += 1
    return count


@njit(cache=True, nogil=True)
def valid_values(x: np.ndarray, valid: np.ndarray, n_valid: int) -> np.ndarray:  # pragma: no cover
    """``x[valid]`` as a float64 ``[n_valid, ch]`` array."""
    n, ch = x.shape
    v = np.empty((n_valid, ch))
    r = 0
    for i in range(n):
        if valid[i]:
            for c in range(ch):
                v[r, c] = x[i, c]
            r += 1
    return v


@njit(cache=True, nogil=True)
def eeg_indices(
    x: np.ndarray,
    mask: np.ndarray,
    limit: float,
    min_sd: float,
    rel_tol: float,
    win: np.ndarray,
    spectrum: bool,
) -> tuple[float, float, float, float, np.ndarray, int]:  # pragma: no cover - compiled
    """``gap``, ``beyond``, ``flat_channels``, ``clipped`` of a float64 EEG block (NaN where
    undefined), the number of valid rows and, when ``spectrum`` (and 8 valid rows), the
    demeaned channels times ``win`` (gaps zero) as ``z[ch, k]`` for the line-noise
    periodogram."""
    n, ch = x.shape
    valid = np.empty(n, dtype=np.bool_)
    nv = valid_rows(x, mask, valid)
    gap = 1.0 if n == 0 else 1.0 - nv / n
    z = np.zeros((ch, n))
    if nv == 0:
        return gap, np.nan, np.nan, np.nan, z, nv
    v = valid_values(x, valid, nv)
    means = column_means(v)
    # beyond: |v - median| > limit, over every valid sample
    col = np.empty(nv)
    far = 0
    for c in range(ch):
        lo_c = v[0, c]
        hi_c = v[0, c]
        for i in range(nv):
            col[i] = v[i, c]
            lo_c = min(lo_c, col[i])
            hi_c = max(hi_c, col[i])
        if hi_c - lo_c <= limit:
            # no sample is farther than the range from the median (rounding is monotonic,
            # so |fl(v - med)| <= fl(hi - lo) too): the count is 0 without the median
            continue
        med = median_of(col)
        for i in range(nv):
            if abs(v[i, c] - med) > limit:
                far += 1
    beyond = far / (nv * ch)
    # flat channels: the standard deviation as np.std (mean, squared deviations, mean, sqrt)
    flat_channels = np.nan
    if nv >= 2:
        dev = np.empty((nv, ch))
        for i in range(nv):
            for c in range(ch):
                d = v[i, c] - means[c]
                dev[i, c] = d * d
        var = column_means(dev)
        low = 0
        for c in range(ch):
            if np.sqrt(var[c]) < min_sd:
                low += 1
        flat_channels = low / ch
    clipped = held_count(x, valid, 3, rel_tol) / (nv * ch)
    if spectrum and nv >= 8:
        for i in range(n):
            w = win[i]
            if valid[i]:
                for c in range(ch):
                    z[c, i] = (x[i, c] - means[c]) * w
            else:
                for c in range(ch):
                    z[c, i] = 0.0 * w
    return gap, beyond, flat_channels, clipped, z, nv


@njit(cache=True, nogil=True)
def band_share(mag: np.ndarray, lo: int, bands: np.ndarray) -> float:  # pragma: no cover
    """The line-noise share from a magnitude spectrum ``mag[ch, bins]``: per channel with power
    (``|X|²`` summed over bins ``lo..``), the power in each band ``bands[l] = (b0, b1)`` over
    it, averaged over those channels; the largest over the bands; NaN without power.

    The per-channel sums are running sums, bin after bin: NumPy's ``psd[:, bins].sum(axis=1)``
    adds down a Fortran-ordered copy when there are several channels (pairwise with one)."""
    ch, nb = mag.shape
    psd = np.empty((ch, nb))
    for c in range(ch):
        for j in range(nb):
            psd[c, j] = mag[c, j] * mag[c, j]
    total = np.empty(ch)
    n_ok = 0
    for c in range(ch):
        total[c] = row_sum(psd[c], lo, nb - lo, ch)
        if total[c] > 0:
            n_ok += 1
    if n_ok == 0:
        return np.nan
    ratios = np.empty(n_ok)
    best = np.nan
    for band in range(bands.shape[0]):
        b0, b1 = bands[band, 0], bands[band, 1]
        r = 0
        for c in range(ch):
            if total[c] > 0:
                ratios[r] = row_sum(psd[c], b0, b1 - b0, n_ok) / total[c]
                r += 1
        share = np_sum(ratios, 0, n_ok) / n_ok
        if band == 0 or share > best:
            best = share
    return best


@njit(cache=True, nogil=True)
def low_share(mag: np.ndarray, n_low: int) -> float:  # pragma: no cover - compiled
    """``psd[1:1+n_low].sum() / psd[1:].sum()`` of ``psd = mag²`` (1-D); NaN without power."""
    nb = mag.shape[0]
    psd = np.empty(nb)
    for j in range(nb):
        psd[j] = mag[j] * mag[j]
    total = np_sum(psd, 1, nb - 1)
    if not total > 0:
        return np.nan
    return np_sum(psd, 1, n_low) / total


@njit(cache=True, nogil=True)
def ecg_indices(
    x: np.ndarray,
    mask: np.ndarray,
    flat_run: int,
    tol: float,
    rel_tol: float,
    win: np.ndarray,
) -> tuple[float, float, float, int, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """``gap``, ``flat`` and ``clipped`` of a float64 block's first channel (validity over all
    channels), the number of valid rows, the validity, the first channel and (with 8 valid
    rows) its demeaned, windowed copy for the wander periodogram."""
    n, ch = x.shape
    valid = np.empty(n, dtype=np.bool_)
    nv = valid_rows(x, mask, valid)
    gap = 1.0 if n == 0 else 1.0 - nv / n
    v = np.empty((n, 1))
    for i in range(n):
        v[i, 0] = x[i, 0]
    z = np.zeros(n)
    if nv == 0:
        return gap, np.nan, np.nan, nv, valid, v, z
    flat = flat_count(v[:, 0], valid, flat_run, tol) / nv
    clipped = held_count(v, valid, 3, rel_tol) / nv
    if nv >= 8:
        kept = valid_values(v, valid, nv)
        mu = np_sum(kept.ravel(), 0, nv) / nv
        for i in range(n):
            z[i] = ((v[i, 0] - mu) if valid[i] else 0.0) * win[i]
    return gap, flat, clipped, nv, valid, v, z


@njit(cache=True, nogil=True)
def local_peaks(
    e: np.ndarray, hmin: float, distance: int
) -> tuple[np.ndarray, bool]:  # pragma: no cover
    """``scipy.signal.find_peaks(e, height=hmin, distance=distance)[0]`` (plateaus peak at their
    middle; among peaks closer than ``distance`` the highest is kept first) and whether two
    candidate heights tie (then the order scipy's argsort gives them decides, and the caller
    asks scipy)."""
    n = e.shape[0]
    peaks = np.empty(n // 2 + 1, dtype=np.int64)
    count = 0
    i = 1
    i_max = n - 1
    while i < i_max:
        if e[i - 1] < e[i]:
            ahead = i + 1
            while ahead < i_max and e[ahead] == e[i]:
                ahead += 1
            if e[ahead] < e[i]:
                if hmin <= e[(i + ahead - 1) // 2]:
                    peaks[count] = (i + ahead - 1) // 2
                    count += 1
                i = ahead
        i += 1
    peaks = peaks[:count]
    heights = np.empty(count)
    for j in range(count):
        heights[j] = e[peaks[j]]
    order = np.argsort(heights, kind="mergesort")
    for j in range(1, count):
        if heights[order[j]] == heights[order[j - 1]]:
            return peaks, True
    keep = np.ones(count, dtype=np.bool_)
    for r in range(count - 1, -1, -1):
        j = order[r]
        if not keep[j]:
            continue
        k = j - 1
        while 0 <= k and peaks[j] - peaks[k] < distance:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < count and peaks[k] - peaks[j] < distance:
            keep[k] = False
            k += 1
    return peaks[keep], False


@njit(cache=True, nogil=True)
def beat_segments(
    v: np.ndarray,
    valid: np.ndarray,
    nv: int,
    detect: bool,
    sos: np.ndarray,
    before: int,
    after: int,
    distance: int,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, float]:  # pragma: no cover - compiled
    """The beats of the template index (features/quality._template): gaps of the first
    channel ``v`` filled with the valid samples' median, R peaks as ``_r_peaks`` finds them,
    complete valid beats ``-before .. +after`` around them. Returns a status (0: fewer than
    two beats, 1: beats, 2: tied peak heights, ask scipy), the demeaned beats ``s[b, L]``, the
    demeaned median beat ``t``, ``(s * s).sum(axis=1)`` and ``(t * t).sum()``."""
    n = v.shape[0]
    seg = before + after
    empty2 = np.empty((0, seg))
    empty1 = np.empty(0)
    filled = np.empty(n)
    kept = np.empty(nv)
    r = 0
    for i in range(n):
        if valid[i]:
            kept[r] = v[i]
            r += 1
    fill = median_of(kept) if nv < n else 0.0  # the gaps' value: none, none needed
    for i in range(n):
        filled[i] = v[i] if valid[i] else fill
    if not detect:
        return 0, empty2, empty1, empty1, 0.0
    level = median_of(filled.copy())
    centred = np.empty(n)
    for i in range(n):
        centred[i] = filled[i] - level
    e = np.empty(n)
    zero_phase(sos, centred, e)
    for i in range(n):
        e[i] = abs(e[i])
    k = max(1, n // 100)
    top = np.partition(e, n - k)[n - k]
    if not top > 0:
        return 0, empty2, empty1, empty1, 0.0
    peaks, tied = local_peaks(e, 0.4 * top, distance)
    if tied:
        return 2, empty2, empty1, empty1, 0.0
    starts = np.empty(peaks.shape[0], dtype=np.int64)
    nb = 0
    for p in peaks:
        if p - before >= 0 and p + after <= n:
            ok = True
            for i in range(p - before, p + after):
                if not valid[i]:
                    ok = False
                    break
            if ok:
                starts[nb] = p - before
                nb += 1
    if nb < 2:
        return 0, empty2, empty1, empty1, 0.0
    segs = np.empty((nb, seg))
    for b in range(nb):
        for j in range(seg):
            segs[b, j] = filled[starts[b] + j]
    template = np.empty(seg)
    column = np.empty(nb)
    for j in range(seg):
        for b in range(nb):
            column[b] = segs[b, j]
        template[j] = median_of(column)
    t = np.empty(seg)
    t_mean = np_sum(template, 0, seg) / seg
    for j in range(seg):
        t[j] = template[j] - t_mean
    sq = np.empty(seg)
    for j in range(seg):
        sq[j] = t[j] * t[j]
    tt = np_sum(sq, 0, seg)
    ss = np.empty(nb)
    for b in range(nb):
        s_mean = np_sum(segs[b], 0, seg) / seg
        for j in range(seg):
            segs[b, j] = segs[b, j] - s_mean
            sq[j] = segs[b, j] * segs[b, j]
        ss[b] = np_sum(sq, 0, seg)
    return 1, segs, t, ss, tt


@njit(cache=True, nogil=True)
def beat_correlation(dots: np.ndarray, ss: np.ndarray, tt: float) -> float:  # pragma: no cover
    """The template index from each beat's ``s @ t`` (NumPy's BLAS): the mean correlation,
    clipped to ``[-1, 1]``."""
    nb = dots.shape[0]
    r = np.empty(nb)
    for b in range(nb):
        denom = np.sqrt(ss[b] * tt)
        r[b] = dots[b] / denom if denom > 0 else 0.0
    mean = np_sum(r, 0, nb) / nb
    if mean < -1.0:
        return -1.0
    if mean > 1.0:
        return 1.0
    return mean


@njit(cache=True, nogil=True)
def acc_indices(
    x: np.ndarray, mask: np.ndarray, scale: float, rel_tol: float
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """``gap``, ``clipped`` and ``motion`` of a float64 accelerometer block (``scale``: the
    divisor to g); NaN where undefined."""
    n, ch = x.shape
    valid = np.empty(n, dtype=np.bool_)
    nv = valid_rows(x, mask, valid)
    gap = 1.0 if n == 0 else 1.0 - nv / n
    if nv == 0:
        return gap, np.nan, np.nan
    clipped = held_count(x, valid, 3, rel_tol) / (nv * ch)
    if nv < 2:
        return gap, clipped, np.nan
    mag = np.empty(nv)
    sq = np.empty(ch)
    r = 0
    for i in range(n):
        if valid[i]:
            for c in range(ch):
                g = x[i, c] / scale
                sq[c] = g * g
            mag[r] = np.sqrt(np_sum(sq, 0, ch))
            r += 1
    mean = np_sum(mag, 0, nv) / nv
    for i in range(nv):
        d = mag[i] - mean
        mag[i] = d * d
    s = np.sqrt(np_sum(mag, 0, nv) / nv)
    return gap, clipped, s / (s + 0.1)
