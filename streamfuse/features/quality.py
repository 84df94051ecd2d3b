"""Signal-quality indices of one window's resampled block, per modality.

Plain functions of a window's block (``[k, ch]`` on the grid) and its validity mask: no state,
no learning; what :mod:`streamfuse.fusion.attention` feeds its gate so it can trust a modality
less in the windows where its signal is bad. Each index is a number in ``[0, 1]`` (the
template correlation in ``[-1, 1]``) that is 0 (1 for the correlation) on a clean signal:

- ``gap``: fraction of the window with no usable data (masked, or not finite);
- ``flat``: fraction of valid samples inside flat runs (successive values within ``tol``) of at
  least ``flat_s`` seconds: a lead that came off, a frozen sensor;
- ``clipped``: fraction of valid samples held at the block's extreme (within ``rel_tol`` of
  the range) for at least ``min_run`` samples in a row: an amplifier or ADC at its rail (on a
  clean signal the extreme is a single sample);
- ECG ``template``: mean correlation of each beat (``-0.2 .. +0.4 s`` around its R peak) with
  the median beat, the template-matching index of Orphanidou et al. (2015, IEEE J. Biomed.
  Health Inform. 19(3):832-838); 0 when fewer than two beats stand out;
- ECG ``wander``: share of the power (Hann periodogram of the demeaned first channel, above
  the zero-frequency bin) below 0.7 Hz: baseline wander from a loose electrode moving with
  breathing or the body (Satija et al. 2018, IEEE Rev. Biomed. Eng. 11:36-52, list it among
  the main ECG noises); the QRS complexes put most of a clean ECG's power at 5-25 Hz;
- EEG ``line_noise``: share of the 1 Hz-to-Nyquist power within ``±1 Hz`` of the mains
  frequency (the larger of 50 and 60 Hz; channel mean of a Hann periodogram);
- EEG ``beyond``: fraction of valid samples farther than ``limit`` (150 µV by default) from
  their channel's median, beyond physiological EEG (eye blinks and electrode pops);
- EEG ``flat_channels``: fraction of channels whose spread over the window is below
  ``min_sd`` (0.5 µV): dead or shorted electrodes;
- accelerometer ``motion``: ``s / (s + 0.1 g)`` with ``s`` the spread of the acceleration
  magnitude, 0 at rest and 0.5 at 0.1 g (motion artefacts reach the other modalities too).

:func:`window_quality` picks the indices by modality name (as
:func:`~streamfuse.features.device.modality_kind` does); ``tests/naive_quality.py`` holds
plain-loop references of every index. :func:`ecg_quality`, :func:`eeg_quality` and
:func:`acc_quality` compute a block's indices in one kernel of :mod:`streamfuse.kernels.quality`
each (spectra with NumPy's FFT): ~610 -> ~110 us a window of the bench fleet, the same floats as
the per-index functions here (NumPy expressions), which ``tests/test_quality.py`` holds them to.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Container

import numpy as np
import numpy.typing as npt
from scipy import signal

from ..kernels import quality as kq
from ..types import Window
from .device import modality_kind

F = npt.NDArray[np.floating]
Mask = npt.NDArray[np.bool_]

#: standard gravity (m/s²), to express an accelerometer in m/s² as g
_G = 9.80665


def _check(block: npt.ArrayLike, mask: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(block, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"a block must be [samples, channels], got shape {x.shape}")
    m = np.ones(x.shape[0], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (x.shape[0],):
        raise ValueError(f"mask has shape {m.shape}, the block {x.shape}; pass one bool per row")
    m = m & np.isfinite(x).all(axis=1)
    return x, m


def gap_fraction(mask: npt.ArrayLike) -> float:
    """Fraction of rows with no data (1.0 for an empty window)."""
    m = np.asarray(mask, dtype=bool)
    return 1.0 if m.size == 0 else float(1.0 - m.mean())


def flat_fraction(
    x: npt.ArrayLike, mask: npt.ArrayLike | None, min_run: int, tol: float = 0.0
) -> float:
    """Fraction of valid samples of a 1-D signal inside runs of at least ``min_run``
    consecutive valid samples whose successive differences are all ``<= tol``; NaN without
    valid samples."""
    a, m = _check(x, mask)
    return _flat(np.ascontiguousarray(a[:, :1]), m, min_run, tol)


def _flat(a: np.ndarray, m: np.ndarray, min_run: int, tol: float) -> float:
    n_valid = int(m.sum())
    if n_valid == 0:
        return math.nan
    return float(kq.flat_count(a[:, 0], m, max(1, int(min_run)), float(tol)) / n_valid)


def clipped_fraction(
    x: npt.ArrayLike, mask: npt.ArrayLike | None, min_run: int = 3, rel_tol: float = 1e-3
) -> float:
    """Fraction of valid samples (over all channels) held at their channel's extreme.

    A sample counts when it is within ``rel_tol`` of the channel's valid range from the
    channel's maximum or minimum, inside a run of at least ``min_run`` such valid samples at
    the same extreme. A channel with a zero range (flat) has none; NaN without valid samples.
    """
    a, m = _check(x, mask)
    return _clipped(a, m, min_run, rel_tol)


def _clipped(a: np.ndarray, m: np.ndarray, min_run: int, rel_tol: float) -> float:
    n_valid = int(m.sum())
    if n_valid == 0:
        return math.nan
    held = kq.held_count(np.ascontiguousarray(a), m, max(1, int(min_run)), float(rel_tol))
    return float(held / (n_valid * a.shape[1]))


@functools.lru_cache(maxsize=16)
def _qrs_band(fs: float) -> np.ndarray:
    """The detector's 5-25 Hz band-pass at ``fs`` (designing it costs ~0.45 ms: once per rate,
    shared and never written)."""
    sos = signal.butter(2, [5.0, min(25.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    sos = np.ascontiguousarray(sos)
    sos.setflags(write=False)
    return sos


def _r_peaks(v: np.ndarray, fs: float) -> np.ndarray:
    """R peaks of a (gap-filled) ECG: maxima of the 5-25 Hz zero-phase band-passed signal's
    absolute value above 0.4 of its 99th percentile, at least 0.3 s apart (a cheap detector of
    one window, not the streaming one)."""
    if v.size < int(0.5 * fs) or fs < 60.0:
        return np.zeros(0, dtype=np.int64)
    e = np.empty(v.size)
    kq.zero_phase(_qrs_band(float(fs)), v - float(np.median(v)), e)
    np.abs(e, out=e)
    k = max(1, v.size // 100)
    top = float(np.partition(e, v.size - k)[v.size - k])  # the 99th percentile, about
    if not top > 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = signal.find_peaks(e, height=0.4 * top, distance=max(1, int(0.3 * fs)))
    return peaks.astype(np.int64)


def beat_template_correlation(x: npt.ArrayLike, mask: npt.ArrayLike | None, fs: float) -> float:
    """Mean Pearson correlation of each complete beat with the median beat (Orphanidou et al.
    2015); beats are ``-0.2 .. +0.4 s`` around the R peaks; 0.0 with fewer than two beats."""
    a, m = _check(x, mask)
    return _template(a, m, fs)


def _template(a: np.ndarray, m: np.ndarray, fs: float) -> float:
    v = a[:, 0].copy()
    if not m.any():
        return 0.0
    v[~m] = float(np.median(v[m]))
    before, after = int(round(0.2 * fs)), int(round(0.4 * fs))
    beats = [
        p
        for p in _r_peaks(v, fs)
        if p - before >= 0 and p + after <= v.size and m[p - before : p + after].all()
    ]
    if len(beats) < 2:
        return 0.0
    segs = np.stack([v[p - before : p + after] for p in beats])
    template = np.median(segs, axis=0)
    t = template - template.mean()
    s = segs - segs.mean(axis=1, keepdims=True)
    denom = np.sqrt((s * s).sum(axis=1) * float((t * t).sum()))
    r = np.where(denom > 0, (s @ t) / np.where(denom > 0, denom, 1.0), 0.0)
    return float(np.clip(r.mean(), -1.0, 1.0))


@functools.lru_cache(maxsize=32)
def _spectrum_plan(
    k: int, fs: float, line_hz: tuple[float, ...], half_width: float
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Hann window, the ``>= 1 Hz`` bins and each usable mains band's bins for ``k`` samples
    (cached: the same ``k`` and ``fs`` come every window)."""
    f = np.fft.rfftfreq(k, 1.0 / fs)
    lines = tuple(np.abs(f - f0) <= half_width for f0 in line_hz if f0 + half_width < fs / 2.0)
    return np.hanning(k), f >= 1.0, lines


