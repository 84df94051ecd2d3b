"""ECG features: R peaks (streaming), heart rate, HRV and a signal-quality index.

HRV measures follow the Task Force of the ESC and NASPE (1996), "Heart rate variability:
standards of measurement, physiological interpretation and clinical use", Circulation
93(5):1043-1065. The kurtosis part of the quality index follows Li, Mark and Clifford (2008),
Physiol. Meas. 29(1):15-32 (clean ECG has kurtosis well above 5).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt

from ..kernels import ecg, heart
from ..kernels.moments import kurtosis_of
from ..kernels.qrs import LEARN_CAP
from .qrs import StreamingQRSDetector, _unit_zi
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
        self._unit_zi = _unit_zi(self.fs)
        # [last valid value (held over masked samples), grid time of detector sample 0]
        self._fstate = np.zeros(ecg.EF)
        # [last value valid yet, mask history fill, beats in use, breaks in use]
        self._istate = np.zeros(ecg.EI, dtype=np.int64)
        # mask of the latest detector samples: the first _istate[E_HIST_N] of _mask_hist
        self._mask_hist = np.zeros(int(4 * self.fs), dtype=bool)
        # beat times, increasing; beat times separated by a break must not form an RR interval
        self._beats = np.zeros(64)
        self._breaks = np.zeros(8)
        self._full = np.zeros(heart.OUT_SIZE)
        self._out = np.zeros(8)
        p = prefix
        names = ("beats", "kurtosis", "sqi")
        hr, hrv = ("rr", "hr"), ("sdnn", "rmssd", "pnn50")
        # the keys of each layout ecg_update returns, in the order they were always written
        self._layouts = tuple(
            tuple(
                f"{p}_{k}"
                for k in (
                    *names,
                    *(hr if layout & ecg.LAYOUT_HR else ()),
                    *(hrv if layout & ecg.LAYOUT_HRV else ()),
                )
            )
            for layout in range(4)
        )

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Consume the new samples of one window and return its features."""
        k = block.shape[0]
        cursor = self._cursor
        first = cursor.t_next != cursor.t_next  # NaN: nothing consumed yet
        new = cursor.advance(t_start, k)
        ist = self._istate
        if first:
            self._fstate[ecg.E_ORIGIN] = t_start
        elif new.gap > 0:
            if new.gap / self.fs > MAX_BRIDGE_S:
                log.debug("ECG gap of %.2f s: restarting the detector", new.gap / self.fs)
                self._detector.reset()
                ist[ecg.E_HAVE_LAST] = 0
                ist[ecg.E_HIST_N] = 0
                self._fstate[ecg.E_ORIGIN] = t_start
                new.gap = 0
            self._add_break(t_start)
        det = self._detector
        need = (
            int(ist[ecg.E_N_BEATS]) + (new.gap + k) // max(1, det._refractory) + 2 * (LEARN_CAP + 2)
        )
        if need > self._beats.size:
            self._beats = np.concatenate([self._beats, np.zeros(need)])
        layout = ecg.ecg_update(
            block,
            np.asarray(mask, dtype=bool),
            new.start,
            new.gap,
            t_start,
            self.hr_s,
            self.hrv_s,
            RR_RANGE[0],
            RR_RANGE[1],
            det._sos,
            det._zi,
            self._unit_zi,
            det._fst,
            det._ist,
            det._bp_ring,
            det._sq_ring,
            det._slope_ring,
            det._rr_ring,
            det._learn_val,
            det._learn_loc,
            det._learn_slope,
            det._win,
            det._confirm,
            det._refractory,
            det._twave,
            det._learn,
            det._delay,
            self.fs,
            self._fstate,
            ist,
            self._mask_hist,
            self._beats,
            self._breaks,
            self._full,
            self._out,
        )
        if layout >= 0:
            return dict(zip(self._layouts[layout], self._out.tolist(), strict=False))
        if layout == -100:
            raise ValueError("ECG samples must be finite; fill gaps (e.g. hold the last value)")
        return {
            k: v
            for k, v in zip(self._layouts[-1 - layout], self._out.tolist(), strict=False)
            if math.isfinite(v)
        }

    def _add_break(self, t: float) -> None:
        n = int(self._istate[ecg.E_N_BREAKS])
        if n == self._breaks.size:
            self._breaks = np.concatenate([self._breaks, np.zeros(n)])
        self._breaks[n] = t
        self._istate[ecg.E_N_BREAKS] = n + 1
