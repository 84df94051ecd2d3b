"""Causal, streaming QRS (R-peak) detector in the spirit of Pan and Tompkins.

Pan, J. and Tompkins, W. J. (1985), "A real-time QRS detection algorithm",
IEEE Trans. Biomed. Eng. 32(3):230-236.

Stages, all carried across chunks so the detections do not depend on how the signal is cut:

1. band-pass 5-15 Hz (Butterworth designed with ``scipy.signal``, run as second-order sections
   in Numba with the section state carried, as ``scipy.signal.sosfilt`` with ``zi``);
2. five-point derivative, squaring, moving-window integration over 150 ms (Numba);
3. local maxima of the integrated signal confirmed after a 200 ms look-ahead, classified
   against adaptive signal/noise levels (``SPKI``, ``NPKI``), with T-wave rejection by slope
   (200-360 ms after a beat) and search-back for a missed beat after 1.66 mean RR intervals.

The R peak is located on the band-passed signal (largest magnitude inside the integration
window) and shifted back by the filter's group delay, so reported indices refer to the input.
A beat is reported about 200-350 ms after it happened (the look-ahead plus the window).
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import numpy.typing as npt
from scipy import signal

from ..errors import ConfigError
from ..kernels.filters import sosfilt_kernel
from ..kernels.qrs import (
    I_CAND_IDX,
    I_LAST_QRS,
    I_N,
    I_NOISE_LOC,
    I_RR_COUNT,
    I_STARTED,
    LEARN_CAP,
    NF,
    NI,
    RR_N,
    qrs_kernel,
)

log = logging.getLogger("streamfuse.features.qrs")


@functools.lru_cache(maxsize=64)
def _qrs_band(fs: float) -> tuple[np.ndarray, int]:
    """The 5-15 Hz band-pass at ``fs`` (shared, never written) and its group delay at 10 Hz in
    samples: designed once per rate, not once per device (~1 ms)."""
    sos = signal.butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos")
    _, gd = signal.group_delay(signal.sos2tf(sos), w=[10.0], fs=fs)
    return sos, int(round(float(gd[0])))


@functools.lru_cache(maxsize=64)
def _unit_zi(fs: float) -> np.ndarray:
    zi = signal.sosfilt_zi(_qrs_band(fs)[0])
    return zi


class StreamingQRSDetector:
    """Stateful R-peak detector fed with chunks of one ECG lead at a fixed rate.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (at least 50 Hz: the band-pass reaches 15 Hz).
    learn_s : float
        Length of the initial learning phase (s) used to set the signal and noise levels;
        beats inside it are still reported, when it ends.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 250.0
    >>> t = np.arange(int(10 * fs)) / fs
    >>> ecg = np.exp(-(((t % 1.0) - 0.5) ** 2) / (2 * 0.01**2))  # one spike a second
    >>> det = StreamingQRSDetector(fs)
    >>> peaks = np.concatenate([det.update(ecg[i : i + 25]) for i in range(0, ecg.size, 25)])
    >>> np.round(peaks / fs, 2).tolist()[:3]
    [0.51, 1.51, 2.51]
    """

    def __init__(self, fs: float, *, learn_s: float = 2.0) -> None:
        if not (math.isfinite(fs) and fs >= 50.0):
            raise ConfigError(
                f"the QRS detector needs a sampling rate of at least 50 Hz, got {fs!r}; "
                "resample the ECG first"
            )
        if not (math.isfinite(learn_s) and learn_s > 0):
            raise ConfigError(f"learn_s must be positive, got {learn_s!r}")
        self.fs = float(fs)
        self.learn_s = float(learn_s)
        self._sos, self._delay = _qrs_band(self.fs)
        self._win = max(1, int(round(0.15 * self.fs)))
        self._confirm = int(round(0.2 * self.fs))
        self._refractory = int(round(0.2 * self.fs))
        self._twave = int(round(0.36 * self.fs))
        self._learn = int(round(self.learn_s * self.fs))
        self._ring_n = int(self.fs) + 2 * self._win + self._confirm + self._delay + 8
        self.reset()

    def reset(self) -> None:
        """Forget everything (filter state, levels, RR history)."""
        # band-pass state, set from the first sample (``_ist[I_STARTED]``)
        self._zi = np.zeros((self._sos.shape[0], 2), dtype=np.float64)
        self._fst = np.zeros(NF, dtype=np.float64)
        self._ist = np.zeros(NI, dtype=np.int64)
        self._ist[I_CAND_IDX] = -1
        self._ist[I_LAST_QRS] = -1
        self._ist[I_NOISE_LOC] = -1
        self._bp_ring = np.zeros(self._ring_n, dtype=np.float64)
        self._sq_ring = np.zeros(self._ring_n, dtype=np.float64)
        self._slope_ring = np.zeros(self._ring_n, dtype=np.float64)
        self._rr_ring = np.zeros(RR_N, dtype=np.int64)
        self._learn_val = np.zeros(LEARN_CAP, dtype=np.float64)
        self._learn_loc = np.zeros(LEARN_CAP, dtype=np.int64)
        self._learn_slope = np.zeros(LEARN_CAP, dtype=np.float64)

    def __setstate__(self, state: dict) -> None:
        """Restore a pickle, also one made before the band-pass state became an array with a
        started flag (``_zi`` None and eight integers of state then)."""
        self.__dict__.update(state)
        if self._zi is None or self._ist.size < NI:
            started = self._zi is not None
            ist = np.zeros(NI, dtype=np.int64)
            ist[: self._ist.size] = self._ist
            ist[I_STARTED] = int(started)
            self._ist = ist
            if not started:
                self._zi = np.zeros((self._sos.shape[0], 2), dtype=np.float64)

    @property
    def samples_seen(self) -> int:
        """How many samples have been consumed since the start (or the last reset)."""
        return int(self._ist[I_N])

    @property
    def rr_mean_s(self) -> float:
        """Mean of the last (up to 8) RR intervals in seconds, NaN before two beats."""
        c = int(self._ist[I_RR_COUNT])
        return float(self._rr_ring[:c].mean() / self.fs) if c else float("nan")

    def update(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Consume the next samples; return newly confirmed R-peak indices (since the start).

        Parameters
        ----------
        x : array_like
            1-D finite samples of one lead, continuing where the previous call stopped.

        Returns
        -------
        numpy.ndarray
            int64 sample indices counted from the first sample ever passed, increasing.
        """
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(
                f"pass one lead as a 1-D array, got shape {a.shape}; e.g. `data[:, 0]`"
            )
        if a.size == 0:
            return np.zeros(0, dtype=np.int64)
        if not np.all(np.isfinite(a)):
            raise ValueError("ECG samples must be finite; fill gaps (e.g. hold the last value)")
        if not self._ist[I_STARTED]:
            # start in the steady state of the first sample: no step transient at the start
            self._zi[:] = _unit_zi(self.fs) * a[0]
            self._ist[I_STARTED] = 1
        bp = np.empty_like(a)
        sosfilt_kernel(self._sos, self._zi, a, bp)
        out = np.empty(a.size // max(1, self._refractory) + LEARN_CAP + 2, dtype=np.int64)
        n = qrs_kernel(
            bp,
            self._fst,
            self._ist,
            self._bp_ring,
            self._sq_ring,
            self._slope_ring,
            self._rr_ring,
            self._learn_val,
            self._learn_loc,
            self._learn_slope,
            self._win,
            self._confirm,
            self._refractory,
            self._twave,
            self._learn,
            self._delay,
            self.fs,
            out,
        )
        return out[:n].copy()
