"""The ECG extractor's whole per-window pass in one kernel call: hold masked samples, band-pass
and detect R peaks (the streaming QRS detector's kernels), drop beats inside gaps, forget beats
beyond the horizon and compute the window's features (:func:`streamfuse.kernels.heart.ecg_window`).

One call replaces six kernel calls and the NumPy and ``deque`` work between them
(:class:`streamfuse.features.ecg.ECGFeatures` holds the state and documents the method); the
operations are the ones those calls made, in their order, so the features are bit-identical.
Golden master: ``tests.golden.features.NaiveECGFeatures``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .filters import push_valid, sosfilt_kernel
from .heart import OUT_HR, OUT_N_HR, OUT_N_HRV, OUT_RR, ecg_window
from .qrs import I_N, I_STARTED, LEARN_CAP, qrs_kernel

# indices into the extractor's float64 state
E_LAST = 0  # last valid sample (held over masked ones)
E_ORIGIN = 1  # grid time of detector sample 0
EF = 2
# indices into its int64 state
E_HAVE_LAST = 0  # whether E_LAST holds a valid sample yet
E_HIST_N = 1  # fill of the mask history
E_N_BEATS = 2  # beat times in use
E_N_BREAKS = 3  # break times in use
EI = 4

#: which keys a window has: bit 0 heart rate (an RR interval), bit 1 HRV (two of them)
LAYOUT_HR, LAYOUT_HRV = 1, 2


@njit(cache=True, nogil=True)
def _feed(
    vals,
    valid,
    sos,
    zi,
    unit_zi,
    fst,
    ist,
    bp_ring,
    sq_ring,
    slope_ring,
    rr_ring,
    learn_val,
    learn_loc,
    learn_slope,
    win,
    confirm,
    refractory,
    twave,
    learn,
    delay,
    fs,
    est_f,
    est_i,
    mask_hist,
    beats,
):  # pragma: no cover - compiled
    """One stretch of samples (``valid`` False where masked) through hold, filter, detector."""
    n = vals.shape[0]
    last = est_f[E_LAST]
    if est_i[E_HAVE_LAST] == 0:
        for i in range(n):
            if valid[i]:
                last = vals[i]
                est_i[E_HAVE_LAST] = 1
                break
    filled = np.empty(n)
    for i in range(n):
        if valid[i]:
            last = vals[i]
        filled[i] = last
    est_f[E_LAST] = last
    if ist[I_STARTED] == 0:
        # start in the steady state of the first sample: no step transient at the start
        for s in range(zi.shape[0]):
            zi[s, 0] = unit_zi[s, 0] * filled[0]
            zi[s, 1] = unit_zi[s, 1] * filled[0]
        ist[I_STARTED] = 1
    bp = np.empty(n)
    sosfilt_kernel(sos, zi, filled, bp)
    n0 = ist[I_N]
    peaks = np.empty(n // max(1, refractory) + LEARN_CAP + 2, dtype=np.int64)
    npk = qrs_kernel(
        bp,
        fst,
        ist,
        bp_ring,
        sq_ring,
        slope_ring,
        rr_ring,
        learn_val,
        learn_loc,
        learn_slope,
        win,
        confirm,
        refractory,
        twave,
        learn,
        delay,
        fs,
        peaks,
    )
    hist_n = push_valid(mask_hist, est_i[E_HIST_N], valid)
    est_i[E_HIST_N] = hist_n
    hist_start = n0 + n - hist_n
    nb = est_i[E_N_BEATS]
    origin = est_f[E_ORIGIN]
    for i in range(npk):
        p = peaks[i]
        j = p - hist_start
        if 0 <= j < hist_n and not mask_hist[j]:
            continue  # a beat inside a gap is not a beat
        beats[nb] = origin + p / fs
        nb += 1
    est_i[E_N_BEATS] = nb


@njit(cache=True, nogil=True)
def _prune(times: np.ndarray, n: int, oldest: float) -> int:  # pragma: no cover - compiled
    """Drop the leading times before ``oldest`` from ``times[:n]``; return how many remain."""
    drop = 0
    while drop < n and times[drop] < oldest:
        drop += 1
    if drop:
        for i in range(n - drop):
            times[i] = times[i + drop]
    return n - drop


@njit(cache=True, nogil=True)
def ecg_update(
    block: np.ndarray,
    mask: np.ndarray,
    start: int,
    gap: int,
    t_start: float,
    hr_s: float,
    hrv_s: float,
    rr_lo: float,
    rr_hi: float,
    sos: np.ndarray,
    zi: np.ndarray,
    unit_zi: np.ndarray,
    fst: np.ndarray,
    ist: np.ndarray,
    bp_ring: np.ndarray,
    sq_ring: np.ndarray,
    slope_ring: np.ndarray,
    rr_ring: np.ndarray,
    learn_val: np.ndarray,
    learn_loc: np.ndarray,
    learn_slope: np.ndarray,
    win: int,
    confirm: int,
    refractory: int,
    twave: int,
    learn: int,
    delay: int,
    fs: float,
    est_f: np.ndarray,
    est_i: np.ndarray,
    mask_hist: np.ndarray,
    beats: np.ndarray,
    breaks: np.ndarray,
    full: np.ndarray,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Consume ``gap`` bridged samples (the last valid value, masked), then rows ``start:`` of
    the window ``block`` (first column) and return the window's features.

    ``full`` receives :func:`~streamfuse.kernels.heart.ecg_window`'s output; ``out`` the
    values of the keys the window has, in key order (beats, kurtosis, SQI, then RR and HR
    with :data:`LAYOUT_HR`, then SDNN, RMSSD, pNN50 with :data:`LAYOUT_HRV`). Returns that
    layout, or ``-1 - layout`` when a value is not finite. ``beats`` must hold every beat
    the samples can add (the caller grows it). Returns -100, with nothing changed, when a
    valid sample is not finite.
    """
    k = block.shape[0]
    x = np.empty(k)
    for i in range(k):
        v = np.float64(block[i, 0])
        if mask[i] and i >= start and not np.isfinite(v):
            return -100
        x[i] = v
    if gap > 0:
        vals = np.full(gap, est_f[E_LAST])
        valid = np.zeros(gap, dtype=np.bool_)
        _feed(
            vals,
            valid,
            sos,
            zi,
            unit_zi,
            fst,
            ist,
            bp_ring,
            sq_ring,
            slope_ring,
            rr_ring,
            learn_val,
            learn_loc,
            learn_slope,
            win,
            confirm,
            refractory,
            twave,
            learn,
            delay,
            fs,
            est_f,
            est_i,
            mask_hist,
            beats,
        )
    if start < k:
        _feed(
            x[start:],
            mask[start:],
            sos,
            zi,
            unit_zi,
            fst,
            ist,
            bp_ring,
            sq_ring,
            slope_ring,
            rr_ring,
            learn_val,
            learn_loc,
            learn_slope,
            win,
            confirm,
            refractory,
            twave,
            learn,
            delay,
            fs,
            est_f,
            est_i,
            mask_hist,
            beats,
        )
    t_end = t_start + k / fs
    horizon = max(max(hr_s, hrv_s), t_end - t_start) + 5.0
    nb = _prune(beats, est_i[E_N_BEATS], t_end - horizon)
    nbr = _prune(breaks, est_i[E_N_BREAKS], t_end - horizon)
    est_i[E_N_BEATS] = nb
    est_i[E_N_BREAKS] = nbr
    ecg_window(
        beats[:nb],
        breaks[:nbr],
        t_start,
        t_end,
        t_end - hr_s,
        t_end - hrv_s,
        rr_lo,
        rr_hi,
        x,
        mask,
        full,
    )
    for i in range(3):
        out[i] = full[i]
    j = 3
    layout = 0
    if full[OUT_N_HR] != 0:
        out[j] = full[OUT_RR]
        out[j + 1] = full[OUT_HR]
        j += 2
        layout |= LAYOUT_HR
    if full[OUT_N_HRV] >= 2:
        for i in range(3):
            out[j + i] = full[OUT_HR + 1 + i]
        j += 3
        layout |= LAYOUT_HRV
    for i in range(j):
        if not np.isfinite(out[i]):
            return -1 - layout
    return layout