def _line_noise(
    a: np.ndarray, m: np.ndarray, fs: float, line_hz: tuple[float, ...], half_width: float
) -> float:
    if int(m.sum()) < 8:
        return math.nan
    win, above_1hz, lines = _spectrum_plan(a.shape[0], float(fs), tuple(line_hz), half_width)
    if not lines:
        return math.nan
    v = a if m.all() else a[m]
    z = np.where(m[:, None], a - v.mean(axis=0), 0.0).T * win
    psd = np.abs(np.fft.rfft(z, axis=1)) ** 2
    total = psd[:, above_1hz].sum(axis=1)
    ok = total > 0
    if not ok.any():
        return math.nan
    return max(float((psd[ok][:, band].sum(axis=1) / total[ok]).mean()) for band in lines)


def _wander(a: np.ndarray, m: np.ndarray, fs: float, cutoff: float) -> float:
    if int(m.sum()) < 8:
        return math.nan
    v = a[:, 0]
    mu = float(v[m].mean())
    win = _spectrum_plan(a.shape[0], float(fs), (), 1.0)[0]
    z = np.where(m, v - mu, 0.0) * win
    psd = np.abs(np.fft.rfft(z)) ** 2
    f = np.fft.rfftfreq(a.shape[0], 1.0 / fs)
    total = float(psd[1:].sum())
    if not total > 0:
        return math.nan
    return float(psd[1:][f[1:] < cutoff].sum() / total)


