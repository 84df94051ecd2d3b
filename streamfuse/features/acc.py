"""Accelerometer features: magnitude, ENMO, activity counts, variance, dominant frequency, cadence.

ENMO (Euclidean norm minus one, negatives set to zero) follows van Hees et al. (2013), PLoS ONE
8(2):e61691. Activity counts band-pass the magnitude around 0.29-1.63 Hz and rectify it, after
the ActiGraph filter described by Brønd, Andersen and Arvidsson (2017), Med. Sci. Sports Exerc.
49(11):2351-2360 (a simplified Butterworth version, not count-for-count compatible).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

from ..kernels.filters import step_kernel
from ..kernels.finite import all_finite
from ..kernels.motion import ACC_EMPTY, ACC_SHORT, ACC_SPECTRUM, acc_peak, acc_update
from .spectrum import WelchPlan, scratch, welch_into, welch_plan
from .stream import Cursor

__all__ = ["STANDARD_GRAVITY", "AccFeatures", "step_kernel"]

STANDARD_GRAVITY = 9.80665
#: minimum band-passed magnitude (g) of a step peak
STEP_MIN_G = 0.05
#: shortest time between steps (s)
STEP_MIN_S = 0.25
#: a dominant frequency needs more power than this in its PSD bin (else 0.0: a flat signal)
PEAK_FLOOR = 1e-10


@functools.lru_cache(maxsize=64)
def _band_filters(fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The count and step band-passes at ``fs`` stacked ``[filter, section, coefficient]``,
    and their unit initial states; shared by every device at that rate and never written
    (designing them costs ~2 ms: once per rate instead of once per device)."""
    count_sos = _band_sos(0.29, 1.63, fs)
    step_sos = _band_sos(0.5, 3.0, fs)
    sos = np.ascontiguousarray(np.stack([count_sos, step_sos]))
    zi = np.ascontiguousarray(np.stack([signal.sosfilt_zi(count_sos), signal.sosfilt_zi(step_sos)]))
    return sos, zi


def _band_sos(lo: float, hi: float, fs: float) -> np.ndarray:
    hi = min(hi, 0.45 * fs)
    lo = min(lo, 0.5 * hi)
    return signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")


class AccFeatures:
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
        # both band-passes run in one kernel: [filter, section, coefficient]
        self._sos, self._zi_unit = _band_filters(self.fs)
        self._zi = np.zeros(self._zi_unit.shape)
        self._min_gap = int(round(STEP_MIN_S * self.fs))
        self._step_state = np.array([0.0, 0.0, 0.0, -1.0, 0.0])
        self._fstate = np.array([0.0, np.nan])  # last valid magnitude, time of sample 0
        self._istate = np.zeros(3, dtype=np.int64)  # history fill, filters started, steps
        self._steps = np.zeros(64)  # step times, the first _istate[2] in use
        self._mag = np.zeros((self.span, 1))  # magnitude history (0.0 in gaps)
        self._counts = np.zeros(self.span)  # rectified count signal history
        self._m = np.zeros(self.span, dtype=bool)
        self._out = np.zeros(len(_KEYS))  # the features, in key order
        p = prefix
        self._keys = [f"{p}_{k}" for k in _KEYS]
        # per history length (it grows to `span` over the first windows): welch plan,
        # PSD and segment buffers, and the PSD bins inside 0.3-5 Hz
        self._welch: dict[int, _Peak] = {}
        self._steady = self._peak_plan(self.span)

    def _peak_plan(self, n: int) -> _Peak:
        got = self._welch.get(n)
        if got is None:
            plan = welch_plan(n, self.fs)
            idx = np.flatnonzero((plan.freqs >= 0.3) & (plan.freqs <= min(5.0, 0.5 * self.fs)))
            lo, hi = (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)
            got = _Peak(plan, lo, hi)
            self._welch[n] = got
        return got

    def _dominant(self, n: int) -> float:
        """Dominant frequency (Hz) of the magnitude history, 0.0 when flat or gapped."""
        if n < 4:
            return 0.0
        pk = self._peak_plan(n)
        psd = scratch("psd", (1, pk.plan.freqs.size))
        segs = scratch("welch_segments", (1, n))
        if pk.hi <= pk.lo or not welch_into(self._mag, self._m, n, pk.plan, segs, psd):
            return 0.0
        sel = psd[0, pk.lo : pk.hi]
        j = int(np.argmax(sel))
        return float(pk.plan.freqs[pk.lo + j]) if sel[j] > PEAK_FLOOR else 0.0

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Consume the new samples of one window and return its features (finite values)."""
        k = block.shape[0]
        new = self._cursor.advance(t_start, k)
        need = int(self._istate[2]) + (new.gap + k - new.start) // max(self._min_gap, 1) + 2
        if need > self._steps.size:
            self._steps = np.concatenate([self._steps, np.zeros(need)])
        pk = self._steady
        out = self._out
        segs = scratch("welch_segments", (1, self.span))
        done = acc_update(
            block,
            np.asarray(mask, dtype=bool),
            self.scale,
            t_start,
            new.start,
            new.gap,
            self._sos,
            self._zi,
            self._zi_unit,
            self._fstate,
            self._istate,
            self._step_state,
            STEP_MIN_G,
            self._min_gap,
            self.fs,
            self._steps,
            self._mag,
            self._counts,
            self._m,
            scratch("acc_counts", (self.span,)),
            self.cadence_s,
            pk.plan.win,
            pk.lo,
            pk.hi,
            segs,
            out,
        )
        if done == ACC_EMPTY:
            return {}
        if done == ACC_SPECTRUM:
            nf = pk.plan.freqs.size
            spectrum = np.fft.rfft(segs, axis=-1, out=scratch("spectrum", (1, nf), np.complex128))
            mag = np.abs(spectrum, out=scratch("magnitude", (1, nf)))
            out[6] = acc_peak(
                mag,
                pk.plan.scale,
                pk.plan.nperseg,
                scratch("psd", (1, nf)),
                pk.plan.freqs,
                pk.lo,
                pk.hi,
                PEAK_FLOOR,
            )
        elif done == ACC_SHORT:
            out[6] = self._dominant(int(self._istate[0]))
        values = out.tolist()
        if all_finite(out):
            return dict(zip(self._keys, values, strict=True))
        return {k: v for k, v in zip(self._keys, values, strict=True) if math.isfinite(v)}


_KEYS = ("mag", "mag_std", "enmo", "var", "activity", "counts", "dom_freq", "cadence")


@dataclass(frozen=True, slots=True)
class _Peak:
    plan: WelchPlan
    lo: int  # PSD bins lo .. hi - 1 lie in 0.3-5 Hz
    hi: int
