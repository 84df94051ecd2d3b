"""GOLDEN MASTER, not a reference: the feature code frozen before its Numba kernels (issue 8).

This is the feature code as it stood before its per-window work moved into Numba kernels
(``streamfuse.kernels.moments``, ``filters``, ``spectral``, ``motion``, ``heart``, ``early``,
``welford``): the same classes and functions, renamed ``naive_*`` / ``Naive*``. Tests check
the kernels and the extractors built on them against these; ``bench/test_bench_features.py``
times them side by side. The plain-loop references of the small kernels (pairwise sum, hold,
tail) are in ``tests/naive.py``; this larger module sits beside it so that file's sections stay
short and independent.

Being a frozen copy, it shares constants and a few pieces with the production code (the QRS
detector, the step kernel, cursors, key names), and repeats the production code where that code
did not change since. Do not update it to follow the production code: its worth is that it
stands still. Where a feature's definition changes on purpose, change the test's expectation
and say so, or freeze a new copy here.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt
from scipy import signal

from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.features.acc import STANDARD_GRAVITY, STEP_MIN_G, STEP_MIN_S, step_kernel
from streamfuse.features.device import modality_kind
from streamfuse.features.ecg import MAX_BRIDGE_S, RR_RANGE
from streamfuse.features.eeg import _ASYMMETRY_PAIRS, BANDS, POWER_FLOOR, unique_keys
from streamfuse.features.generic import REL_BANDS
from streamfuse.features.qrs import StreamingQRSDetector
from streamfuse.features.stream import Cursor
from streamfuse.fusion.early import EPS, early_keys
from streamfuse.types import Window
from tests.naive import naive_tail

# --- streamfuse.features.spectrum / eeg (before the kernels) ---------------------------------


def naive_masked_welch(
    x: npt.ArrayLike, mask: npt.ArrayLike, fs: float, nperseg: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """One-sided power spectral density (units²/Hz) from the fully valid segments of ``x``.

    Parameters
    ----------
    x : array_like
        ``[n, ch]`` samples.
    mask : array_like
        ``bool[n]``, True where a sample is backed by data; segments touching a False sample
        are skipped so gaps (zero-filled) add no false power.
    fs : float
        Sampling rate (Hz).
    nperseg : int
        Segment length; segments overlap by half, each is mean-removed and Hann-windowed.

    Returns
    -------
    (freqs, psd) or None
        ``psd`` is ``[ch, nperseg // 2 + 1]``; None when no valid segment exists.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    m = np.asarray(mask, dtype=bool)
    n = a.shape[0]
    nperseg = int(min(nperseg, n))
    if nperseg < 4:
        return None
    step = max(1, nperseg // 2)
    starts = [s for s in range(0, n - nperseg + 1, step) if m[s : s + nperseg].all()]
    if not starts:
        return None
    win = np.hanning(nperseg + 2)[1:-1]  # periodic-free Hann without zero end points
    scale = 1.0 / (fs * float(np.sum(win * win)))
    segs = np.stack([a[s : s + nperseg] for s in starts])  # [seg, nperseg, ch]
    segs = segs - segs.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(segs * win[None, :, None], axis=1)
    psd = (np.abs(spec) ** 2).mean(axis=0).T * scale  # [ch, f]
    if nperseg % 2 == 0:
        psd[:, 1:-1] *= 2.0
    else:
        psd[:, 1:] *= 2.0
    freqs = np.fft.rfftfreq(nperseg, d=1.0 / fs).astype(np.float64)
    return freqs, np.asarray(psd, dtype=np.float64)


def naive_band_power(freqs: np.ndarray, psd: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Power in ``[lo, hi)`` Hz per channel (PSD summed times the bin width)."""
    if freqs.size < 2:
        return np.zeros(psd.shape[0])
    df = float(freqs[1] - freqs[0])
    sel = (freqs >= lo) & (freqs < hi)
    return psd[:, sel].sum(axis=1) * df


def naive_band_features(
    prefix: str,
    keys: list[str],
    freqs: np.ndarray,
    psd: np.ndarray,
) -> dict[str, float]:
    """EEG feature dict from a PSD ``[ch, f]`` (see :class:`EEGFeatures` for the keys)."""
    nyq = float(freqs[-1])
    bands = {b: (lo, min(hi, nyq + 1e-9)) for b, (lo, hi) in BANDS.items() if lo < nyq}
    power = {b: naive_band_power(freqs, psd, lo, hi) for b, (lo, hi) in bands.items()}
    total = np.sum(list(power.values()), axis=0)
    safe_total = np.maximum(total, POWER_FLOOR)
    lo_all = min(lo for lo, _ in bands.values())
    hi_all = max(hi for _, hi in bands.values())
    sel = (freqs >= lo_all) & (freqs < hi_all)
    p = psd[:, sel]
    ps = p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(ps > 0, p / np.where(ps > 0, ps, 1.0), 0.0)
        h = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=1)
    nbins = max(2, int(sel.sum()))
    entropy = h / np.log(nbins)
    out: dict[str, float] = {}
    for c, key in enumerate(keys):
        for b, pw in power.items():
            out[f"{prefix}_{key}_{b}"] = float(np.log10(max(pw[c], POWER_FLOOR)))
            out[f"{prefix}_{key}_{b}_rel"] = float(pw[c] / safe_total[c]) if total[c] > 0 else 0.0
        out[f"{prefix}_{key}_sent"] = float(entropy[c])
    for b, pw in power.items():
        out[f"{prefix}_{b}"] = float(np.log10(max(float(pw.mean()), POWER_FLOOR)))
        rel = np.where(total > 0, pw / safe_total, 0.0)
        out[f"{prefix}_{b}_rel"] = float(rel.mean())
    out[f"{prefix}_sent"] = float(entropy.mean())
    if "theta" in power and "beta" in power:
        out[f"{prefix}_theta_beta"] = float(
            max(float(power["theta"].mean()), POWER_FLOOR)
            / max(float(power["beta"].mean()), POWER_FLOOR)
        )
    if "alpha" in power:
        for left, right in _ASYMMETRY_PAIRS:
            if left in keys and right in keys:
                a = power["alpha"]
                la = max(float(a[keys.index(left)]), POWER_FLOOR)
                ra = max(float(a[keys.index(right)]), POWER_FLOOR)
                out[f"{prefix}_faa"] = float(np.log(ra) - np.log(la))
                break
    return out


class NaiveEEGFeatures:
    """Stateful EEG band-power features of one device.

    The extractor keeps the last ``span_s`` seconds of grid samples it has consumed (each grid
    sample once, whatever the window overlap) and computes a Welch PSD (1 s Hann segments,
    half overlap, only segments free of gaps) over them at each window.

    Notes
    -----
    Keys (``<p>`` the prefix, ``<c>`` a channel key from :func:`channel_key`, ``<b>`` a band of
    :data:`BANDS` below Nyquist): ``<p>_<c>_<b>`` log10 absolute power (units²),
    ``<p>_<c>_<b>_rel`` relative power (share of the summed bands), ``<p>_<c>_sent`` normalised
    spectral entropy (0-1); channel means ``<p>_<b>``, ``<p>_<b>_rel``, ``<p>_sent``;
    ``<p>_theta_beta`` (ratio of mean powers); ``<p>_faa`` frontal alpha asymmetry when F3/F4
    (else Fp1/Fp2) exist. No keys at all while no gap-free second of data has been seen.
    """

    def __init__(
        self, prefix: str, channel_names: tuple[str, ...], fs: float, *, span_s: float = 2.0
    ) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        self.keys = unique_keys(channel_names)
        self.span = max(4, int(round(span_s * self.fs)))
        self.nperseg = max(4, min(self.span, int(round(self.fs))))
        self._cursor = Cursor(self.fs)
        self._x = np.zeros((0, len(self.keys)), dtype=np.float64)
        self._m = np.zeros(0, dtype=bool)

    def update(self, t_start: float, block: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """Consume the new samples of one window and return the features."""
        new = self._cursor.advance(t_start, block.shape[0])
        x = np.asarray(block, dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        if new.gap:
            gx = np.zeros((min(new.gap, self.span), x.shape[1]))
            self._x = naive_tail(self._x, gx, self.span)
            self._m = naive_tail(self._m, np.zeros(gx.shape[0], dtype=bool), self.span)
        self._x = naive_tail(self._x, x[new.start :], self.span)
        self._m = naive_tail(self._m, m[new.start :], self.span)
        res = naive_masked_welch(self._x, self._m, self.fs, self.nperseg)
        if res is None:
            return {}
        return naive_band_features(self.prefix, self.keys, *res)


# --- streamfuse.features.acc (before the kernels) ----------------------------------------


def _naive_band_sos(lo: float, hi: float, fs: float) -> np.ndarray:
    hi = min(hi, 0.45 * fs)
    lo = min(lo, 0.5 * hi)
    return signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")


class NaiveAccFeatures:
    """Stateful accelerometer features of one device.

    Parameters
    ----------
    prefix : str
        Key prefix (the modality name).
    fs : float
        Grid rate (Hz).
    unit : str
        ``"g"`` (default) or ``"m/s2"``; converted to g.
    span_s : float
        Samples kept for the dominant frequency.
    cadence_s : float
        Trailing span (s) over which steps are counted for the cadence.

    Notes
    -----
    Keys: ``<p>_mag`` mean magnitude (g), ``<p>_mag_std``, ``<p>_enmo`` (g), ``<p>_var`` summed
    per-axis variance (g²), ``<p>_activity`` its square root (g), ``<p>_counts`` mean rectified
    0.29-1.63 Hz band-passed magnitude (g), ``<p>_dom_freq`` dominant frequency of the magnitude
    in 0.3-5 Hz (Hz; 0.0 when the signal is flat), ``<p>_cadence`` steps per minute. Window
    statistics use valid samples only; all keys are omitted when the window has none.
    """

    def __init__(
        self,
        prefix: str,
        fs: float,
        *,
        unit: str = "g",
        span_s: float = 4.0,
        cadence_s: float = 6.0,
    ) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        u = unit.strip().lower().replace(" ", "")
        self.scale = 1.0 / STANDARD_GRAVITY if u in ("m/s2", "m/s^2", "ms-2", "m/s²") else 1.0
        self.span = max(8, int(round(span_s * self.fs)))
        self.cadence_s = float(cadence_s)
        self._cursor = Cursor(self.fs)
        self._count_sos = _naive_band_sos(0.29, 1.63, self.fs)
        self._step_sos = _naive_band_sos(0.5, 3.0, self.fs)
        self._count_zi: np.ndarray | None = None
        self._step_zi: np.ndarray | None = None
        self._step_state = np.array([0.0, 0.0, 0.0, -1.0, 0.0])
        self._origin = float("nan")
        self._steps: list[float] = []
        self._mag = np.zeros(0)
        self._counts = np.zeros(0)
        self._m = np.zeros(0, dtype=bool)
        self._last_mag = 0.0

    def _consume(self, mag: np.ndarray, m: np.ndarray) -> None:
        held = mag.copy()
        last = self._last_mag
        for i in range(held.size):  # hold the last valid magnitude over gaps
            if m[i]:
                last = held[i]
            else:
                held[i] = last
        self._last_mag = last
        if self._count_zi is None:
            self._count_zi = signal.sosfilt_zi(self._count_sos) * held[0]
            self._step_zi = signal.sosfilt_zi(self._step_sos) * held[0]
        counts, self._count_zi = signal.sosfilt(self._count_sos, held, zi=self._count_zi)
        steps_bp, self._step_zi = signal.sosfilt(self._step_sos, held, zi=self._step_zi)
        out = np.empty(held.size + 1, dtype=np.int64)
        k = step_kernel(
            steps_bp, m, self._step_state, STEP_MIN_G, int(round(STEP_MIN_S * self.fs)), out
        )
        self._steps.extend(self._origin + out[:k] / self.fs)
        self._mag = naive_tail(self._mag, mag, self.span)
        self._counts = naive_tail(self._counts, np.abs(counts), self.span)
        self._m = naive_tail(self._m, m, self.span)

    def update(self, t_start: float, block: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """Consume the new samples of one window and return its features."""
        k = block.shape[0]
        x = np.asarray(block, dtype=np.float64) * self.scale
        m = np.asarray(mask, dtype=bool)
        mag = np.sqrt(np.sum(x * x, axis=1))
        if np.isnan(self._origin):
            self._origin = t_start
        new = self._cursor.advance(t_start, k)
        if new.gap:
            self._consume(np.zeros(new.gap), np.zeros(new.gap, dtype=bool))
        if new.start < k:
            self._consume(mag[new.start :], m[new.start :])
        t_end = t_start + k / self.fs
        self._steps = [s for s in self._steps if s >= t_end - self.cadence_s]
        if not m.any():
            return {}
        p = self.prefix
        xv = x[m]
        mv = mag[m]
        var = float(np.sum(xv.var(axis=0)))
        nk = min(k, self._counts.size)
        cm = self._m[-nk:]
        counts = float(self._counts[-nk:][cm].mean()) if cm.any() else 0.0
        out = {
            f"{p}_mag": float(mv.mean()),
            f"{p}_mag_std": float(mv.std()),
            f"{p}_enmo": float(np.maximum(mv - 1.0, 0.0).mean()),
            f"{p}_var": var,
            f"{p}_activity": float(np.sqrt(var)),
            f"{p}_counts": counts,
        }
        res = naive_masked_welch(self._mag, self._m, self.fs, self._mag.size)
        dom = 0.0
        if res is not None:
            freqs, psd = res
            sel = (freqs >= 0.3) & (freqs <= min(5.0, 0.5 * self.fs))
            if sel.any() and psd[0, sel].max() > 1e-10:
                dom = float(freqs[sel][np.argmax(psd[0, sel])])
        out[f"{p}_dom_freq"] = dom
        covered = min(self.cadence_s, t_end - self._origin)
        steps = sum(1 for s in self._steps if s < t_end)
        out[f"{p}_cadence"] = float(steps * 60.0 / covered) if covered > 0 else 0.0
        return out


# --- streamfuse.features.ecg (before the kernels) ----------------------------------------


def naive_hrv(rr_s: object) -> dict[str, float]:
    """Time-domain HRV of RR intervals in seconds: mean RR, HR, SDNN, RMSSD (ms), pNN50.

    Needs at least two intervals for SDNN and RMSSD; returns only what is defined.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in naive_hrv([0.8, 0.9, 0.8, 0.86]).items()}
    {'rr': 0.84, 'hr': 71.429, 'sdnn': 48.99, 'rmssd': 88.694, 'pnn50': 1.0}
    """
    rr = np.asarray(rr_s, dtype=np.float64)
    out: dict[str, float] = {}
    if rr.size == 0:
        return out
    out["rr"] = float(rr.mean())
    out["hr"] = float(60.0 / rr.mean())
    if rr.size >= 2:
        d = np.diff(rr) * 1e3
        out["sdnn"] = float(rr.std(ddof=1) * 1e3)
        out["rmssd"] = float(np.sqrt(np.mean(d * d)))
        out["pnn50"] = float(np.mean(np.abs(d) > 50.0))
    return out


def naive_kurtosis(x: object) -> float:
    """Pearson kurtosis (3 for a Gaussian); 0.0 for a constant signal."""
    a = np.asarray(x, dtype=np.float64)
    if a.size < 4:
        return 0.0
    c = a - a.mean()
    v = float(np.mean(c * c))
    if v <= 1e-20:
        return 0.0
    return float(np.mean(c**4) / (v * v))


class NaiveECGFeatures:
    """Stateful ECG features of one device on the window grid.

    Parameters
    ----------
    prefix : str
        Key prefix (the modality name).
    fs : float
        Grid rate (Hz).
    hr_s, hrv_s : float
        Trailing spans (s, ending at the window end) for heart rate and for HRV.

    Notes
    -----
    Keys (``<p>`` is the prefix): ``<p>_beats`` beats detected inside the window;
    ``<p>_sqi`` quality in [0, 1] (valid fraction x kurtosis score x plausible-RR fraction);
    ``<p>_kurtosis``; ``<p>_hr`` (bpm) and ``<p>_rr`` (s) once an RR interval exists in the
    trailing ``hr_s``; ``<p>_sdnn``, ``<p>_rmssd`` (ms) and ``<p>_pnn50`` (0-1) once two exist
    in the trailing ``hrv_s``. Undefined keys are omitted. Masked samples are replaced by the
    last valid value before detection and beats inside masked spans are dropped.
    """

    def __init__(self, prefix: str, fs: float, *, hr_s: float = 8.0, hrv_s: float = 30.0) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        self.hr_s = float(hr_s)
        self.hrv_s = float(hrv_s)
        self._cursor = Cursor(self.fs)
        self._detector = StreamingQRSDetector(self.fs)
        self._origin = 0.0  # grid time of detector sample 0
        self._last = 0.0  # last valid value (held over masked samples)
        self._have_last = False
        self._mask_hist = np.zeros(0, dtype=bool)  # mask of the latest detector samples
        self._beats: deque[float] = deque()
        # beat times separated by a bridged gap must not form an RR interval
        self._breaks: deque[float] = deque()

    def _feed(self, x: np.ndarray, m: np.ndarray) -> None:
        filled = x.copy()
        if not self._have_last:
            valid = np.flatnonzero(m)
            if valid.size == 0:
                filled[:] = 0.0
            else:
                self._last = float(x[valid[0]])
                self._have_last = True
        # hold the last valid value over masked samples
        if not m.all():
            idx = np.where(m, np.arange(m.size), -1)
            np.maximum.accumulate(idx, out=idx)
            held = np.where(idx >= 0, x[np.maximum(idx, 0)], self._last)
            filled = held
        if m.any():
            self._last = float(x[np.flatnonzero(m)[-1]])
        n0 = self._detector.samples_seen
        peaks = self._detector.update(filled)
        hist_n = int(4 * self.fs)
        self._mask_hist = np.concatenate([self._mask_hist, m])[-hist_n:]
        hist_start = n0 + m.size - self._mask_hist.size
        for p in peaks:
            j = int(p) - hist_start
            if 0 <= j < self._mask_hist.size and not self._mask_hist[j]:
                continue  # a beat inside a gap is not a beat
            self._beats.append(self._origin + int(p) / self.fs)

    def update(self, t_start: float, block: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """Consume the new samples of one window and return its features."""
        k = block.shape[0]
        x = np.asarray(block[:, 0], dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        first = np.isnan(self._cursor.t_next)
        new = self._cursor.advance(t_start, k)
        if first:
            self._origin = t_start
        elif new.gap > 0:
            if new.gap / self.fs > MAX_BRIDGE_S:
                self._detector.reset()
                self._have_last = False
                self._mask_hist = np.zeros(0, dtype=bool)
                self._origin = t_start
                self._breaks.append(t_start)
            else:
                self._feed(np.full(new.gap, self._last), np.zeros(new.gap, dtype=bool))
                self._breaks.append(t_start)
        if new.start < k:
            self._feed(x[new.start :], m[new.start :])
        t_end = t_start + k / self.fs
        return self._features(t_start, t_end, x, m)

    def _rr_since(self, t_from: float, t_end: float) -> tuple[np.ndarray, int]:
        """Plausible RR intervals ending in ``[t_from, t_end)`` and how many ended there."""
        beats = np.fromiter(self._beats, dtype=np.float64)
        if beats.size < 2:
            return np.zeros(0), 0
        rr = np.diff(beats)
        ends = beats[1:]
        starts = beats[:-1]
        keep = (ends >= t_from) & (ends < t_end)
        for b in self._breaks:
            keep &= ~((starts < b) & (ends >= b))
        ok = keep & (rr >= RR_RANGE[0]) & (rr <= RR_RANGE[1])
        return rr[ok], int(np.count_nonzero(keep))

    def _features(
        self, t_start: float, t_end: float, x: np.ndarray, m: np.ndarray
    ) -> dict[str, float]:
        horizon = max(self.hr_s, self.hrv_s, t_end - t_start) + 5.0
        while self._beats and self._beats[0] < t_end - horizon:
            self._beats.popleft()
        while self._breaks and self._breaks[0] < t_end - horizon:
            self._breaks.popleft()
        p = self.prefix
        beats = np.fromiter(self._beats, dtype=np.float64)
        in_win = int(np.count_nonzero((beats >= t_start) & (beats < t_end)))
        valid = x[m]
        kurt = naive_kurtosis(valid)
        out: dict[str, float] = {f"{p}_beats": float(in_win), f"{p}_kurtosis": kurt}
        rr_hr, n_hr = self._rr_since(t_end - self.hr_s, t_end)
        rr_hrv, _ = self._rr_since(t_end - self.hrv_s, t_end)
        plausible = float(rr_hr.size / n_hr) if n_hr else 0.0
        valid_frac = float(m.mean()) if m.size else 0.0
        out[f"{p}_sqi"] = valid_frac * min(1.0, kurt / 5.0) * plausible
        for key, v in naive_hrv(rr_hr).items():
            if key in ("rr", "hr"):
                out[f"{p}_{key}"] = v
        for key, v in naive_hrv(rr_hrv).items():
            if key not in ("rr", "hr"):
                out[f"{p}_{key}"] = v
        return out


# --- streamfuse.features.generic / device (before the kernels) ---------------------------


class NaiveGenericFeatures:
    """Window statistics of an unknown modality (stateless: it depends on the window only).

    Keys: ``<p>_<c>_mean``, ``<p>_<c>_std`` over valid samples and ``<p>_<c>_bp<i>``, the
    share of power (mean removed) in the ``i``-th band of :data:`REL_BANDS`; the band shares
    are omitted when the window has no gap-free stretch, everything when it has no valid sample.
    """

    def __init__(self, prefix: str, channel_names: tuple[str, ...], fs: float) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        self.keys = unique_keys(channel_names)

    def update(self, t_start: float, block: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """Features of one window."""
        del t_start
        x = np.asarray(block, dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return {}
        p = self.prefix
        xv = x[m]
        out: dict[str, float] = {}
        mean = xv.mean(axis=0)
        std = xv.std(axis=0)
        for c, key in enumerate(self.keys[: x.shape[1]]):
            out[f"{p}_{key}_mean"] = float(mean[c])
            out[f"{p}_{key}_std"] = float(std[c])
        res = naive_masked_welch(x, m, self.fs, x.shape[0])
        if res is not None:
            freqs, psd = res
            nyq = 0.5 * self.fs
            bands = [naive_band_power(freqs, psd, lo * nyq, hi * nyq) for lo, hi in REL_BANDS]
            total = np.sum(bands, axis=0)
            for c, key in enumerate(self.keys[: x.shape[1]]):
                for i, bp in enumerate(bands):
                    out[f"{p}_{key}_bp{i}"] = float(bp[c] / total[c]) if total[c] > 0 else 0.0
        return out


class NaiveDeviceFeatures:
    """Per-device, stateful, causal feature extraction for all modalities.

    One instance per device. Each modality gets an extractor on first sight, chosen by name
    (``ecg*`` -> :class:`~streamfuse.features.ecg.ECGFeatures`, ``eeg*`` ->
    :class:`~streamfuse.features.eeg.EEGFeatures`, ``acc*`` ->
    :class:`~streamfuse.features.acc.AccFeatures`, anything else ->
    :class:`~streamfuse.features.generic.GenericFeatures`). objects remember the last grid
    sample consumed, so overlapping windows feed each sample once.

    Parameters
    ----------
    config : EngineConfig
        Modalities (channel names, unit) and window length.
    hr_s, hrv_s : float
        Trailing spans (s) for heart rate and HRV (at least the window length).
    """

    def __init__(self, config: EngineConfig, *, hr_s: float = 8.0, hrv_s: float = 30.0) -> None:
        self.config = config
        self.hr_s = max(hr_s, config.window_s)
        self.hrv_s = max(hrv_s, config.window_s)
        self._extractors: dict[str, object] = {}
        self._fs: dict[str, float] = {}

    def _make(self, modality: str, fs: float, channels: int) -> object:
        spec = self.config.modalities.get(modality)
        if spec is None or spec.channels != channels:
            names = tuple(f"ch{i}" for i in range(channels))
            spec = ModalitySpec(modality, names, fs)
        kind = modality_kind(modality)
        if kind == "ecg" and fs >= 50.0:
            return NaiveECGFeatures(modality, fs, hr_s=self.hr_s, hrv_s=self.hrv_s)
        if kind == "eeg":
            return NaiveEEGFeatures(modality, spec.channel_names, fs, span_s=self.config.window_s)
        if kind == "acc":
            return NaiveAccFeatures(
                modality, fs, unit=spec.unit or "g", span_s=max(4.0, self.config.window_s)
            )
        return NaiveGenericFeatures(modality, spec.channel_names, fs)

    def update(self, window: Window) -> dict[str, dict[str, float]]:
        """Features of one window, per modality present in ``window.blocks``.

        Returns ``{modality: {"<modality>_<feature>": value}}`` with finite values only; keys
        that are undefined for this window (e.g. heart rate before two beats) are omitted.
        """
        out: dict[str, dict[str, float]] = {}
        for m, block in window.blocks.items():
            blk = np.asarray(block)
            if blk.ndim == 1:
                blk = blk[:, None]
            mask = window.masks.get(m)
            if mask is None:
                mask = np.ones(blk.shape[0], dtype=bool)
            ex = self._extractors.get(m)
            if ex is None or self._fs.get(m) != window.fs:
                ex = self._make(m, window.fs, blk.shape[1])
                self._extractors[m] = ex
                self._fs[m] = window.fs
            feats = ex.update(window.t_start, blk, np.asarray(mask, dtype=bool))
            out[m] = {k: v for k, v in feats.items() if math.isfinite(v)}
        return out


# --- streamfuse.features.normalize / fusion.early (before the kernels) --------------------


class NaiveOnlineNormalizer:
    """Running mean/variance per feature (Welford), z-scores clipped to ``±clip``.

    Physiology differs between people, so one normaliser per device turns "72 bpm" into
    "about this person's usual". A feature seen fewer than ``warmup`` times maps to 0.0 (the
    neutral value of a z-score); so does one whose spread is below ``eps``.

    Parameters
    ----------
    warmup : int
        Observations of a feature before its z-score is used.
    clip : float
        Bound on the absolute z-score.
    eps : float
        Smallest standard deviation treated as spread.

    Examples
    --------
    >>> norm = NaiveOnlineNormalizer(warmup=2)
    >>> for v in (1.0, 2.0, 3.0):
    ...     norm.learn_one({"hr": v})
    >>> norm.transform_one({"hr": 4.0})
    {'hr': 2.0}
    """

    def __init__(self, warmup: int = 10, clip: float = 5.0, eps: float = 1e-9) -> None:
        self.warmup = warmup
        self.clip = clip
        self.eps = eps
        # per feature [n, mean, m2]: one lookup per value on the per-window hot path
        self._stats: dict[str, list[float]] = {}

    def learn_one(self, x: dict) -> None:
        """Update the running statistics with the finite values of ``x``."""
        stats = self._stats
        isfinite = math.isfinite
        for k, v in x.items():
            v = float(v)
            if not isfinite(v):
                continue
            st = stats.get(k)
            if st is None:
                st = stats[k] = [0, 0.0, 0.0]
            n = st[0] + 1
            mean = st[1]
            d = v - mean
            mean += d / n
            st[0] = n
            st[1] = mean
            st[2] += d * (v - mean)

    def transform_one(self, x: dict) -> dict:
        """z-scores of ``x`` (0.0 for features still warming up or without spread)."""
        out = {}
        stats = self._stats
        isfinite, sqrt = math.isfinite, math.sqrt
        need = max(self.warmup, 2)
        clip, eps = self.clip, self.eps
        for k, v in x.items():
            st = stats.get(k)
            v = float(v)
            if st is None or st[0] < need or not isfinite(v):
                out[k] = 0.0
                continue
            sd = sqrt(st[2] / (st[0] - 1))
            if sd < eps:
                out[k] = 0.0
                continue
            z = (v - st[1]) / sd
            out[k] = max(-clip, min(clip, z))
        return out

    def count(self, key: str) -> int:
        """How many values of ``key`` were learned."""
        st = self._stats.get(key)
        return 0 if st is None else int(st[0])


def naive_early_arrays(fused, segments: int) -> tuple[list[str], np.ndarray]:
    """Feature names and values of :class:`~streamfuse.fusion.early.EarlyFeatures`."""
    keys = [name for ks in early_keys(fused.channels, segments) for name in ks]
    x = np.asarray(fused.matrix, dtype=np.float64)
    m = np.asarray(fused.mask, dtype=bool)
    k, n_ch = x.shape
    if k == 0 or n_ch == 0 or not m.any():
        return keys, np.full(len(keys), np.nan)
    per = segments + 3
    mf = m.astype(np.float64)
    n = mf.sum(axis=0)
    mean = np.divide((x * mf).sum(axis=0), n, out=np.zeros(n_ch), where=n > 0)
    xc = (x - mean) * mf  # centred, zero where invalid
    segs = min(segments, k)
    edges = np.linspace(0, k, segs + 1).astype(np.int64)[:-1]
    n_s = np.add.reduceat(mf, edges, axis=0)
    s1 = np.add.reduceat(xc, edges, axis=0)
    s2 = np.add.reduceat(xc * xc, edges, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_s = s2 / n_s - (s1 / n_s) ** 2
        lv = np.log10(np.maximum(var_s, 0.0) + EPS)
        pair = m[1:] & m[:-1]
        n_p = pair.sum(axis=0)
        d = np.diff(x, axis=0) * pair
        ll = np.log10(np.abs(d).sum(axis=0) / n_p + EPS)
        zc = ((xc[1:] * xc[:-1] < 0) & pair).sum(axis=0) / n_p
        var_x = (xc * xc).sum(axis=0) / n
        var_d = (d * d).sum(axis=0) / n_p
        mob = np.log10(np.sqrt(var_d / (var_x + EPS)) + EPS)
    out = np.full((n_ch, per), np.nan)
    out[:, :segs] = np.where(n_s >= 2, lv, np.nan).T
    ok = (n_p >= 1) & (n >= 2)
    out[:, -3] = np.where(ok, ll, np.nan)
    out[:, -2] = np.where(ok, zc, np.nan)
    out[:, -1] = np.where(ok, mob, np.nan)
    return keys, out.ravel()


class NaiveArrayNormalizer:
    """Running z-scores of a fixed-layout float vector (Welford per element), vectorised.

    The array twin of :class:`~streamfuse.features.OnlineNormalizer`, same rules: NaN entries
    are skipped (not learnt, stay NaN); an entry seen fewer than ``warmup`` times, or without
    spread, maps to 0.0; z-scores are clipped to ``±clip``. The layout is tied to the channel
    names; a new layout restarts the statistics.

    Examples
    --------
    >>> import numpy as np
    >>> norm = NaiveArrayNormalizer(warmup=2)
    >>> for v in (1.0, 2.0, 3.0):
    ...     z = norm.update_transform(("a",), np.array([v, np.nan]))
    >>> z.tolist()[0], bool(np.isnan(z[1]))
    (1.0, True)

    """

    def __init__(self, warmup: int = 10, clip: float = 5.0, eps: float = 1e-9) -> None:
        self.warmup = warmup
        self.clip = clip
        self.eps = eps
        self._layout: tuple[str, ...] | None = None
        self._n = np.zeros(0)
        self._mean = np.zeros(0)
        self._m2 = np.zeros(0)

    def update_transform(self, layout: tuple[str, ...], x: np.ndarray) -> np.ndarray:
        """Learn ``x`` (its finite entries), then return its z-scores."""
        if layout != self._layout or self._n.shape != x.shape:
            self._layout = layout
            self._n = np.zeros(x.shape)
            self._mean = np.zeros(x.shape)
            self._m2 = np.zeros(x.shape)
        ok = np.isfinite(x)
        xv = np.where(ok, x, 0.0)
        n = self._n + ok
        d = np.where(ok, xv - self._mean, 0.0)
        mean = self._mean + np.divide(d, n, out=np.zeros_like(d), where=n > 0)
        self._m2 = self._m2 + d * (xv - mean) * ok
        self._n, self._mean = n, mean
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt(self._m2 / (n - 1))
            z = np.clip((xv - mean) / sd, -self.clip, self.clip)
        z = np.where((n >= max(self.warmup, 2)) & (sd >= self.eps), z, 0.0)
        return np.where(ok, z, np.nan)