def wander_ratio(
    x: npt.ArrayLike, mask: npt.ArrayLike | None, fs: float, cutoff: float = 0.7
) -> float:
    """Share of a 1-D signal's power above the zero-frequency bin that lies below ``cutoff``
    Hz (Hann periodogram of the demeaned valid samples, gaps set to the mean); NaN with fewer
    than 8 valid samples or no power."""
    a, m = _check(x, mask)
    return _wander(a, m, fs, cutoff)


def line_noise_ratio(
    x: npt.ArrayLike,
    mask: npt.ArrayLike | None,
    fs: float,
    line_hz: tuple[float, ...] = (50.0, 60.0),
    half_width: float = 1.0,
) -> float:
    """Share of the ``[1 Hz, Nyquist]`` power within ``half_width`` of a mains frequency (the
    largest share over ``line_hz``), the mean over channels of a Hann periodogram of the
    demeaned valid samples (gaps set to the mean). NaN when no mains frequency is below
    Nyquist, fewer than 8 valid samples or no channel has power."""
    a, m = _check(x, mask)
    return _line_noise(a, m, fs, line_hz, half_width)


def _beyond(a: np.ndarray, m: np.ndarray, limit: float) -> float:
    if not m.any():
        return math.nan
    v = a if m.all() else a[m]
    return float((np.abs(v - np.median(v, axis=0)) > limit).mean())


def beyond_fraction(x: npt.ArrayLike, mask: npt.ArrayLike | None, limit: float) -> float:
    """Fraction of valid samples (all channels) farther than ``limit`` from their channel's
    median; NaN without valid samples."""
    a, m = _check(x, mask)
    return _beyond(a, m, limit)


