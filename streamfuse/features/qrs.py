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
from numba import njit
from scipy import signal

from ..errors import ConfigError
from ..kernels.filters import sosfilt_kernel

__all__ = ["StreamingQRSDetector", "qrs_kernel", "sosfilt_kernel"]

log = logging.getLogger("streamfuse.features.qrs")

# indices into the float64 state vector
_F_SPKI = 0
_F_NPKI = 1
_F_CAND_VAL = 2
_F_NOISE_VAL = 3
_F_NOISE_SLOPE = 4
_F_LAST_SLOPE = 5
_F_LEARN_MAX = 6
_F_LEARN_SUM = 7
_F_CAND_SLOPE = 8
_F_PREV1 = 9  # integrated signal one sample back
_F_PREV2 = 10  # two samples back
_NF = 11

# indices into the int64 state vector
_I_N = 0  # samples consumed so far
_I_CAND_IDX = 1  # sample index of the pending local maximum (-1: none)
_I_CAND_LOC = 2  # its R-peak location
_I_LAST_QRS = 3  # location of the last accepted beat (-1: none)
_I_NOISE_LOC = 4  # location of the largest noise peak since the last beat (-1: none)
_I_RR_COUNT = 5  # number of RR intervals in the RR ring (capped at _RR_N)
_I_RR_POS = 6
_I_LEARN_COUNT = 7  # candidates buffered during the learning phase
_NI = 8

_RR_N = 8
#: integrated-signal floor (units²/s²): below it a flat line's rounding noise, not a beat
_MIN_ENERGY = 1e-10
_LEARN_CAP = 64


@njit(cache=True)
def _localize(bp_ring: np.ndarray, hi: int, span: int, delay: int) -> int:
    """Index of the largest |band-passed| sample in ``(hi - span, hi]``, shifted by ``delay``."""
    r = bp_ring.shape[0]
    best = -1.0
    arg = hi
    for j in range(hi - span + 1, hi + 1):
        if j < 0:
            continue
        v = abs(bp_ring[j % r])
        if v > best:
            best = v
            arg = j
    loc = arg - delay
    return loc if loc > 0 else 0


@njit(cache=True)
def _accept(fst, ist, rr_ring, val, loc, slope, searchback, out, n_out):
    if searchback:
        fst[_F_SPKI] = 0.25 * val + 0.75 * fst[_F_SPKI]
    else:
        fst[_F_SPKI] = 0.125 * val + 0.875 * fst[_F_SPKI]
    last = ist[_I_LAST_QRS]
    if last >= 0:
        rr_ring[ist[_I_RR_POS]] = loc - last
        ist[_I_RR_POS] = (ist[_I_RR_POS] + 1) % _RR_N
        if ist[_I_RR_COUNT] < _RR_N:
            ist[_I_RR_COUNT] += 1
    ist[_I_LAST_QRS] = loc
    fst[_F_LAST_SLOPE] = slope
    ist[_I_NOISE_LOC] = -1
    fst[_F_NOISE_VAL] = 0.0
    out[n_out] = loc
    return n_out + 1


@njit(cache=True)
def _classify(fst, ist, rr_ring, val, loc, slope, refractory, twave, out, n_out):
    """Decide whether one confirmed integrated-signal peak is a beat; returns the new n_out."""
    last = ist[_I_LAST_QRS]
    thr1 = fst[_F_NPKI] + 0.25 * (fst[_F_SPKI] - fst[_F_NPKI])
    is_beat = False
    if last < 0 or loc - last >= refractory:
        if val > thr1:
            is_beat = True
            if last >= 0 and loc - last < twave and slope < 0.5 * fst[_F_LAST_SLOPE]:
                is_beat = False  # a T wave: too soon and too gentle
    if is_beat:
        return _accept(fst, ist, rr_ring, val, loc, slope, False, out, n_out)
    fst[_F_NPKI] = 0.125 * val + 0.875 * fst[_F_NPKI]
    if (last < 0 or loc - last >= refractory) and val > fst[_F_NOISE_VAL]:
        fst[_F_NOISE_VAL] = val
        ist[_I_NOISE_LOC] = loc
        fst[_F_NOISE_SLOPE] = slope
    return n_out


