"""ECG features: R peaks (streaming), heart rate, HRV and a signal-quality index.

HRV measures follow the Task Force of the ESC and NASPE (1996), "Heart rate variability:
standards of measurement, physiological interpretation and clinical use", Circulation
93(5):1043-1065. The kurtosis part of the quality index follows Li, Mark and Clifford (2008),
Physiol. Meas. 29(1):15-32 (clean ECG has kurtosis well above 5).
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import numpy.typing as npt

from .qrs import StreamingQRSDetector
from .stream import Cursor

log = logging.getLogger("streamfuse.features.ecg")

#: RR intervals outside this range (s) are treated as detection errors and not used.
RR_RANGE = (0.25, 2.5)
#: A gap between windows longer than this (s) restarts the detector.
MAX_BRIDGE_S = 2.0


def hrv(rr_s: npt.ArrayLike) -> dict[str, float]:
    """Time-domain HRV of RR intervals in seconds: mean RR, HR, SDNN, RMSSD (ms), pNN50.

    Needs at least two intervals for SDNN and RMSSD; returns only what is defined.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in hrv([0.8, 0.9, 0.8, 0.86]).items()}
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


def kurtosis(x: npt.ArrayLike) -> float:
    """Pearson kurtosis (3 for a Gaussian); 0.0 for a constant signal."""
    a = np.asarray(x, dtype=np.float64)
    if a.size < 4:
        return 0.0
    c = a - a.mean()
    v = float(np.mean(c * c))
    if v <= 1e-20:
        return 0.0
    return float(np.mean(c**4) / (v * v))


class ECGFeatures:
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

    def _feed(self, x: npt.NDArray[np.float64], m: npt.NDArray[np.bool_]) -> None:
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

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
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
                log.debug("ECG gap of %.2f s: restarting the detector", new.gap / self.fs)
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

    def _rr_since(self, t_from: float, t_end: float) -> tuple[npt.NDArray[np.float64], int]:
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
        self, t_start: float, t_end: float, x: npt.NDArray[np.float64], m: npt.NDArray[np.bool_]
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
        kurt = kurtosis(valid)
        out: dict[str, float] = {f"{p}_beats": float(in_win), f"{p}_kurtosis": kurt}
        rr_hr, n_hr = self._rr_since(t_end - self.hr_s, t_end)
        rr_hrv, _ = self._rr_since(t_end - self.hrv_s, t_end)
        plausible = float(rr_hr.size / n_hr) if n_hr else 0.0
        valid_frac = float(m.mean()) if m.size else 0.0
        out[f"{p}_sqi"] = valid_frac * min(1.0, kurt / 5.0) * plausible
        for key, v in hrv(rr_hr).items():
            if key in ("rr", "hr"):
                out[f"{p}_{key}"] = v
        for key, v in hrv(rr_hrv).items():
            if key not in ("rr", "hr"):
                out[f"{p}_{key}"] = v
        return out