def _flat_channels(a: np.ndarray, m: np.ndarray, min_sd: float) -> float:
    if int(m.sum()) < 2:
        return math.nan
    v = a if m.all() else a[m]
    return float((v.std(axis=0) < min_sd).mean())


def flat_channel_fraction(x: npt.ArrayLike, mask: npt.ArrayLike | None, min_sd: float) -> float:
    """Fraction of channels whose standard deviation over the valid samples is below
    ``min_sd``; NaN with fewer than two valid samples."""
    a, m = _check(x, mask)
    return _flat_channels(a, m, min_sd)


def _motion(a: np.ndarray, m: np.ndarray, unit: str) -> float:
    if int(m.sum()) < 2:
        return math.nan
    v = (a if m.all() else a[m]) / (_G if unit in ("m/s2", "m/s^2", "m/s²") else 1.0)
    s = float(np.sqrt((v * v).sum(axis=1)).std())
    return s / (s + 0.1)


def motion_index(x: npt.ArrayLike, mask: npt.ArrayLike | None, unit: str = "g") -> float:
    """``s / (s + 0.1)`` with ``s`` the standard deviation (g) of the acceleration magnitude
    over valid samples; NaN with fewer than two."""
    a, m = _check(x, mask)
    return _motion(a, m, unit)


def _clean(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if math.isfinite(v)}


