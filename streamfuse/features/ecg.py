"""ECG features: R peaks (streaming), heart rate, HRV and a signal-quality index.

HRV measures follow the Task Force of the ESC and NASPE (1996), "Heart rate variability:
standards of measurement, physiological interpretation and clinical use", Circulation
93(5):1043-1065. The kurtosis part of the quality index follows Li, Mark and Clifford (2008),
Physiol. Meas. 29(1):15-32 (clean ECG has kurtosis well above 5).
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np
import numpy.typing as npt

from ..kernels import heart
from ..kernels.filters import hold_kernel, push_valid
from ..kernels.moments import kurtosis_of
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
    rr = np.ascontiguousarray(rr_s, dtype=np.float64).reshape(-1)
    out = np.empty(5)
    heart.hrv_kernel(rr, rr.size, np.empty(max(rr.size, 1)), out)
    names = ("rr", "hr", "sdnn", "rmssd", "pnn50")
    return {k: v for k, v in zip(names, out.tolist(), strict=True) if not math.isnan(v)}


def kurtosis(x: npt.ArrayLike) -> float:
    """Pearson kurtosis (3 for a Gaussian); 0.0 for a constant signal."""
    a = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    return float(kurtosis_of(a, a.size, np.empty(2 * a.size)))


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
        # mask of the latest detector samples: the first _hist_n of _mask_hist
        self._mask_hist = np.zeros(int(4 * self.fs), dtype=bool)
        self._hist_n = 0
        self._beats: deque[float] = deque()
        # beat times separated by a bridged gap must not form an RR interval
        self._breaks: deque[float] = deque()
        self._out = np.zeros(heart.OUT_SIZE)
        p = prefix
        self._k_beats, self._k_kurt, self._k_sqi = f"{p}_beats", f"{p}_kurtosis", f"{p}_sqi"
        self._k_rr, self._k_hr = f"{p}_rr", f"{p}_hr"
        self._k_sdnn, self._k_rmssd, self._k_pnn50 = f"{p}_sdnn", f"{p}_rmssd", f"{p}_pnn50"

    def _feed(self, x: npt.NDArray[np.float64], m: npt.NDArray[np.bool_]) -> None:
        if not self._have_last:
            first = int(np.argmax(m)) if m.size else 0
            if m.size and m[first]:
                self._last = float(x[first])
                self._have_last = True
        # hold the last valid value over masked samples
        filled = np.empty(x.size)
        self._last = float(hold_kernel(x, m, self._last, filled))
        n0 = self._detector.samples_seen
        peaks = self._detector.update(filled)
        self._hist_n = push_valid(self._mask_hist, self._hist_n, m)
        if peaks.size == 0:
            return
        hist_start = n0 + m.size - self._hist_n
        for p in peaks.tolist():
            j = p - hist_start
            if 0 <= j < self._hist_n and not self._mask_hist[j]:
                continue  # a beat inside a gap is not a beat
            self._beats.append(self._origin + p / self.fs)

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
                self._hist_n = 0
                self._origin = t_start
                self._breaks.append(t_start)
            else:
                self._feed(np.full(new.gap, self._last), np.zeros(new.gap, dtype=bool))
                self._breaks.append(t_start)
        if new.start < k:
            self._feed(x[new.start :], m[new.start :])
        t_end = t_start + k / self.fs
        return self._features(t_start, t_end, x, m)

    def _features(
        self, t_start: float, t_end: float, x: npt.NDArray[np.float64], m: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        horizon = max(self.hr_s, self.hrv_s, t_end - t_start) + 5.0
        while self._beats and self._beats[0] < t_end - horizon:
            self._beats.popleft()
        while self._breaks and self._breaks[0] < t_end - horizon:
            self._breaks.popleft()
        o = self._out
        heart.ecg_window(
            np.fromiter(self._beats, dtype=np.float64, count=len(self._beats)),
            np.fromiter(self._breaks, dtype=np.float64, count=len(self._breaks)),
            t_start,
            t_end,
            t_end - self.hr_s,
            t_end - self.hrv_s,
            RR_RANGE[0],
            RR_RANGE[1],
            x,
            m,
            o,
        )
        beats, kurt, sqi, rr, hr, sdnn, rmssd, pnn50, n_hr, n_hrv = o.tolist()
        out = {self._k_beats: beats, self._k_kurt: kurt, self._k_sqi: sqi}
        if n_hr:
            out[self._k_rr] = rr
            out[self._k_hr] = hr
        if n_hrv >= 2:
            out[self._k_sdnn] = sdnn
            out[self._k_rmssd] = rmssd
            out[self._k_pnn50] = pnn50
        if all(math.isfinite(v) for v in out.values()):
            return out
        return {k: v for k, v in out.items() if math.isfinite(v)}
