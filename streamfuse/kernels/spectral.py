"""Welch power spectra of masked multichannel histories, band powers and spectral entropy.

A Welch estimate here is three steps: :func:`welch_segments` lays the gap-free, half-overlapping
segments out mean-removed and windowed, one row per (segment, channel), ready for
``numpy.fft.rfft`` along the last axis; the caller takes ``numpy.abs`` of that spectrum (the FFT
and the complex magnitude stay NumPy's own); :func:`welch_psd` averages the squared magnitudes
into a one-sided density. :func:`band_summary` turns a PSD into the EEG feature vector.
Sums follow NumPy's order (:mod:`streamfuse.kernels.moments`). Plain reference:
``tests.golden.features.naive_masked_welch`` and ``naive_band_features`` (the NumPy code these
kernels replaced).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .filters import push_rows
from .moments import col_sums, pairwise_sum


@njit(cache=True, nogil=True)
def welch_segments(
    x: np.ndarray, valid: np.ndarray, n: int, nperseg: int, win: np.ndarray, out: np.ndarray
) -> int:  # pragma: no cover - compiled
    """Write the fully valid segments of ``x[:n]`` (``[*, ch]``) into ``out``; return how many.

    Segments start every ``max(1, nperseg // 2)`` samples; one touching an invalid sample is
    skipped. Row ``q * ch + c`` of ``out`` is channel ``c`` of the ``q``-th kept segment, its
    mean removed, times ``win``. A channel's mean is summed the way NumPy's ``mean(axis=1)`` of
    the ``[segment, sample, channel]`` stack sums it: pairwise for one channel, in sample order
    for several.
    """
    ch = x.shape[1]
    step = max(1, nperseg // 2)
    col = np.empty(nperseg)
    mean = np.empty(ch)
    q = 0
    for s in range(0, n - nperseg + 1, step):
        ok = True
        for i in range(s, s + nperseg):
            if not valid[i]:
                ok = False
                break
        if not ok:
            continue
        if ch == 1:
            for i in range(nperseg):
                col[i] = x[s + i, 0]
            mean[0] = pairwise_sum(col, 0, nperseg) / nperseg
        else:  # row by row, one running sum per channel
            col_sums(x, s, s + nperseg, mean)
            for c in range(ch):
                mean[c] /= nperseg
        for c in range(ch):
            row = q * ch + c
            mu = mean[c]
            for i in range(nperseg):
                out[row, i] = (x[s + i, c] - mu) * win[i]
        q += 1
    return q


@njit(cache=True, nogil=True)
def welch_psd(
    mag: np.ndarray, nseg: int, ch: int, scale: float, nperseg: int, psd: np.ndarray
) -> None:  # pragma: no cover - compiled
    """One-sided PSD ``[ch, nf]`` from spectrum magnitudes ``mag`` (rows as in
    :func:`welch_segments`): the segments' mean of ``mag**2``, times ``scale``, doubled except
    at 0 Hz (and at Nyquist for even ``nperseg``)."""
    nf = psd.shape[1]
    hi = nf - 1 if nperseg % 2 == 0 else nf
    for c in range(ch):
        # each bin's sum over the segments in segment order, all bins of a channel side by side
        row = psd[c]
        for j in range(nf):
            row[j] = 0.0
        for q in range(nseg):
            m = mag[q * ch + c]
            for j in range(nf):
                a = m[j]
                row[j] += a * a
        for j in range(nf):
            v = row[j] / nseg * scale
            if 1 <= j < hi:
                v *= 2.0
            row[j] = v


@njit(cache=True, nogil=True)
def _bin_sum(a: np.ndarray, lo: int, n: int, single: bool) -> float:  # pragma: no cover
    """``psd[:, lo:lo + n].sum(axis=1)`` for one row the way NumPy sums it: the boolean-mask
    selection is Fortran-ordered, so rows are summed in bin order, except a lone row, which is
    one contiguous vector (pairwise)."""
    if single:
        return pairwise_sum(a, lo, n)
    s = 0.0
    for j in range(lo, lo + n):
        s += a[j]
    return s


@njit(cache=True, nogil=True)
def _floored(v: float, floor: float) -> float:  # pragma: no cover - compiled
    return floor if floor > v else v  # Python's max(v, floor), NaN kept


@njit(cache=True, nogil=True)
def band_summary(
    psd: np.ndarray,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    df: float,
    ent_lo: int,
    ent_hi: int,
    log_nbins: float,
    theta: int,
    beta: int,
    alpha: int,
    faa_left: int,
    faa_right: int,
    floor: float,
    power: np.ndarray,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """EEG band features of a PSD ``[ch, nf]`` into ``out``, in the key order of
    :func:`streamfuse.features.eeg.band_features`.

    Band ``b`` sums bins ``band_lo[b] .. band_hi[b] - 1`` (times ``df``); the entropy uses bins
    ``ent_lo .. ent_hi - 1``. ``theta``/``beta`` are band indices (-1: absent) for the ratio,
    ``alpha`` the band and ``faa_left``/``faa_right`` the channels of the asymmetry (-1:
    none). ``power`` (``[bands, ch]``) receives the absolute band powers. ``out`` holds, per
    channel, for each band log10 power and relative power, then the entropy; then per band
    the log10 of the channel-mean power and the mean relative power; the mean entropy; the
    theta/beta ratio; the asymmetry.
    Returns how many of the values written are finite.
    """
    ch = psd.shape[0]
    nb = band_lo.shape[0]
    single = ch == 1
    for b in range(nb):
        for c in range(ch):
            power[b, c] = _bin_sum(psd[c], band_lo[b], band_hi[b] - band_lo[b], single) * df
    total = np.empty(ch)
    safe = np.empty(ch)
    for c in range(ch):
        t = 0.0
        for b in range(nb):
            t += power[b, c]
        total[c] = t
        safe[c] = max(t, floor)
    ne = ent_hi - ent_lo
    terms = np.empty(max(ne, 1))
    entropy = np.empty(ch)
    for c in range(ch):
        ps = _bin_sum(psd[c], ent_lo, ne, single)
        for j in range(ne):
            q = psd[c, ent_lo + j] / ps if ps > 0 else 0.0
            terms[j] = q * np.log(q) if q > 0 else 0.0
        entropy[c] = -_bin_sum(terms, 0, ne, single) / log_nbins
    k = 0
    rel = np.empty(ch)
    for c in range(ch):
        for b in range(nb):
            pw = power[b, c]
            out[k] = np.log10(_floored(pw, floor))
            out[k + 1] = pw / safe[c] if total[c] > 0 else 0.0
            k += 2
        out[k] = entropy[c]
        k += 1
    for b in range(nb):
        out[k] = np.log10(_floored(pairwise_sum(power[b], 0, ch) / ch, floor))
        for c in range(ch):
            rel[c] = power[b, c] / safe[c] if total[c] > 0 else 0.0
        out[k + 1] = pairwise_sum(rel, 0, ch) / ch
        k += 2
    out[k] = pairwise_sum(entropy, 0, ch) / ch
    k += 1
    if theta >= 0 and beta >= 0:
        t = _floored(pairwise_sum(power[theta], 0, ch) / ch, floor)
        out[k] = t / _floored(pairwise_sum(power[beta], 0, ch) / ch, floor)
        k += 1
    if alpha >= 0 and faa_left >= 0 and faa_right >= 0:
        a = power[alpha]
        out[k] = np.log(_floored(a[faa_right], floor)) - np.log(_floored(a[faa_left], floor))
        k += 1
    n_ok = 0
    for j in range(k):
        if np.isfinite(out[j]):
            n_ok += 1
    return n_ok


@njit(cache=True, nogil=True)
def push_segments(
    block: np.ndarray,
    valid: np.ndarray,
    start: int,
    gap: int,
    hist: np.ndarray,
    hist_valid: np.ndarray,
    fill: np.ndarray,
    nperseg: int,
    win: np.ndarray,
    segs: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Append a window's new rows to a history (:func:`~streamfuse.kernels.filters.push_rows`,
    fill in ``fill[0]``), then lay out its Welch segments of ``nperseg`` samples
    (:func:`welch_segments` with window ``win``) into ``segs``; returns how many.

    Returns ``-1`` (no segments laid out) while the history holds fewer than ``nperseg``
    samples: the caller picks the shorter segment length and its window then.
    """
    n = push_rows(hist, hist_valid, fill[0], block, valid, start, gap)
    fill[0] = n
    if n < nperseg:
        return -1
    return welch_segments(hist, hist_valid, n, nperseg, win, segs)


@njit(cache=True, nogil=True)
def welch_bands(
    mag: np.ndarray,
    nseg: int,
    scale: float,
    nperseg: int,
    psd: np.ndarray,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    df: float,
    ent_lo: int,
    ent_hi: int,
    log_nbins: float,
    theta: int,
    beta: int,
    alpha: int,
    faa_left: int,
    faa_right: int,
    floor: float,
    power: np.ndarray,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """:func:`welch_psd` of the segments' spectrum magnitudes into ``psd``, then
    :func:`band_summary` of it into ``out``; returns how many values are finite."""
    welch_psd(mag, nseg, psd.shape[0], scale, nperseg, psd)
    return band_summary(
        psd,
        band_lo,
        band_hi,
        df,
        ent_lo,
        ent_hi,
        log_nbins,
        theta,
        beta,
        alpha,
        faa_left,
        faa_right,
        floor,
        power,
        out,
    )