def _block(block: npt.ArrayLike, mask: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """``block`` as a C-contiguous float64 ``[k, ch]`` and ``mask`` as bools (all true for
    None); the same checks as :func:`_check`, the finite test left to the kernels."""
    x = np.asarray(block, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"a block must be [samples, channels], got shape {x.shape}")
    m = np.ones(x.shape[0], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (x.shape[0],):
        raise ValueError(f"mask has shape {m.shape}, the block {x.shape}; pass one bool per row")
    return np.ascontiguousarray(x), np.ascontiguousarray(m)


@functools.lru_cache(maxsize=32)
def _wander_plan(k: int, fs: float, cutoff: float) -> tuple[np.ndarray, int]:
    """Hann window and how many bins after the zero-frequency one lie below ``cutoff``
    (``_wander``'s ``f[1:] < cutoff``, a prefix as the frequencies rise)."""
    f = np.fft.rfftfreq(k, 1.0 / fs)
    return _spectrum_plan(k, fs, (), 1.0)[0], int((f[1:] < cutoff).sum())


@functools.lru_cache(maxsize=32)
def _line_plan(
    k: int, fs: float, line_hz: tuple[float, ...], half_width: float
) -> tuple[np.ndarray, int, np.ndarray]:
    """``_spectrum_plan`` as bin ranges: Hann window, the first bin at or above 1 Hz, and each
    usable mains band's ``[first, end)`` bins (``|f - f0| <= half_width`` is one run)."""
    win, above_1hz, lines = _spectrum_plan(k, fs, line_hz, half_width)
    bands = np.zeros((len(lines), 2), dtype=np.int64)
    for i, band in enumerate(lines):
        idx = np.flatnonzero(band)
        bands[i] = (idx[0], idx[-1] + 1) if idx.size else (0, 0)
        assert idx.size == 0 or idx.size == idx[-1] + 1 - idx[0]
    lo = int(np.argmax(above_1hz)) if above_1hz.any() else above_1hz.size
    return win, lo, bands


def ecg_quality(
    block: npt.ArrayLike,
    mask: npt.ArrayLike | None,
    fs: float,
    *,
    flat_s: float = 0.2,
    tol: float = 0.0,
) -> dict[str, float]:
    """``gap``, ``flat``, ``clipped``, ``template`` and ``wander`` of an ECG block (first
    channel)."""
    x, m = _block(block, mask)
    k = x.shape[0]
    win, n_low = _wander_plan(k, float(fs), 0.7)
    gap, flat, clipped, nv, valid, v, z = kq.ecg_indices(
        x, m, max(1, max(2, int(round(flat_s * fs)))), float(tol), 1e-3, win
    )
    template = 0.0
    if nv:
        detect = not (k < int(0.5 * fs) or fs < 60.0)
        sos = _qrs_band(float(fs)) if detect else _NO_SOS
        status, s, t, ss, tt = kq.beat_segments(
            v[:, 0],
            valid,
            nv,
            detect,
            sos,
            int(round(0.2 * fs)),
            int(round(0.4 * fs)),
            max(1, int(0.3 * fs)),
        )
        if status == 1:
            template = float(kq.beat_correlation(s @ t, ss, tt))
        elif status == 2:  # tied peak heights: scipy's own order decides
            template = _template(v, valid, fs)
    wander = math.nan
    if nv >= 8:
        wander = float(kq.low_share(np.abs(np.fft.rfft(z)), n_low))
    return _clean(
        {
            "gap": float(gap),
            "flat": float(flat),
            "clipped": float(clipped),
            "template": template,
            "wander": wander,
        }
    )


_NO_SOS = np.zeros((1, 6))


def eeg_quality(
    block: npt.ArrayLike,
    mask: npt.ArrayLike | None,
    fs: float,
    *,
    limit: float = 150.0,
    min_sd: float = 0.5,
    line_hz: tuple[float, ...] = (50.0, 60.0),
) -> dict[str, float]:
    """``gap``, ``line_noise``, ``beyond``, ``flat_channels`` and ``clipped`` of an EEG block
    (``limit`` and ``min_sd`` in the block's unit, µV by default)."""
    x, m = _block(block, mask)
    win, lo, bands = _line_plan(x.shape[0], float(fs), tuple(line_hz), 1.0)
    spectrum = bands.shape[0] > 0
    gap, beyond, flat_channels, clipped, z, nv = kq.eeg_indices(
        x, m, float(limit), float(min_sd), 1e-3, win, spectrum
    )
    line_noise = math.nan
    if nv >= 8 and spectrum:
        line_noise = float(kq.band_share(np.abs(np.fft.rfft(z, axis=1)), lo, bands))
    return _clean(
        {
            "gap": float(gap),
            "line_noise": line_noise,
            "beyond": float(beyond),
            "flat_channels": float(flat_channels),
            "clipped": float(clipped),
        }
    )


def acc_quality(
    block: npt.ArrayLike, mask: npt.ArrayLike | None, fs: float, *, unit: str = "g"
) -> dict[str, float]:
    """``gap``, ``clipped`` and ``motion`` of an accelerometer block."""
    x, m = _block(block, mask)
    scale = _G if unit in ("m/s2", "m/s^2", "m/s²") else 1.0
    gap, clipped, motion = kq.acc_indices(x, m, scale, 1e-3)
    return _clean({"gap": float(gap), "clipped": float(clipped), "motion": float(motion)})


def window_quality(
    modality: str, block: npt.ArrayLike, mask: npt.ArrayLike | None, fs: float
) -> dict[str, float]:
    """The quality indices of one modality's block, chosen by its name (``ecg*``, ``eeg*``,
    ``acc*``; anything else: ``gap``, ``flat`` over 0.2 s of its first channel, ``clipped``).
    Undefined indices are left out."""
    kind = modality_kind(modality)
    if kind == "ecg":
        return ecg_quality(block, mask, fs)
    if kind == "eeg":
        return eeg_quality(block, mask, fs)
    if kind == "acc":
        return acc_quality(block, mask, fs)
    a, m = _check(block, mask)
    return _clean(
        {
            "gap": gap_fraction(m),
            "flat": _flat(np.ascontiguousarray(a[:, :1]), m, max(2, int(round(0.2 * fs))), 0.0),
            "clipped": _clipped(a, m, 3, 1e-3),
        }
    )


def modality_quality(window: Window, modalities: Container[str]) -> dict[str, dict[str, float]]:
    """:func:`window_quality` of each of ``window``'s blocks whose modality is in
    ``modalities``, in the window's order."""
    return {
        m: window_quality(m, window.blocks[m], window.masks.get(m), window.fs)
        for m in window.blocks
        if m in modalities
    }