@njit(cache=True)
def qrs_kernel(
    bp: np.ndarray,
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
    out: np.ndarray,
) -> int:
    """Run the detector over band-passed samples ``bp``; write beat locations to ``out``.

    All state lives in the arrays passed in; returns how many entries of ``out`` were written.
    """
    r = bp_ring.shape[0]
    n_out = 0
    for i in range(bp.shape[0]):
        n = ist[_I_N]
        x = bp[i]
        bp_ring[n % r] = x
        # five-point derivative (Pan-Tompkins), zero until four past samples exist
        d = 0.0
        if n >= 4:
            d = (
                2.0 * x + bp_ring[(n - 1) % r] - bp_ring[(n - 3) % r] - 2.0 * bp_ring[(n - 4) % r]
            ) * (fs / 8.0)
        sq_ring[n % r] = d * d
        slope_ring[n % r] = abs(d)
        # moving-window integration, summed afresh (no drift over long streams), oldest first;
        # the ring positions run a..r-1 then 0.. (no modulo per term)
        s = 0.0
        lo = n - win + 1
        if lo < 0:
            lo = 0
        a = lo % r
        cnt = n + 1 - lo
        first = min(cnt, r - a)
        for j in range(a, a + first):
            s += sq_ring[j]
        for j in range(cnt - first):
            s += sq_ring[j]
        y = s / win
        ist[_I_N] = n + 1

        # learning phase statistics
        if n <= learn:
            if y > fst[_F_LEARN_MAX]:
                fst[_F_LEARN_MAX] = y
            fst[_F_LEARN_SUM] += y

        # confirm a pending local maximum once `confirm` samples passed without a higher one
        if ist[_I_CAND_IDX] >= 0 and n - ist[_I_CAND_IDX] > confirm:
            val = fst[_F_CAND_VAL]
            loc = ist[_I_CAND_LOC]
            slope = fst[_F_CAND_SLOPE]
            ist[_I_CAND_IDX] = -1
            if n <= learn:
                k = ist[_I_LEARN_COUNT]
                if k < _LEARN_CAP:  # beyond the cap (a 500 bpm signal) candidates are dropped
                    learn_val[k] = val
                    learn_loc[k] = loc
                    learn_slope[k] = slope
                    ist[_I_LEARN_COUNT] = k + 1
            else:
                n_out = _classify(fst, ist, rr_ring, val, loc, slope, refractory, twave, out, n_out)

        # local maximum of the integrated signal at n - 1
        p1 = fst[_F_PREV1]
        p2 = fst[_F_PREV2]
        if n >= 2 and p1 > p2 and p1 >= y and p1 > _MIN_ENERGY:
            m = n - 1
            if ist[_I_CAND_IDX] < 0 or p1 > fst[_F_CAND_VAL]:
                ist[_I_CAND_IDX] = m
                fst[_F_CAND_VAL] = p1
                ist[_I_CAND_LOC] = _localize(bp_ring, m - 2, win + 2, delay)
                sl = 0.0
                for j in range(m - win + 1, m + 1):
                    if j >= 0 and slope_ring[j % r] > sl:
                        sl = slope_ring[j % r]
                fst[_F_CAND_SLOPE] = sl
        fst[_F_PREV2] = p1
        fst[_F_PREV1] = y

        # end of learning: set levels, then judge the buffered candidates in order
        if n == learn:
            fst[_F_SPKI] = fst[_F_LEARN_MAX] / 3.0
            fst[_F_NPKI] = 0.5 * fst[_F_LEARN_SUM] / (learn + 1)
            for k in range(ist[_I_LEARN_COUNT]):
                n_out = _classify(
                    fst,
                    ist,
                    rr_ring,
                    learn_val[k],
                    learn_loc[k],
                    learn_slope[k],
                    refractory,
                    twave,
                    out,
                    n_out,
                )

        # search-back: no beat for 1.66 mean RR, take the largest noise peak over thr2
        if n > learn and ist[_I_LAST_QRS] >= 0 and ist[_I_RR_COUNT] > 0:
            c = ist[_I_RR_COUNT]
            rr_mean = 0.0
            for k in range(c):
                rr_mean += rr_ring[k]
            rr_mean /= c
            if n - ist[_I_LAST_QRS] > 1.66 * rr_mean and ist[_I_NOISE_LOC] >= 0:
                thr1 = fst[_F_NPKI] + 0.25 * (fst[_F_SPKI] - fst[_F_NPKI])
                if fst[_F_NOISE_VAL] > 0.5 * thr1:
                    n_out = _accept(
                        fst,
                        ist,
                        rr_ring,
                        fst[_F_NOISE_VAL],
                        ist[_I_NOISE_LOC],
                        fst[_F_NOISE_SLOPE],
                        True,
                        out,
                        n_out,
                    )
    return n_out


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
        self._zi: npt.NDArray[np.float64] | None = None
        self._fst = np.zeros(_NF, dtype=np.float64)
        self._ist = np.zeros(_NI, dtype=np.int64)
        self._ist[_I_CAND_IDX] = -1
        self._ist[_I_LAST_QRS] = -1
        self._ist[_I_NOISE_LOC] = -1
        self._bp_ring = np.zeros(self._ring_n, dtype=np.float64)
        self._sq_ring = np.zeros(self._ring_n, dtype=np.float64)
        self._slope_ring = np.zeros(self._ring_n, dtype=np.float64)
        self._rr_ring = np.zeros(_RR_N, dtype=np.int64)
        self._learn_val = np.zeros(_LEARN_CAP, dtype=np.float64)
        self._learn_loc = np.zeros(_LEARN_CAP, dtype=np.int64)
        self._learn_slope = np.zeros(_LEARN_CAP, dtype=np.float64)

    @property
    def samples_seen(self) -> int:
        """How many samples have been consumed since the start (or the last reset)."""
        return int(self._ist[_I_N])

    @property
    def rr_mean_s(self) -> float:
        """Mean of the last (up to 8) RR intervals in seconds, NaN before two beats."""
        c = int(self._ist[_I_RR_COUNT])
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
        if self._zi is None:
            # start in the steady state of the first sample: no step transient at the start
            self._zi = np.ascontiguousarray(_unit_zi(self.fs) * a[0])
        bp = np.empty_like(a)
        sosfilt_kernel(self._sos, self._zi, a, bp)
        out = np.empty(a.size // max(1, self._refractory) + _LEARN_CAP + 2, dtype=np.int64)
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
